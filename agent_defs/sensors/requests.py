"""Sensors that turn Redis execution requests into runs and carry out cancel requests.

Delivery protocol (see agent_defs.requests.queue): a request becomes a RunRequest with
run_key=request_id and is acknowledged only on a later tick, once its run exists; entries read by a
process that died are re-delivered, and the run key makes the second delivery a no-op. So a request
is never lost and never runs twice.

Latency: the sensor daemon starts a sensor's evaluation at most every 5 s. Each evaluation therefore
long-polls the stream (XREADGROUP BLOCK) for most of that window and returns as soon as requests
arrive; a second listener covers the rest of the window while the first one's run is being created.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import (
    DagsterInvalidConfigError,
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
from agent_defs.requests.models import ExecutionRequest

if TYPE_CHECKING:
    from agent_defs.requests.queue import RequestQueue

log = logging.getLogger("agentflow.sensors")

LISTENERS = 2
LISTEN_MS = 4_500  # just under the daemon's 5 s evaluation interval
REQUEST_TAG = f"{TAG_PREFIX}request_id"
USER_TAG = f"{TAG_PREFIX}user_id"
PRIORITY_TAG = "dagster/priority"
MAX_READ = 50


@dataclass(frozen=True)
class RequestRouting:
    """Which job runs a request: (graph id, version) -> job name, and each graph's active version."""

    jobs: dict[tuple[str, int], str]
    active: dict[str, int]

    @classmethod
    def from_catalog(cls, catalog: JobCatalog) -> RequestRouting:
        jobs = {(ref.graph_id, ref.version): name for name, ref in catalog.refs.items()}
        active = {ref.graph_id: ref.version for ref in catalog.refs.values() if ref.active}
        # A graph whose active version does not validate is launched at its newest valid version.
        newest: dict[str, int] = {}
        for graph_id, version in jobs:
            newest[graph_id] = max(newest.get(graph_id, version), version)
        return cls(jobs, {**newest, **active})

    def job_for(self, request: ExecutionRequest) -> tuple[str | None, str]:
        version = request.graph_version or self.active.get(request.graph_id)
        if version is None:
            return None, f"graph {request.graph_id} is not stored (or does not validate)"
        job = self.jobs.get((request.graph_id, version))
        if job is None:
            return None, f"graph {request.graph_id} v{version} is not stored (or does not validate)"
        return job, ""


def _queue() -> RequestQueue:
    # Imported here: Redis is optional for the code location.
    from agent_defs.requests.env import prefix_from_env, redis_from_env
    from agent_defs.requests.queue import RequestQueue

    # How long a read-but-unacknowledged request waits before another listener takes it over: long
    # enough that a slow tick is not mistaken for a dead one.
    reclaim_ms = int(os.environ.get("AGENTFLOW_REQUEST_RECLAIM_MS", "60000"))
    return RequestQueue(redis_from_env(), prefix_from_env(), reclaim_idle_ms=reclaim_ms)


def _run_ids_for_request(context: SensorEvaluationContext, request_id: str) -> list[str]:
    return list(context.instance.get_run_ids(RunsFilter(tags={REQUEST_TAG: request_id}), limit=5))


def _request_id(raw: str) -> str | None:
    try:
        value = json.loads(raw).get("request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _ack_launched(context: SensorEvaluationContext, queue: RequestQueue) -> int:
    """Acknowledge the requests whose runs now exist (step 3 of the delivery protocol)."""
    done = []
    for entry in queue.pending():
        request_id = _request_id(entry.raw)
        if request_id and _run_ids_for_request(context, request_id):
            done.append(entry.entry_id)
    return queue.ack(done) if done else 0


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
    context: SensorEvaluationContext, queue: RequestQueue, routing: RequestRouting, consumer: str
) -> Iterator[RunRequest]:
    for delivery in queue.read(consumer, count=MAX_READ, block_ms=LISTEN_MS):
        request = delivery.request
        if request is None:
            queue.dead_letter(delivery, delivery.error or "malformed request")
            continue
        try:
            job, reason = routing.job_for(request)
            if job is None:
                queue.dead_letter(delivery, f"request {request.request_id}: {reason}")
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
        yield RunRequest(
            run_key=request.request_id,
            job_name=job,
            run_config=run_config,
            tags={
                REQUEST_TAG: request.request_id,
                USER_TAG: request.user_id,
                PRIORITY_TAG: str(request.priority),
            },
        )


def _listener(
    name: str, routing: RequestRouting, status: DefaultSensorStatus, job_names: list[str]
) -> SensorDefinition:
    def evaluate(context: SensorEvaluationContext) -> list[RunRequest] | SkipReason:
        import redis

        consumer = f"{name}-{os.getpid()}"
        try:
            queue = _queue()
            acked = _ack_launched(context, queue)
            cancelled = _cancel(context, queue, consumer)
            requests = list(_run_requests(context, queue, routing, consumer))
        except redis.RedisError as exc:
            return SkipReason(f"Redis is unreachable: {type(exc).__name__}")
        if not requests:
            return SkipReason(f"no new requests (acknowledged {acked}, cancels {cancelled})")
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
