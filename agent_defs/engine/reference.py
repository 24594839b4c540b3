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
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from agent_defs.engine.costs import Pricing
from agent_defs.engine.model import (
    DEFAULT_MAX_NODE_EXECUTIONS,
    MAX_NODE_EXECUTIONS_VAR,
    EngineLimits,
    ExecStatus,
    ExecutionBudget,
    ExecutionCapError,
    ExecutionObserver,
    GraphPart,
    GraphResolver,
    InsufficientBalanceError,
    ModerationError,
    NodeExecution,
    RoutedValue,
    RunControl,
    RunOptions,
    RunResult,
    RunStatus,
    RunStoppedError,
    SkippedExecution,
    SubAgentDepthError,
    _NoObserver,
)
from agent_defs.engine.node_run import NodeRun
from agent_defs.engine.plan import NodePlan, plan_graph
from agent_defs.engine.routing import Router
from agent_defs.graph.model import Graph
from agent_defs.graph.subagents import resolve_sub_agent
from agent_defs.resilience.policy import BreakerService, OutputCacheService
from blocks import REGISTRY, BlockRegistry, Credentials, KeyValueStore, RunContext

DEFAULT_LIMITS = EngineLimits()
DEFAULT_OPTIONS = RunOptions()


class CredentialsResolver(Protocol):
    """Turns a credentials reference into the credential, for the run's user only."""

    def resolve(self, credential_id: str, user_id: str) -> Credentials: ...


class ReferenceEngine:
    def __init__(
        self,
        registry: BlockRegistry = REGISTRY,
        limits: EngineLimits = DEFAULT_LIMITS,
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
        options: RunOptions = DEFAULT_OPTIONS,
        control: RunControl | None = None,
        part: GraphPart | None = None,
        budget: ExecutionBudget | None = None,
    ) -> RunResult:
        return asyncio.run(self.run(graph, inputs or {}, options, control, part, budget))

    async def run(
        self,
        graph: Graph,
        inputs: Mapping[str, Any],
        options: RunOptions = DEFAULT_OPTIONS,
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


class _Run(NodeRun):
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
        self.ready: deque[NodeExecution] = deque()
        self.running: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.seq = 0
        self.observer = engine.observer_for(graph, options)
        self.blocking_observer = bool(getattr(self.observer, "blocking", False))
        self.on_graph_output = on_graph_output
        self.stop_error: RunStoppedError | None = None
        self.result = RunResult(run_id=options.run_id, graph_id=graph.id, graph_version=graph.version)
        self.limit = engine.limits.node_concurrency
        self.router = Router(
            self.plans,
            options.input_masks,
            self._new_execution,
            self._queue,
            self.result.skipped,
            self.result.outbound,
        )

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
        for plan in self.plans.values():
            if plan.is_input:
                values: dict[str, Any] = {}
                name = plan.node.input_default.get("name")
                if isinstance(name, str) and name in self.inputs:
                    values["value"] = self.inputs[name]
            elif not plan.required_pins:
                values = {}
            else:
                continue
            self.router.start(plan, values)
        if self.part is not None:
            nodes = self.graph.nodes_by_id
            for link, value in self.part.deliveries:
                source = self.engine.registry.get(nodes[link.source_id].block_id)
                self.router.deliver(
                    link, value, link.is_static or (source is not None and source.static_output)
                )

    # --- rules 2 and 3: arrival of values (routing.py) -----------------------------------------------
    def _new_execution(self, plan: NodePlan) -> NodeExecution:
        self.seq += 1
        return NodeExecution(
            id=f"{self.options.run_id}:{self.seq}",
            node_id=plan.node.id,
            block_id=plan.node.block_id,
            block_name=plan.block.name,
        )

    def _queue(self, ex: NodeExecution) -> None:
        ex.status = ExecStatus.QUEUED
        self.ready.append(ex)
        self.wakeup.set()  # a node still running may have produced it: the driver must look

    # --- rule 4 and 6: running a node ---------------------------------------------------------------
    def _stop_run(self, error: RunStoppedError) -> None:
        if self.stop_error is None:
            self.stop_error = error
        self.wakeup.set()

    def _record_output(self, name: Any, value: Any) -> None:
        key = str(name)
        self.result.outputs.setdefault(key, []).append(value)
        if self.on_graph_output is not None:
            self.on_graph_output(key, value)

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


__all__ = [
    "DEFAULT_MAX_NODE_EXECUTIONS",
    "MAX_NODE_EXECUTIONS_VAR",
    "EngineLimits",
    "ExecStatus",
    "ExecutionBudget",
    "ExecutionCapError",
    "ExecutionObserver",
    "GraphPart",
    "GraphResolver",
    "InsufficientBalanceError",
    "ModerationError",
    "NodeExecution",
    "ReferenceEngine",
    "RoutedValue",
    "RunControl",
    "RunOptions",
    "RunResult",
    "RunStatus",
    "RunStoppedError",
    "SkippedExecution",
    "SubAgentDepthError",
    "plan_graph",
]
