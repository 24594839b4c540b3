"""Sensors that turn Redis execution requests into runs and carry out cancel requests.

Delivery protocol (see agent_defs.requests.queue): a request becomes a RunRequest with
run_key=request_id and is acknowledged only on a later tick, once its run exists; entries read by a
process that died are re-delivered. So a request is never lost.

At most once, whatever the number of listeners (Dagster deduplicates run keys per sensor only): a
request id already tagged on a run is never issued again, and a new id is claimed in Redis by the
first listener that sees it (agent_defs.requests.claims); only the holder issues its RunRequest, so a
re-issue after a crash is deduplicated by the holder's own run key. Another entry with the same id is
acknowledged once the run exists: silently when it asks for the same thing (a producer's retry),
dead-lettered as a duplicate when it asks for something else.

Latency: the sensor daemon starts a sensor's evaluation at most every 5 s. Each evaluation therefore
long-polls the stream (XREADGROUP BLOCK) for most of that window and returns as soon as requests
arrive; a second listener covers the rest of the window while the first one's run is being created.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagster import (
    DagsterInvalidConfigError,
    DagsterRun,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    validate_run_config,
)
from dagster._core.definitions.target import AutomationTarget

from agent_defs.jobs.catalog import JobCatalog
from agent_defs.jobs.compiler import TAG_PREFIX
from agent_defs.requests.models import ExecutionRequest, parse_wire
from agent_defs.requests.queue import Delivery

if TYPE_CHECKING:
    from agent_defs.requests.claims import RequestClaims
    from agent_defs.requests.env import QueueSettings
    from agent_defs.requests.queue import RequestQueue

log = logging.getLogger("agentflow.sensors")

LISTENERS = 2
REQUEST_TAG = f"{TAG_PREFIX}request_id"
DIGEST_TAG = f"{TAG_PREFIX}request_digest"
USER_TAG = f"{TAG_PREFIX}user_id"
PRIORITY_TAG = "dagster/priority"
MAX_READ = 50


@dataclass(frozen=True)
class RequestRouting:
    """Which job runs a request: (graph id, version) -> job name, and each graph's active version."""

    jobs: dict[tuple[str, int], str]
    active: dict[str, int]
    # Node ids by graph version, read from the graph store when a request first names that version
    # (stored versions are immutable, so the cache never goes stale).
    load_node_ids: Callable[[str, int], frozenset[str]] | None = None
    _node_ids: dict[tuple[str, int], frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_catalog(cls, catalog: JobCatalog) -> RequestRouting:
        jobs = {(ref.graph_id, ref.version): name for name, ref in catalog.refs.items()}
        active = {ref.graph_id: ref.version for ref in catalog.refs.values() if ref.active}
        # A graph whose active version does not validate is launched at its newest valid version.
        newest: dict[str, int] = {}
        for graph_id, version in jobs:
            newest[graph_id] = max(newest.get(graph_id, version), version)
        return cls(jobs, {**newest, **active}, _node_ids_from_store)

    def version_for(self, request: ExecutionRequest) -> int | None:
        return request.graph_version or self.active.get(request.graph_id)

    def job_for(self, request: ExecutionRequest) -> tuple[str | None, str]:
        version = self.version_for(request)
        if version is None:
            return None, f"graph {request.graph_id} is not stored (or does not validate)"
        job = self.jobs.get((request.graph_id, version))
        if job is None:
            return None, f"graph {request.graph_id} v{version} is not stored (or does not validate)"
        return job, ""

    def mask_problem(self, request: ExecutionRequest) -> str | None:
        """Why the request's input masks do not fit its graph (a node it does not have), or None."""
        version = self.version_for(request)
        if not request.input_masks or version is None or self.load_node_ids is None:
            return None
        key = (request.graph_id, version)
        if key not in self._node_ids:
            self._node_ids[key] = self.load_node_ids(*key)
        unknown = sorted(set(request.input_masks) - self._node_ids[key])
        if not unknown:
            return None
        shown = ", ".join(repr(n) for n in unknown[:5]) + (
            f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        )
        return f"input_masks: graph {request.graph_id} v{version} has no node {shown}"


def _node_ids_from_store(graph_id: str, version: int) -> frozenset[str]:
    from agent_defs.store.env import store_from_env

    return frozenset(node.id for node in store_from_env().load(graph_id, version).nodes)


@dataclass(frozen=True)
class _Listening:
    settings: QueueSettings
    queue: RequestQueue
    claims: RequestClaims


def _listening() -> _Listening:
    # Imported here: Redis is optional for the code location. Settings are read at each tick.
    from agent_defs.requests.claims import RequestClaims
    from agent_defs.requests.env import QueueSettings, prefix_from_env, redis_from_env
    from agent_defs.requests.queue import RequestQueue

    settings = QueueSettings.from_env()
    client = redis_from_env(decode_responses=False)  # entries are decoded one by one by the queue
    queue = RequestQueue(
        client,
        prefix_from_env(),
        reclaim_idle_ms=settings.reclaim_idle_ms,
        max_entry_bytes=settings.max_entry_bytes,
        dead_letter_max=settings.dead_letter_max,
    )
    return _Listening(settings, queue, RequestClaims(client, queue.prefix, settings.claim_ttl_s))


def _run_ids_for_request(context: SensorEvaluationContext, request_id: str) -> list[str]:
    return list(context.instance.get_run_ids(RunsFilter(tags={REQUEST_TAG: request_id}), limit=5))


def _run_for_request(context: SensorEvaluationContext, request_id: str) -> DagsterRun | None:
    runs = context.instance.get_runs(RunsFilter(tags={REQUEST_TAG: request_id}), limit=1)
    return runs[0] if runs else None


def _settle(queue: RequestQueue, delivery: Delivery, request: ExecutionRequest, run: DagsterRun) -> None:
    """The request's id already has a run: acknowledge this entry. One asking for something else
    than that run is a duplicate id, recorded in the dead-letter list; a run launched before runs
    carried the digest is taken to match."""
    if run.tags.get(DIGEST_TAG, request.digest()) == request.digest():
        queue.ack([delivery.entry_id])
    else:
        queue.dead_letter(delivery, f"duplicate request id {request.request_id}: run {run.run_id} exists")


def _settle_pending(context: SensorEvaluationContext, queue: RequestQueue) -> int:
    """Step 3 of the delivery protocol: settle every pending request whose run now exists."""
    settled = 0
    for entry in queue.pending():
        request, _error = parse_wire(ExecutionRequest, entry.raw)
        if request is None:
            continue  # a reader has it in hand and will dead-letter it
        run = _run_for_request(context, request.request_id)
        if run is not None:
            _settle(queue, Delivery(entry.entry_id, entry.raw, request, None), request, run)
            settled += 1
    return settled


def _cancel(context: SensorEvaluationContext, queue: RequestQueue, consumer: str) -> int:
    """Carry out cancel requests: queued runs are cancelled, started ones terminated. Sub-agent runs
    execute inside their parent's step, so stopping the parent stops them too."""
    handled = 0
    for delivery in queue.read_cancels(consumer, count=MAX_READ, block_ms=None):
        if delivery.cancel is None:
            queue.dead_letter(delivery, delivery.error or "malformed cancel request")
            continue
        if delivery.cancel.run_id:
            run_ids = [delivery.cancel.run_id]
        else:
            run_ids = _run_ids_for_request(context, delivery.cancel.request_id or "")
        runs = [r for r in (context.instance.get_run_by_id(i) for i in run_ids) if r is not None]
        if not runs:
            what = (
                f"run {delivery.cancel.run_id}"
                if delivery.cancel.run_id
                else f"request {delivery.cancel.request_id}"
            )
            queue.dead_letter(delivery, f"cancel: no run for {what}")
            continue
        for run in runs:
            if run.is_finished:
                continue
            context.instance.run_coordinator.cancel_run(run.run_id)
            context.log.info(f"cancel request {delivery.entry_id}: stopping run {run.run_id}")
        queue.ack_cancels([delivery.entry_id])
        handled += 1
    return handled


def _run_requests(
    context: SensorEvaluationContext, listening: _Listening, routing: RequestRouting, name: str, consumer: str
) -> Iterator[RunRequest]:
    queue = listening.queue
    issued: set[str] = set()
    for delivery in queue.read(consumer, count=MAX_READ, block_ms=listening.settings.listen_ms or None):
        request = delivery.request
        if request is None:
            queue.dead_letter(delivery, delivery.error or "malformed request")
            continue
        try:
            job, reason = routing.job_for(request)
            if job is None:
                queue.dead_letter(delivery, f"request {request.request_id}: {reason}")
                continue
            mask_problem = routing.mask_problem(request)
            if mask_problem:
                queue.dead_letter(delivery, f"request {request.request_id}: {mask_problem}")
                continue
            run_config = {
                "inputs": request.inputs,
                "user_id": request.user_id,
                "input_masks": request.input_masks,
            }
            # Checked here so that a bad request is dead-lettered instead of failing the tick.
            validate_run_config(context.repository_def.get_job(job), run_config)
        except DagsterInvalidConfigError as exc:
            errors = "; ".join(e.message for e in exc.errors) or str(exc)
            queue.dead_letter(delivery, f"request {request.request_id}: inputs do not fit {job}: {errors}")
            continue
        except Exception as exc:
            # One request this reader cannot handle must not fail the tick for the others.
            queue.dead_letter(
                delivery, f"request {request.request_id}: could not become a run: {type(exc).__name__}: {exc}"
            )
            continue
        if not _may_issue(context, listening, name, delivery, request, issued):
            continue
        issued.add(request.request_id)
        yield RunRequest(
            run_key=request.request_id,
            job_name=job,
            run_config=run_config,
            tags={
                REQUEST_TAG: request.request_id,
                DIGEST_TAG: request.digest(),
                USER_TAG: request.user_id,
                PRIORITY_TAG: str(request.priority),
            },
        )


def _may_issue(
    context: SensorEvaluationContext,
    listening: _Listening,
    name: str,
    delivery: Delivery,
    request: ExecutionRequest,
    issued: set[str],
) -> bool:
    """Whether this listener issues the request's RunRequest now (see the module docstring)."""
    if request.request_id in issued:
        return False  # a second entry with the id in this tick: settled once the run exists
    run = _run_for_request(context, request.request_id)
    if run is not None:
        _settle(listening.queue, delivery, request, run)
        return False
    claim = listening.claims.take(
        request.request_id, context.sensor_name, delivery.entry_id, request.digest()
    )
    if claim.holder == context.sensor_name:
        return True
    # Another listener holds the id and its run does not exist yet: the entry stays pending and is
    # settled once that run exists.
    context.log.info(
        f"request {request.request_id} (entry {delivery.entry_id}) is claimed by {claim.holder}; waiting for its run"
    )
    return False


def _listener(
    name: str, routing: RequestRouting, status: DefaultSensorStatus, job_names: list[str]
) -> SensorDefinition:
    def evaluate(context: SensorEvaluationContext) -> list[RunRequest] | SkipReason:
        import redis

        consumer = f"{name}-{os.getpid()}"
        try:
            listening = _listening()
            acked = _settle_pending(context, listening.queue)
            cancelled = _cancel(context, listening.queue, consumer)
            requests = list(_run_requests(context, listening, routing, name, consumer))
            listening.queue.trim()
        except redis.RedisError as exc:
            return SkipReason(f"Redis is unreachable: {type(exc).__name__}")
        if not requests:
            return SkipReason(f"no new requests (settled {acked}, cancels {cancelled})")
        return requests

    sensor = SensorDefinition(
        name=name,
        evaluation_fn=evaluate,
        minimum_interval_seconds=1,
        description="Turns execution requests from Redis into runs (run key = request id) and carries out "
        "cancel requests.",
        default_status=status,
        job_name=job_names[0],
    )
    # One sensor launches every stored graph's job. Dagster accepts job names as targets, but its
    # constructor takes only one name, so the others are added here (names, not definitions, so that
    # building the sensor compiles nothing).
    sensor._targets = [AutomationTarget(resolvable_to_job=n) for n in job_names]
    return sensor


def request_sensors(catalog: JobCatalog) -> list[SensorDefinition]:
    if not catalog.jobs:
        return []
    routing = RequestRouting.from_catalog(catalog)
    # Running by default only where Redis is configured, so the embedded default has no failing ticks.
    status = (
        DefaultSensorStatus.RUNNING if os.environ.get("AGENTFLOW_REDIS_URL") else DefaultSensorStatus.STOPPED
    )
    names = sorted(catalog.jobs)
    return [_listener(f"agent_requests_{i}", routing, status, names) for i in range(LISTENERS)]
