"""Running one node execution: budget, costs, credentials, the block call (guarded by the node's
cache, breaker, retries and timeout: resilience/guarded.py), and each output recorded, observed and
routed as it is yielded. No Dagster.

`NodeRun` is the part of a run (`reference._Run`) that executes nodes; the run loop and routing are
elsewhere (reference.py, routing.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from agent_defs.credentials.redaction import Redactor
from agent_defs.engine.costs import block_usage_cost, matching_cost
from agent_defs.engine.model import (
    ExecStatus,
    ExecutionBudget,
    ExecutionCapError,
    ExecutionObserver,
    NodeExecution,
    RunOptions,
    RunResult,
    RunStoppedError,
)
from agent_defs.engine.plan import NodePlan
from agent_defs.engine.routing import Router
from agent_defs.graph.io_nodes import recorded_output
from agent_defs.graph.model import Graph
from agent_defs.logs import bind_redactor
from agent_defs.resilience.guarded import BlockCall, GuardContext, guarded
from agent_defs.resilience.policy import NodeGuard, cache_key
from blocks import Block, CostType, Credentials, RunContext

if TYPE_CHECKING:
    from agent_defs.engine.reference import ReferenceEngine

_SIZE_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


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


class NodeRun:
    """Node execution, for a run that provides the attributes below."""

    engine: ReferenceEngine
    graph: Graph
    options: RunOptions
    plans: dict[str, NodePlan]
    result: RunResult
    budget: ExecutionBudget
    calls: tuple[str, ...]
    observer: ExecutionObserver
    blocking_observer: bool
    router: Router
    _stop_run: Callable[[RunStoppedError], None]
    _record_output: Callable[[Any, Any], None]
    _run_subgraph: Any  # RunContext.run_subgraph

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
                bind_redactor(redactor)  # what the block or its libraries log (this task is this node's)
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
