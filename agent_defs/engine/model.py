"""What a run of the reference engine is made of and reports: node executions, results, options,
limits and the observer hooks. No Dagster."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from agent_defs.env_values import int_from_env
from agent_defs.graph.model import Graph, Link, Node
from agent_defs.graph.subagents import DEFAULT_MAX_SUBAGENT_DEPTH, max_subagent_depth_from_env
from blocks import Block


class RunStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


class ExecStatus(StrEnum):
    INCOMPLETE = "INCOMPLETE"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


class RunStoppedError(Exception):
    """Errors that stop the whole run as FAILED (rule 6) rather than failing one node."""


class InsufficientBalanceError(RunStoppedError):
    pass


class ModerationError(RunStoppedError):
    pass


class ExecutionCapError(RunStoppedError):
    """The node-execution budget of a run (shared with its sub-agent runs) is spent."""


class SubAgentDepthError(RunStoppedError):
    """A sub-agent would start deeper than the depth limit (a recursive sub-agent, most likely)."""


@dataclass(slots=True)
class NodeExecution:
    id: str
    node_id: str
    block_id: str
    block_name: str
    inputs: dict[str, Any] = field(default_factory=dict)  # values that arrived on linked pins
    status: ExecStatus = ExecStatus.INCOMPLETE
    input_data: dict[str, Any] | None = None  # the merged input it ran with
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    error: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    input_size: int = 0
    output_size: int = 0
    cost: int = 0
    # What the block reported about its work (RunContext.stats), e.g. LLM calls and token counts.
    stats: dict[str, float] = field(default_factory=dict)
    validated: Any = field(default=None, repr=False)  # the block's Input model, set when ready
    attempts: int = 0  # execution attempts of the block (more than 1 when retried)
    cached: bool = False  # the outputs came from the output cache (the block did not run; no charge)

    @property
    def walltime(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node_id": self.node_id,
            "block": self.block_name,
            "status": self.status.value,
            "walltime": round(self.walltime, 6),
            "input_size": self.input_size,
            "output_size": self.output_size,
            "cost": self.cost,
            "error": self.error,
            "attempts": self.attempts,
            "cached": self.cached,
            "stats": dict(self.stats),
        }


@dataclass(slots=True)
class SkippedExecution:
    """All linked pins arrived but the merged input did not validate: AutoGPT leaves these unrun."""

    node_id: str
    block_name: str
    reason: str


class RoutedValue(NamedTuple):
    """A value on a link leaving a part of the graph, numbered in the order it was produced."""

    link: Link
    value: Any
    seq: int


@dataclass(repr=False)  # asyncio reprs finished tasks' results; thousands of executions are slow to print
class RunResult:
    run_id: str
    graph_id: str
    graph_version: int
    status: RunStatus = RunStatus.COMPLETED
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    executions: list[NodeExecution] = field(default_factory=list)
    skipped: list[SkippedExecution] = field(default_factory=list)
    # Values on links leaving a GraphPart, in the order they were yielded.
    outbound: list[RoutedValue] = field(default_factory=list)
    error: str | None = None
    # Why a FAILED run stopped: the RunStoppedError subclass name (e.g. "InsufficientBalanceError").
    stopped_by: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0

    def __repr__(self) -> str:
        return (
            f"RunResult({self.run_id!r}, {self.status.value}, {len(self.executions)} executions, "
            f"outputs={list(self.outputs)})"
        )

    @property
    def node_error_count(self) -> int:
        return sum(1 for e in self.executions if e.status is ExecStatus.FAILED)

    @property
    def cost(self) -> int:
        return sum(e.cost for e in self.executions)

    def execution_counts(self) -> dict[str, int]:
        """Node id -> number of executions that ran (completed or failed)."""
        counts: dict[str, int] = {}
        for e in self.executions:
            if e.status in (ExecStatus.COMPLETED, ExecStatus.FAILED):
                counts[e.node_id] = counts.get(e.node_id, 0) + 1
        return counts

    def failed_nodes(self) -> dict[str, int]:
        failed: dict[str, int] = {}
        for e in self.executions:
            if e.status is ExecStatus.FAILED:
                failed[e.node_id] = failed.get(e.node_id, 0) + 1
        return failed

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "graph_id": self.graph_id,
            "graph_version": self.graph_version,
            "status": self.status.value,
            "error": self.error,
            "outputs": self.outputs,
            "node_execution_counts": self.execution_counts(),
            "node_error_count": self.node_error_count,
            "failed_nodes": self.failed_nodes(),
            "skipped": [
                {"node_id": s.node_id, "block": s.block_name, "reason": s.reason} for s in self.skipped
            ],
            "cost": self.cost,
            "walltime": round(max(0.0, self.ended_at - self.started_at), 6),
            "node_executions": [e.summary() for e in self.executions],
        }


class ExecutionObserver(Protocol):
    """Hooks around node executions, e.g. to log them as Dagster events, charge credits or publish.

    `before_node` may raise RunStoppedError (insufficient balance) to stop the run as FAILED. An
    observer whose hooks block (database or network calls) sets a class attribute `blocking = True`:
    the engine then calls them in a worker thread, one at a time and in order, off its event loop.
    """

    def before_node(self, execution: NodeExecution, block: Block) -> None: ...

    def on_output(self, execution: NodeExecution, pin: str, value: Any) -> None: ...

    def after_node(self, execution: NodeExecution, block: Block) -> None: ...


class _NoObserver:
    blocking = False

    def before_node(self, execution: NodeExecution, block: Block) -> None:
        pass

    def on_output(self, execution: NodeExecution, pin: str, value: Any) -> None:
        pass

    def after_node(self, execution: NodeExecution, block: Block) -> None:
        pass


class GraphResolver(Protocol):
    """Finds the graph an AgentExecutor node of `root` (or of a graph stored with it) runs; raises
    SubAgentReferenceError naming why not (graph/subagents.py has the rule)."""

    def __call__(self, root: Graph, node: Node) -> Graph: ...


@dataclass(frozen=True)
class GraphPart:
    """A part of a graph to run on its own (a Dagster op or region op): its nodes, and the values that
    arrived from outside it on links into it, in arrival order."""

    nodes: frozenset[str]
    deliveries: Sequence[tuple[Link, Any]] = ()


DEFAULT_MAX_NODE_EXECUTIONS = 100_000
MAX_NODE_EXECUTIONS_VAR = "AGENTFLOW_MAX_NODE_EXECUTIONS"


@dataclass(frozen=True, slots=True)
class EngineLimits:
    # One budget for a run and all its sub-agent runs (a compiled job: for all its steps).
    max_node_executions: int = DEFAULT_MAX_NODE_EXECUTIONS
    node_concurrency: int = 8
    max_subagent_depth: int = DEFAULT_MAX_SUBAGENT_DEPTH  # the run itself is depth 0

    @classmethod
    def from_env(cls) -> EngineLimits:
        """AGENTFLOW_MAX_NODE_EXECUTIONS and AGENTFLOW_MAX_SUBAGENT_DEPTH, read when called."""
        cap = int_from_env(MAX_NODE_EXECUTIONS_VAR, DEFAULT_MAX_NODE_EXECUTIONS, 1)
        return cls(max_node_executions=cap, max_subagent_depth=max_subagent_depth_from_env())


class ExecutionBudget:
    """Node executions left to a run and its sub-agent runs: each started execution takes one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        self.used += 1
        return self.used <= self.limit


@dataclass(frozen=True)
class RunOptions:
    run_id: str = "run"
    user_id: str = "local"
    input_masks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


class RunControl:
    """Cancels a run from any thread: running node tasks are cancelled, queued ones TERMINATED."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.reason = ""

    def _attach(self, task: asyncio.Task[Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = task
        if self.cancelled:
            task.cancel()

    def cancel(self, reason: str = "cancelled") -> None:
        self.cancelled = True
        self.reason = reason
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
