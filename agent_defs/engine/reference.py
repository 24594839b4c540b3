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

import orjson

from agent_defs.credentials.redaction import Redactor
from agent_defs.engine.costs import Pricing, block_usage_cost, matching_cost
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
from agent_defs.engine.plan import NodePlan, plan_graph
from agent_defs.engine.routing import Router
from agent_defs.graph.io_nodes import recorded_output
from agent_defs.graph.model import Graph
from agent_defs.graph.subagents import resolve_sub_agent
from agent_defs.resilience.guarded import BlockCall, GuardContext, guarded
from agent_defs.resilience.policy import BreakerService, NodeGuard, OutputCacheService, cache_key
from blocks import REGISTRY, Block, BlockRegistry, CostType, Credentials, KeyValueStore, RunContext

_SIZE_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _secret_parts(secret: str) -> list[str]:
    """The secret, and each string inside it when it is a JSON object (e.g. a host-scoped credential's
    headers): the block sends the parts, so those are what may come back in a response."""
    parts = [secret]
    try:
        decoded = orjson.loads(secret)
    except orjson.JSONDecodeError:
        return parts
    stack = [decoded]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return parts


async def _checked_outputs(
    block: Block, outputs: AsyncIterator[tuple[str, Any]], redactor: Redactor | None
) -> AsyncIterator[tuple[str, Any]]:
    """A block's outputs, validated against its output schema, secrets scrubbed."""
    async for pin, value in outputs:
        value = block.validate_output(pin, value)
        if redactor is not None:
            value = redactor.redact_obj(value)
        yield pin, value


def _block_call(block: Block, model: Any, ctx: RunContext, redactor: Redactor | None) -> BlockCall:
    """One run of the block, for the resilience wrappers (each attempt runs it again)."""
    return lambda: _checked_outputs(block, block.run(model, ctx), redactor)


def _size(value: Any) -> int:
    """Bytes of the value as JSON (AutoGPT's input_size / output_size)."""
    try:
        return len(orjson.dumps(value, default=str, option=_SIZE_OPTIONS))
    except (TypeError, orjson.JSONEncodeError):
        return len(str(value))


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
        if plan.is_output:  # rule 8: the value that reached the node, not its formatted text
            self._record_output(*recorded_output(data))
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
        guard_ctx: GuardContext | None = None
        try:
            if redactor is not None:
                # The credentials store is Postgres: looked up in a worker thread, off the event loop.
                ctx.credentials = await asyncio.to_thread(self._resolve_credentials, block, model, redactor)
            if plan.guard is None:
                ex.attempts = 1
                await self._observe(self.observer.before_node, ex, block)
                # The fast path: outputs checked in the loop below, no generator in between.
                outputs, unchecked = block.run(model, ctx), True
            else:
                guard_ctx = GuardContext(f"node {plan.node.id} ({block.name})", fatal=(RunStoppedError,))
                call = self._guarded(
                    plan, plan.guard, ex, model, ctx, _block_call(block, model, ctx, redactor), guard_ctx
                )
                outputs, unchecked = call(), False
            async for pin, value in outputs:
                if unchecked:
                    value = block.validate_output(pin, value)
                    if redactor is not None:
                        value = redactor.redact_obj(value)
                ex.outputs.append((pin, value))
                ex.output_size += _size(value)
                if pin == "error":
                    ex.error = str(value)
                if self.blocking_observer:
                    await asyncio.to_thread(self.observer.on_output, ex, pin, value)
                else:
                    self.observer.on_output(ex, pin, value)
                self.router.route(plan, pin, value)
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
            await self._observe(self.observer.on_output, ex, "error", ex.error)
            self.router.route(plan, "error", ex.error)
        finally:
            if guard_ctx is not None:
                ex.attempts = guard_ctx.attempts
        ex.ended_at = time.time()
        ex.status = ExecStatus.FAILED if ex.error is not None else ExecStatus.COMPLETED
        if cost is not None and cost.type is not CostType.RUN and not ex.cached:
            ex.cost = block_usage_cost(
                block, data, ex.input_size + ex.output_size, ex.walltime, self.engine.pricing, ex.stats
            )
        try:
            await self._observe(self.observer.after_node, ex, block)
        except RunStoppedError as exc:  # e.g. the per-byte charge after the node ran could not be paid
            self._stop_run(exc)

    async def _observe(self, hook: Callable[..., None], *args: Any) -> None:
        """An observer hook; one that talks to Postgres or Redis runs in a worker thread, off the loop
        (in order: each is awaited before the node goes on)."""
        if self.blocking_observer:
            await asyncio.to_thread(hook, *args)
        else:
            hook(*args)

    # --- resilience: cache, circuit breaker, timeout, retries (resilience/guarded.py) ------------------
    def _guarded(
        self,
        plan: NodePlan,
        guard: NodeGuard,
        ex: NodeExecution,
        model: Any,
        ctx: RunContext,
        call: BlockCall,
        guard_ctx: GuardContext,
    ) -> BlockCall:
        """`call` wrapped as the node's guard asks. The node execution (and so its id, which charging
        is keyed by) is the same for every attempt; `before_node` is called once."""
        block = plan.block
        if guard.config_error is not None:
            raise ValueError(guard.config_error)
        cache = self.engine.cache if guard.cache_ttl_seconds is not None else None
        key = cache_key(block, model, self.options.user_id, ctx.credentials) if cache is not None else None
        breakers = self.engine.breakers if guard.breaker else None
        provider = block.breaker_key(model) if breakers is not None else None

        async def on_start() -> None:
            await self._observe(self.observer.before_node, ex, block)

        async def on_cache_hit() -> None:  # the block does not run: nothing to charge
            ex.cached = True
            ex.cost = 0
            await on_start()

        return guarded(call, guard, guard_ctx, on_start, on_cache_hit, breakers, provider, cache, key)

    def _resolve_credentials(self, block: Block, model: Any, redactor: Redactor) -> dict[str, Credentials]:
        """Credentials fields hold references ({"id": ...}); the values are fetched for this run's user
        just before the block runs, and every output and error of the node is scrubbed of them."""
        resolved: dict[str, Credentials] = {}
        for field_spec in block.credentials:
            ref = getattr(model, field_spec.input_name, None)
            credential_id = ref.get("id") if isinstance(ref, Mapping) else getattr(ref, "id", None)
            if not credential_id:
                if field_spec.optional:
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
            for part in _secret_parts(credential.secret.get_secret_value()):
                redactor.add(part)
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
