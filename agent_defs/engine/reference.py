"""The reference engine: runs an agent graph by the rules of DESIGN.md, "Execution semantics".

It is the executable definition of those rules; compiled Dagster jobs must agree with it. The rule
numbers below refer to that page. One run is one asyncio task driving node executions (each its own
task, at most `node_concurrency` at once); routing happens as each value is yielded (streaming).

Readiness (rule 1) has AutoGPT's one exception: a block may name linked pins it starts without
(`optional_link_pins`) and hold an execution back by its own rule (`missing_inputs`), as
SmartDecisionMaker does with its feedback pins (AutoGPT's get_missing_links/get_missing_input).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from agent_defs.credentials.redaction import Redactor
from agent_defs.engine import dynamic_pins
from agent_defs.engine.costs import Pricing, block_usage_cost, matching_cost
from agent_defs.graph.model import Graph, Link, Node
from agent_defs.graph.subagents import (
    DEFAULT_MAX_SUBAGENT_DEPTH,
    max_subagent_depth_from_env,
    resolve_sub_agent,
    sub_graph_of,
)
from agent_defs.logs import bind_redactor
from agent_defs.resilience.policy import (
    BreakerService,
    NodeGuard,
    NodeTimeoutError,
    OutputCacheService,
    cache_key,
    node_guard,
)
from blocks import (
    REGISTRY,
    Block,
    BlockRegistry,
    BlockType,
    CostType,
    Credentials,
    KeyValueStore,
    OutgoingLink,
    RunContext,
)
from blocks.sdk import BlockInputError


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
    outbound: list[tuple[Link, Any]] = field(default_factory=list)
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

    `before_node` may raise RunStoppedError (insufficient balance) to stop the run as FAILED.
    """

    def before_node(self, execution: NodeExecution, block: Block) -> None: ...

    def on_output(self, execution: NodeExecution, pin: str, value: Any) -> None: ...

    def after_node(self, execution: NodeExecution, block: Block) -> None: ...


class _NoObserver:
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
        raw = os.environ.get(MAX_NODE_EXECUTIONS_VAR, "").strip() or str(DEFAULT_MAX_NODE_EXECUTIONS)
        try:
            cap = int(raw)
        except ValueError:
            cap = 0
        if cap < 1:
            raise ValueError(f"{MAX_NODE_EXECUTIONS_VAR}={raw!r}: expected a whole number >= 1")
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


_SIZE_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _size(value: Any) -> int:
    """Bytes of the value as JSON (AutoGPT's input_size / output_size)."""
    try:
        return len(orjson.dumps(value, default=str, option=_SIZE_OPTIONS))
    except (TypeError, orjson.JSONEncodeError):
        return len(str(value))


@dataclass(slots=True)
class _NodePlan:
    """What the engine precomputes per node, so the hot path does dict look-ups only."""

    node: Node
    block: Block
    linked_pins: frozenset[str]
    # Linked pins an execution waits for (all of them, unless the block says otherwise).
    required_pins: frozenset[str]
    custom_ready: bool  # the block's `missing_inputs` is consulted too
    outgoing: tuple[OutgoingLink, ...]  # only for blocks that ask for them
    static_pins: frozenset[str]
    links_by_pin: dict[str, list[tuple[Link, bool]]]  # exact source pin -> (link, is static)
    dynamic_links: list[tuple[Link, bool]]  # links whose source pin has a dynamic suffix
    has_dynamic_inputs: bool
    is_input: bool
    is_output: bool
    guard: NodeGuard | None  # retries, timeout, breaker, cache; None: the plain fast path


def plan_graph(
    graph: Graph,
    registry: BlockRegistry,
    subset: frozenset[str] | None = None,
    root: Graph | None = None,
) -> dict[str, _NodePlan]:
    """Per-node routing tables. Nodes with unknown blocks and Note nodes are left out (never run).

    With a `subset` (a region op or one node's op), only those nodes are planned; links from outside
    still count as linked pins (their values are delivered from outside) and links leaving the subset
    are recorded as outbound values instead of being delivered.
    """
    blocks = {n.id: registry.get(n.block_id) for n in graph.nodes}
    plans: dict[str, _NodePlan] = {}
    inbound: dict[str, list[Link]] = {}
    outbound: dict[str, list[Link]] = {}
    for link in graph.links:
        inbound.setdefault(link.sink_id, []).append(link)
        outbound.setdefault(link.source_id, []).append(link)
    for node in graph.nodes:
        block = blocks[node.id]
        if (
            block is None
            or block.block_type is BlockType.NOTE
            or (subset is not None and node.id not in subset)
        ):
            continue
        links_in = [lk for lk in inbound.get(node.id, []) if _fires(blocks.get(lk.source_id))]
        static = {
            lk.sink_name
            for lk in links_in
            if lk.is_static or ((src := blocks.get(lk.source_id)) is not None and src.static_output)
        }
        by_pin: dict[str, list[tuple[Link, bool]]] = {}
        dynamic: list[tuple[Link, bool]] = []
        for lk in outbound.get(node.id, []):
            if not _fires(blocks.get(lk.sink_id)):
                continue
            # Links out of a static-output block are forced static (AutoGPT does the same).
            entry = (lk, lk.is_static or block.static_output)
            if dynamic_pins.is_dynamic(lk.source_name):
                dynamic.append(entry)
            else:
                by_pin.setdefault(lk.source_name, []).append(entry)
        linked = frozenset(lk.sink_name for lk in links_in)
        plans[node.id] = _NodePlan(
            node=node,
            block=block,
            linked_pins=linked,
            required_pins=linked - block.optional_link_pins,
            custom_ready=block.has_custom_readiness,
            outgoing=_outgoing_links(graph, root or graph, node, blocks, outbound.get(node.id, []))
            if block.needs_outgoing_links
            else (),
            static_pins=frozenset(static),
            links_by_pin=by_pin,
            dynamic_links=dynamic,
            has_dynamic_inputs=any(dynamic_pins.is_dynamic(k) for k in node.input_default)
            or any(dynamic_pins.is_dynamic(lk.sink_name) for lk in links_in),
            is_input=block.block_type is BlockType.INPUT,
            is_output=block.block_type is BlockType.OUTPUT,
            guard=node_guard(node.id, node.metadata, block),
        )
    return plans


def _outgoing_links(
    graph: Graph, root: Graph, node: Node, blocks: Mapping[str, Block | None], links: list[Link]
) -> tuple[OutgoingLink, ...]:
    result: list[OutgoingLink] = []
    for link in links:
        sink_block = blocks.get(link.sink_id)
        if sink_block is None or not _fires(sink_block):
            continue
        sink = graph.nodes_by_id[link.sink_id]
        name = description = ""
        if sink_block.block_type is BlockType.AGENT:
            # The sub-graph this AgentExecutor runs, found as validation finds it.
            sub = sub_graph_of(root, sink)
            name = sub.name if sub is not None else str(sink.label or sink.input_default.get("graph_id", ""))
            description = sub.description if sub is not None else ""
        result.append(
            OutgoingLink(
                source_pin=link.source_name,
                sink_node_id=sink.id,
                sink_pin=link.sink_name,
                sink_block=sink_block,
                sink_input_default=sink.input_default,
                sink_graph_name=name,
                sink_graph_description=description,
            )
        )
    return tuple(result)


def _fires(block: Block | None) -> bool:
    return block is not None and block.block_type is not BlockType.NOTE


class CredentialsResolver(Protocol):
    """Turns a credentials reference into the credential, for the run's user only."""

    def resolve(self, credential_id: str, user_id: str) -> Credentials: ...


class ReferenceEngine:
    def __init__(
        self,
        registry: BlockRegistry = REGISTRY,
        limits: EngineLimits = EngineLimits(),
        resolve_graph: GraphResolver = resolve_sub_agent,
        observer_factory: Callable[[Graph, RunOptions], ExecutionObserver] | None = None,
        credentials: CredentialsResolver | None = None,
        pricing: Pricing | None = None,
        breakers: BreakerService | None = None,
        cache: OutputCacheService | None = None,
        kv_store: KeyValueStore | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.resolve_graph = resolve_graph
        self.observer_factory = observer_factory
        self.credentials = credentials
        self.pricing = pricing  # operator's block costs, overriding the blocks' own
        self.breakers = breakers  # circuit breakers per external provider (shared, in Redis)
        self.cache = cache  # outputs of identical earlier executions of cacheable blocks
        self.kv_store = kv_store  # durable per-user values (PersistInformation)

    def with_services(
        self,
        observer_factory: Callable[[Graph, RunOptions], ExecutionObserver] | None,
        credentials: CredentialsResolver | None,
        pricing: Pricing | None = None,
        breakers: BreakerService | None = None,
        cache: OutputCacheService | None = None,
        kv_store: KeyValueStore | None = None,
    ) -> ReferenceEngine:
        """The same engine, with a run's platform services (credits, events, credentials, circuit
        breakers, output cache, key-value data) plugged in."""
        return ReferenceEngine(
            self.registry,
            self.limits,
            self.resolve_graph,
            observer_factory,
            credentials,
            pricing,
            breakers,
            cache,
            kv_store,
        )

    def run_sync(
        self,
        graph: Graph,
        inputs: Mapping[str, Any] | None = None,
        options: RunOptions = RunOptions(),
        control: RunControl | None = None,
        part: GraphPart | None = None,
        budget: ExecutionBudget | None = None,
    ) -> RunResult:
        return asyncio.run(self.run(graph, inputs or {}, options, control, part, budget))

    async def run(
        self,
        graph: Graph,
        inputs: Mapping[str, Any],
        options: RunOptions = RunOptions(),
        control: RunControl | None = None,
        part: GraphPart | None = None,
        budget: ExecutionBudget | None = None,
    ) -> RunResult:
        """Run a graph (or a part of it) to the end; a cancelled run returns TERMINATED, not raising.
        `budget`: node executions shared with other runs (a compiled job's steps), else the run's own."""
        budget = budget or ExecutionBudget(self.limits.max_node_executions)
        run = _Run(self, graph, inputs, options, root=graph, part=part, budget=budget)
        task = asyncio.create_task(run.drive())
        if control is not None:
            control._attach(task)
        try:
            return await task
        except asyncio.CancelledError:
            if control is not None and control.cancelled and task.cancelled():
                run.result.status = RunStatus.TERMINATED
                run.result.error = control.reason
                return run.result
            raise

    def observer_for(self, graph: Graph, options: RunOptions) -> ExecutionObserver:
        return self.observer_factory(graph, options) if self.observer_factory else _NoObserver()


class _Run:
    def __init__(
        self,
        engine: ReferenceEngine,
        graph: Graph,
        inputs: Mapping[str, Any],
        options: RunOptions,
        root: Graph,
        on_graph_output: Callable[[str, Any], None] | None = None,
        part: GraphPart | None = None,
        budget: ExecutionBudget | None = None,
        calls: tuple[str, ...] = (),
    ) -> None:
        self.engine = engine
        self.budget = budget or ExecutionBudget(engine.limits.max_node_executions)
        # The graphs of the runs that started this one as a sub-agent, outermost first.
        self.calls = calls
        self.graph = graph
        self.root = root
        self.inputs = inputs
        self.options = options
        self.part = part
        self.plans = plan_graph(graph, engine.registry, part.nodes if part else None, root)
        self.static_values: dict[str, dict[str, Any]] = {}
        self.waiting: dict[str, list[NodeExecution]] = {}
        self.ready: deque[NodeExecution] = deque()
        self.running: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.seq = 0
        self.observer = engine.observer_for(graph, options)
        self.on_graph_output = on_graph_output
        self.stop_error: RunStoppedError | None = None
        self.result = RunResult(run_id=options.run_id, graph_id=graph.id, graph_version=graph.version)
        self.limit = engine.limits.node_concurrency

    # --- driving ----------------------------------------------------------------------------------
    async def drive(self) -> RunResult:
        self.result.started_at = time.time()
        try:
            self._start_nodes()
            while self.stop_error is None:
                while self.ready and len(self.running) < self.limit:
                    self._launch(self.ready.popleft())
                if not self.running:
                    break
                self.wakeup.clear()
                await self.wakeup.wait()
            if self.stop_error is not None:
                await self._stop(ExecStatus.TERMINATED)
                self.result.status = RunStatus.FAILED
                self.result.error = str(self.stop_error)
                self.result.stopped_by = type(self.stop_error).__name__
        except asyncio.CancelledError:
            await self._stop(ExecStatus.TERMINATED)
            self.result.status = RunStatus.TERMINATED
            self.result.ended_at = time.time()
            raise
        self.result.ended_at = time.time()
        return self.result

    async def _stop(self, status: ExecStatus) -> None:
        for task in list(self.running):
            task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        for ex in self.ready:
            ex.status = status
            self.result.executions.append(ex)
        self.ready.clear()

    def _launch(self, ex: NodeExecution) -> None:
        task = asyncio.create_task(self._execute(ex))
        self.running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self.wakeup.set()

    def _start_nodes(self) -> None:
        """Rule 1 and 8: nodes with no input links start at once; input nodes get the graph inputs."""
        masks = self.options.input_masks
        for node_id, plan in self.plans.items():
            if plan.is_input:
                values: dict[str, Any] = {}
                name = plan.node.input_default.get("name")
                if isinstance(name, str) and name in self.inputs:
                    values["value"] = self.inputs[name]
            elif not plan.required_pins:
                values = {}
            else:
                continue
            ex = self._new_execution(plan)
            ex.inputs = values
            if plan.custom_ready and not plan.is_input:
                # Its first execution waits here, like any later one, until the block is satisfied.
                self.waiting.setdefault(node_id, []).append(ex)
                self._check(plan, ex, masks.get(node_id))
                continue
            self._make_ready(plan, ex, masks.get(node_id))
        if self.part is not None:
            nodes = self.graph.nodes_by_id
            for link, value in self.part.deliveries:
                source = self.engine.registry.get(nodes[link.source_id].block_id)
                self._deliver(link, value, link.is_static or (source is not None and source.static_output))

    # --- rules 2 and 3: arrival of values -----------------------------------------------------------
    def _new_execution(self, plan: _NodePlan) -> NodeExecution:
        self.seq += 1
        return NodeExecution(
            id=f"{self.options.run_id}:{self.seq}",
            node_id=plan.node.id,
            block_id=plan.node.block_id,
            block_name=plan.block.name,
        )

    def _deliver(self, link: Link, value: Any, is_static: bool) -> None:
        sink = link.sink_id
        plan = self.plans.get(sink)
        if plan is None:  # the link leaves this part of the graph
            self.result.outbound.append((link, value))
            return
        pin = link.sink_name
        statics = self.static_values.setdefault(sink, {}) if plan.static_pins else None
        if is_static and statics is not None:
            statics[pin] = value
        waiting = self.waiting.setdefault(sink, [])
        target = next((ex for ex in waiting if pin not in ex.inputs), None)
        if target is None:
            target = self._new_execution(plan)
            waiting.append(target)
        target.inputs[pin] = value
        mask = self.options.input_masks.get(sink)
        if statics:
            self._fill_static(plan, target, statics)
        self._check(plan, target, mask)
        if is_static:
            for other in list(waiting):
                if other is not target:
                    self._fill_static(plan, other, statics or {})
                    self._check(plan, other, mask)

    @staticmethod
    def _fill_static(plan: _NodePlan, ex: NodeExecution, statics: Mapping[str, Any]) -> None:
        for pin in plan.static_pins:
            if pin not in ex.inputs and pin in statics:
                ex.inputs[pin] = statics[pin]

    def _check(self, plan: _NodePlan, ex: NodeExecution, mask: Mapping[str, Any] | None) -> None:
        if not plan.required_pins.issubset(ex.inputs):
            return
        data = None
        if plan.custom_ready:
            data = self._merged_input(plan, ex, mask)
            if plan.block.missing_inputs(data):
                return
        self.waiting[plan.node.id].remove(ex)
        self._make_ready(plan, ex, mask, data)

    @staticmethod
    def _merged_input(plan: _NodePlan, ex: NodeExecution, mask: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults, the values that arrived, then the run's mask; dynamic pins folded back."""
        data = {**plan.node.input_default, **ex.inputs}
        if mask:
            data.update(mask)
        if plan.has_dynamic_inputs or (mask and any(dynamic_pins.is_dynamic(k) for k in mask)):
            data = dynamic_pins.merge(data)
        return data

    def _make_ready(
        self,
        plan: _NodePlan,
        ex: NodeExecution,
        mask: Mapping[str, Any] | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        data = data if data is not None else self._merged_input(plan, ex, mask)
        ex.input_data = data
        try:
            ex.validated = plan.block.make_input(data)
        except BlockInputError as exc:
            self.result.skipped.append(SkippedExecution(plan.node.id, plan.block.name, str(exc)))
            return
        ex.status = ExecStatus.QUEUED
        self.ready.append(ex)
        self.wakeup.set()  # a node still running may have produced it: the driver must look

    # --- rule 4 and 6: running a node ---------------------------------------------------------------
    async def _execute(self, ex: NodeExecution) -> None:
        plan = self.plans[ex.node_id]
        block = plan.block
        assert ex.input_data is not None
        model, data = ex.validated, ex.input_data
        ex.validated = None
        self.result.executions.append(ex)
        if not self.budget.take():
            ex.status = ExecStatus.TERMINATED
            where = f" (sub-agent at depth {len(self.calls)})" if self.calls else ""
            self._stop_run(
                ExecutionCapError(
                    f"{self.graph.ref}{where}: stopped after {self.budget.limit} node executions "
                    "(max_node_executions, one budget for the run and its sub-agents; "
                    "is a loop or a recursive sub-agent not terminating?)"
                )
            )
            return
        ex.status = ExecStatus.RUNNING
        ex.started_at = time.time()
        ex.input_size = _size(data)
        # A per-run cost is known (and charged, by the observer) before the block runs; per-byte and
        # per-second costs once it has.
        cost = matching_cost(block, data, self.engine.pricing)
        if cost is not None and cost.type is CostType.RUN:
            ex.cost = cost.amount
        ctx = RunContext(
            user_id=self.options.user_id,
            graph_id=self.graph.id,
            graph_version=self.graph.version,
            run_id=self.options.run_id,
            node_id=ex.node_id,
            node_exec_id=ex.id,
            run_subgraph=self._run_subgraph,
            settings=self.options.settings,
            stats=ex.stats,
            outgoing_links=plan.outgoing,
            kv_store=self.engine.kv_store,
        )
        # Only nodes holding credentials pay for scrubbing their outputs.
        redactor = Redactor() if block.credentials else None
        try:
            if redactor is not None:
                bind_redactor(redactor)  # what the block or its libraries log (this task is this node's)
                ctx.credentials = self._resolve_credentials(block, model, redactor)
            if plan.guard is not None:
                await self._run_guarded(plan, plan.guard, ex, model, data, ctx, redactor)
            else:
                ex.attempts = 1
                self.observer.before_node(ex, block)
                async for pin, value in block.run(model, ctx):
                    value = block.validate_output(pin, value)
                    if redactor is not None:
                        value = redactor.redact_obj(value)
                    ex.outputs.append((pin, value))
                    ex.output_size += _size(value)
                    if pin == "error":
                        ex.error = str(value)
                    if plan.is_output and pin == "output":
                        self._record_output(data.get("name"), value)
                    self.observer.on_output(ex, pin, value)
                    self._route(plan, pin, value)
        except asyncio.CancelledError:
            ex.status = ExecStatus.TERMINATED
            ex.ended_at = time.time()
            raise
        except RunStoppedError as exc:
            ex.error = str(exc)
            ex.status = ExecStatus.FAILED
            ex.ended_at = time.time()
            self._stop_run(exc)
            return
        except Exception as exc:
            ex.error = str(exc) or type(exc).__name__
            if redactor is not None:
                ex.error = redactor.redact(ex.error)
            ex.outputs.append(("error", ex.error))
            self.observer.on_output(ex, "error", ex.error)
            self._route(plan, "error", ex.error)
        ex.ended_at = time.time()
        ex.status = ExecStatus.FAILED if ex.error is not None else ExecStatus.COMPLETED
        if cost is not None and cost.type is not CostType.RUN and not ex.cached:
            ex.cost = block_usage_cost(
                block, data, ex.input_size + ex.output_size, ex.walltime, self.engine.pricing, ex.stats
            )
        try:
            self.observer.after_node(ex, block)
        except RunStoppedError as exc:  # e.g. the per-byte charge after the node ran could not be paid
            self._stop_run(exc)

    # --- resilience: cache, circuit breaker, timeout, retries ------------------------------------------
    async def _run_guarded(
        self,
        plan: _NodePlan,
        guard: NodeGuard,
        ex: NodeExecution,
        model: Any,
        data: Mapping[str, Any],
        ctx: RunContext,
        redactor: Redactor | None,
    ) -> None:
        """Runs a guarded node's block, like the plain path in `_execute`, and raises the final attempt's
        exception for `_execute` to report. The node execution (and so its id, which charging is keyed
        by) is the same for every attempt; `before_node` is called once."""
        block = plan.block
        if guard.config_error is not None:
            raise ValueError(guard.config_error)
        cache = self.engine.cache if guard.cache_ttl_seconds is not None else None
        key = cache_key(block, model, self.options.user_id, ctx.credentials) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None:  # the block does not run: nothing to charge
                ex.cached = True
                ex.cost = 0
                self.observer.before_node(ex, block)
                for pin, value in hit:
                    self._emit(plan, ex, data, pin, value)
                return
        breakers = self.engine.breakers if guard.breaker else None
        provider = block.breaker_key(model) if breakers is not None else None
        if provider is not None:
            breakers.before_call(provider)  # type: ignore[union-attr]  # CircuitOpenError: fail fast, uncharged
        self.observer.before_node(ex, block)
        policy = guard.retry
        attempts = policy.attempts if policy is not None else 1
        buffer: list[tuple[str, Any]] | None = None
        while True:
            ex.attempts += 1
            if provider is not None and ex.attempts > 1:
                breakers.before_call(provider)  # type: ignore[union-attr]
            if guard.buffered:
                buffer = []
            failure: str | None = None
            failed_pin = False
            raised: Exception | None = None
            timer = asyncio.timeout(guard.timeout_seconds)
            try:
                async with timer:
                    async for pin, value in block.run(model, ctx):
                        value = block.validate_output(pin, value)
                        if redactor is not None:
                            value = redactor.redact_obj(value)
                        if pin == "error":
                            failure = str(value)
                        elif policy is not None and pin in policy.retry_on_pins:
                            failed_pin = True
                        if buffer is not None:
                            buffer.append((pin, value))
                        else:
                            self._emit(plan, ex, data, pin, value)
            except RunStoppedError:
                raise
            except Exception as exc:
                raised = exc
                if isinstance(exc, TimeoutError) and timer.expired():
                    raised = NodeTimeoutError(
                        f"node {plan.node.id} ({block.name}) timed out after {guard.timeout_seconds:g} s "
                        f"(timeout_seconds) on attempt {ex.attempts} of {attempts}"
                    )
                failure = str(raised) or type(raised).__name__
            failed = failed_pin or failure is not None
            if not failed:
                transient = False
            elif policy is None:
                transient = True  # for the breaker: any failure of a block without a classification
            elif isinstance(raised, NodeTimeoutError):
                transient = policy.retry_timeouts
            else:
                transient = failed_pin or policy.is_transient(failure, raised)
            if provider is not None:
                breakers.record(provider, ok=not transient)  # type: ignore[union-attr]
            if transient and ex.attempts < attempts and policy is not None:
                await asyncio.sleep(policy.delay(ex.attempts, random.random))
                continue
            for pin, value in buffer or ():
                self._emit(plan, ex, data, pin, value)
            if raised is not None:
                raise raised
            if key is not None and not failed:
                cache.put(key, ex.outputs, guard.cache_ttl_seconds)  # type: ignore[union-attr, arg-type]
            return

    def _emit(
        self, plan: _NodePlan, ex: NodeExecution, data: Mapping[str, Any], pin: str, value: Any
    ) -> None:
        """Record and route one (validated, redacted) output of a guarded node, as `_execute` does."""
        ex.outputs.append((pin, value))
        ex.output_size += _size(value)
        if pin == "error":
            ex.error = str(value)
        if plan.is_output and pin == "output":
            self._record_output(data.get("name"), value)
        self.observer.on_output(ex, pin, value)
        self._route(plan, pin, value)

    def _resolve_credentials(self, block: Block, model: Any, redactor: Redactor) -> dict[str, Credentials]:
        """Credentials fields hold references ({"id": ...}); the values are fetched for this run's user
        just before the block runs, and every output and error of the node is scrubbed of them."""
        resolved: dict[str, Credentials] = {}
        for field_spec in block.credentials:
            ref = getattr(model, field_spec.input_name, None)
            credential_id = ref.get("id") if isinstance(ref, Mapping) else getattr(ref, "id", None)
            if not credential_id:
                if field_spec.optional:
                    # The block falls back to the operator's secret: it is a credential value too.
                    if field_spec.env_fallback:
                        redactor.add_credential(os.environ.get(field_spec.env_fallback, ""))
                    continue
                raise ValueError(
                    f"pin {field_spec.input_name!r} needs a {field_spec.provider} credential reference "
                    '({"id": ...}); none was given'
                )
            if self.engine.credentials is None:
                raise ValueError("this run has no credentials store configured (AGENTFLOW_DATABASE_URL)")
            credential = self.engine.credentials.resolve(str(credential_id), self.options.user_id)
            if credential.provider != field_spec.provider:
                raise ValueError(
                    f"credential {credential_id} is for {credential.provider}, "
                    f"but pin {field_spec.input_name!r} needs {field_spec.provider}"
                )
            redactor.add_credential(credential.secret)
            resolved[field_spec.input_name] = credential
        return resolved

    def _stop_run(self, error: RunStoppedError) -> None:
        if self.stop_error is None:
            self.stop_error = error
        self.wakeup.set()

    def _record_output(self, name: Any, value: Any) -> None:
        key = str(name)
        self.result.outputs.setdefault(key, []).append(value)
        if self.on_graph_output is not None:
            self.on_graph_output(key, value)

    def _route(self, plan: _NodePlan, pin: str, value: Any) -> None:
        """Rule 4 and 5: every yield fires the links from that pin at once."""
        for link, is_static in plan.links_by_pin.get(pin, ()):
            self._deliver(link, value, is_static)
        for link, is_static in plan.dynamic_links:
            part = dynamic_pins.extract(pin, value, link.source_name)
            if part is not dynamic_pins.NOTHING:
                self._deliver(link, part, is_static)

    # --- rule 9: sub-agents -----------------------------------------------------------------------
    async def _run_subgraph(
        self, graph_id: str, graph_version: int, inputs: Mapping[str, Any], ctx: RunContext
    ) -> AsyncIterator[tuple[str, Any]]:
        # The node's own reference decides, resolved as validation resolves it (graph_id and
        # graph_version arrive here too, but not the schemas that identify an export's sub-graph).
        child_graph = self.engine.resolve_graph(self.root, self.graph.nodes_by_id[ctx.node_id])
        calls = (*self.calls, self.graph.ref)
        if len(calls) > self.engine.limits.max_subagent_depth:
            chain = " -> ".join([*calls, child_graph.ref][-4:])
            raise SubAgentDepthError(
                f"node {ctx.node_id} of {self.graph.ref} would start sub-agent {child_graph.ref} at depth "
                f"{len(calls)}, deeper than max_subagent_depth {self.engine.limits.max_subagent_depth} "
                f"(... {chain}; a recursive sub-agent?)"
            )
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        child = _Run(
            self.engine,
            child_graph,
            inputs,
            RunOptions(
                run_id=f"{ctx.node_exec_id}/sub", user_id=self.options.user_id, settings=self.options.settings
            ),
            root=self.root,
            on_graph_output=lambda name, value: queue.put_nowait((name, value)),
            budget=self.budget,
            calls=calls,
        )
        task = asyncio.create_task(child.drive())
        getter: asyncio.Future[tuple[str, Any]] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                break
            while not queue.empty():
                yield queue.get_nowait()
            result = task.result()
            if child.stop_error is not None:
                # Spent budget, depth, credits, moderation: they stop the whole run, not one node.
                raise child.stop_error
            if result.status is not RunStatus.COMPLETED:
                raise RuntimeError(f"sub-agent {child_graph.ref} {result.status.value}: {result.error}")
        finally:
            # On the parent's cancellation, stop the child first (and the pending queue read).
            pending = [f for f in (getter, task) if f is not None and not f.done()]
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
