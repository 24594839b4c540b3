"""The Prometheus collector: every number is computed at scrape time from the shared sources of truth.

Run workers may be forked processes, other machines or one pod per run (K8sRunLauncher): counters
kept in their memory would be lost with them and could not be added up across them. So nothing here
is counted in a run worker. At each scrape this process reads:

- the Dagster instance's run storage (Postgres in production, the same database every run worker
  writes): runs STARTING or STARTED (`execution_manager_active_runs`), QUEUED ones, and the start
  and end times of finished runs (`execution_duration_seconds`);
- the instance config: the run coordinator's `max_concurrent_runs` (`execution_manager_pool_size`);
- the event log: the `agentflow_details` metadata each op writes on its step output (one entry per
  node execution, with block, block id and status) for `node_executions_total` and
  `block_error_rate`. A finished run's events never change, so each finished run is read once and
  folded into running totals; runs still going are re-read at every scrape (their part only grows,
  so the counters stay monotonic);
- Redis, through `RequestQueue`: the request stream's length and the dead-letter list's length.

Several replicas of this endpoint, or a restarted one, report the same values: they are all derived
from the same stores, not accumulated in any process.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

DETAILS_KEY = "agentflow_details"  # agent_defs.jobs.compiler.DETAILS_KEY (not imported: no Dagster job code)
# Run durations span a one-node run (about a second) to long agent loops.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
PAGE = 500
EXECUTION_STATUSES = ("COMPLETED", "FAILED")  # what the error rate is computed over


@dataclass
class _Totals:
    """What every finished run contributed; only ever grows (runs are read once)."""

    executions: dict[tuple[str, str], int] = field(default_factory=dict)  # (block_type, status)
    block_runs: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (id, name): [failed, all]
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_count: int = 0
    duration_sum: float = 0.0
    runs: dict[str, int] = field(default_factory=dict)  # final status -> runs

    def add_executions(self, executions: Iterable[dict[str, Any]]) -> None:
        for e in executions:
            block = str(e.get("block") or "unknown")
            status = str(e.get("status") or "unknown")
            self.executions[(block, status)] = self.executions.get((block, status), 0) + 1
            if status in EXECUTION_STATUSES:
                key = (str(e.get("block_id") or _block_id_of(block)), block)
                counts = self.block_runs.setdefault(key, [0, 0])
                counts[0] += status == "FAILED"
                counts[1] += 1

    def add_duration(self, seconds: float) -> None:
        self.duration_count += 1
        self.duration_sum += seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.bucket_counts[i] += 1

    def merged(self, live: _Totals) -> _Totals:
        out = _Totals(
            executions=dict(self.executions),
            block_runs={k: list(v) for k, v in self.block_runs.items()},
            bucket_counts=self.bucket_counts,
            duration_count=self.duration_count,
            duration_sum=self.duration_sum,
            runs=self.runs,
        )
        for key, n in live.executions.items():
            out.executions[key] = out.executions.get(key, 0) + n
        for key, (failed, total) in live.block_runs.items():
            counts = out.block_runs.setdefault(key, [0, 0])
            counts[0] += failed
            counts[1] += total
        return out


_BLOCK_IDS: dict[str, str] | None = None


def _block_id_of(block_name: str) -> str:
    """For details written before they carried the block id: the registry's id for that name."""
    global _BLOCK_IDS
    if _BLOCK_IDS is None:
        from blocks import REGISTRY

        _BLOCK_IDS = {block.name: block.id for block in REGISTRY}
    return _BLOCK_IDS.get(block_name, "unknown")


def _details_of_event(event: Any) -> list[dict[str, Any]]:
    """The node executions an op recorded on one STEP_OUTPUT (or, best effort, STEP_FAILURE) event."""
    from dagster import DagsterEventType

    if event is None:
        return []
    if event.event_type == DagsterEventType.STEP_OUTPUT:
        entry = event.step_output_data.metadata.get(DETAILS_KEY)
        return list(json.loads(entry.value)["node_executions"]) if entry is not None else []
    # A step that stopped its run (credits, moderation, the execution cap) raises Failure with its
    # node executions as (possibly truncated) JSON: counted when it is whole.
    failure = event.step_failure_data.user_failure_data if event.step_failure_data else None
    entry = failure.metadata.get("node_executions") if failure is not None else None
    if entry is None or not isinstance(entry.value, str):
        return []
    try:
        found = json.loads(entry.value)
    except json.JSONDecodeError:
        return []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


class DagsterSource:
    """Reads runs and node executions from a Dagster instance, each finished run once."""

    FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
    ACTIVE = ("STARTING", "STARTED")

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        self.totals = _Totals()
        self.done: set[str] = set()  # finished runs already folded into the totals
        self.unfinished: set[str] = set()  # runs seen not yet finished: re-checked at each scrape
        self.cursor: str | None = None  # the newest run seen (runs are paged in storage-id order)

    def pool_size(self) -> int | None:
        queue = self.instance.get_concurrency_config().run_queue_config
        return int(queue.max_concurrent_runs) if queue is not None else None

    def count(self, statuses: Iterable[str]) -> int:
        from dagster import DagsterRunStatus, RunsFilter

        return int(self.instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus(s) for s in statuses])))

    def refresh(self) -> _Totals:
        """Fold newly finished runs into the totals; return them plus the runs still going."""
        from dagster import RunsFilter

        records = list(self._new_records())
        if self.unfinished:
            ids = list(self.unfinished)
            for i in range(0, len(ids), PAGE):
                records.extend(self.instance.get_run_records(RunsFilter(run_ids=ids[i : i + PAGE])))
            # Runs deleted while unfinished are forgotten.
            self.unfinished &= {r.dagster_run.run_id for r in records}
        live = _Totals()
        for record in records:
            run_id = record.dagster_run.run_id
            status = record.dagster_run.status.value
            if run_id in self.done:
                continue
            if status in self.FINISHED:
                self.totals.add_executions(self._executions(run_id))
                if record.start_time is not None and record.end_time is not None:
                    self.totals.add_duration(max(0.0, record.end_time - record.start_time))
                self.totals.runs[status] = self.totals.runs.get(status, 0) + 1
                self.done.add(run_id)
                self.unfinished.discard(run_id)
            else:
                self.unfinished.add(run_id)
                if status in (*self.ACTIVE, "CANCELING"):
                    live.add_executions(self._executions(run_id))
        return self.totals.merged(live)

    def _new_records(self) -> Iterator[Any]:
        while True:
            page = self.instance.get_run_records(limit=PAGE, ascending=True, cursor=self.cursor)
            if not page:
                if self.cursor is not None and self.instance.get_run_record_by_id(self.cursor) is None:
                    # The cursor run was deleted (a cursor that no longer exists matches nothing):
                    # start over; runs already read are skipped by id.
                    self.cursor = None
                    continue
                return
            yield from page
            self.cursor = page[-1].dagster_run.run_id
            if len(page) < PAGE:
                return

    def _executions(self, run_id: str) -> list[dict[str, Any]]:
        from dagster import DagsterEventType

        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            connection = self.instance.get_records_for_run(
                run_id,
                cursor=cursor,
                of_type={DagsterEventType.STEP_OUTPUT, DagsterEventType.STEP_FAILURE},
                limit=PAGE,
            )
            for record in connection.records:
                found.extend(_details_of_event(record.event_log_entry.dagster_event))
            if not connection.has_more:
                return found
            cursor = connection.cursor


class AgentflowCollector(Collector):
    """A prometheus_client collector: `collect()` runs at every scrape. A source that cannot be
    reached (Redis or the run storage down) leaves its metrics out and sets its `*_up` gauge to 0;
    the endpoint itself keeps answering."""

    def __init__(self, instance: Any | None, queue_factory: Callable[[], Any] | None) -> None:
        self.dagster = DagsterSource(instance) if instance is not None else None
        self.queue_factory = queue_factory
        self._queue: Any = None
        self._lock = threading.Lock()  # the threaded HTTP server may scrape concurrently

    def describe(self) -> list[Metric]:
        return []  # nothing is collected at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._dagster_metrics()
            yield from self._queue_metrics()

    def _dagster_metrics(self) -> Iterator[Metric]:
        if self.dagster is None:
            return
        up = GaugeMetricFamily("agentflow_run_storage_up", "1 when the Dagster run storage answered")
        try:
            active = self.dagster.count(DagsterSource.ACTIVE)
            queued = self.dagster.count(("QUEUED",))
            pool = self.dagster.pool_size()
            totals = self.dagster.refresh()
        except Exception as exc:
            log.error("metrics: cannot read the Dagster instance: %s", exc, extra={"source": "dagster"})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "execution_manager_active_runs", "Runs STARTING or STARTED (run storage)", value=active
        )
        yield GaugeMetricFamily(
            "execution_manager_queued_runs", "Runs QUEUED by the run coordinator", value=queued
        )
        if pool is not None:
            yield GaugeMetricFamily(
                "execution_manager_pool_size",
                "The run coordinator's max_concurrent_runs (instance config)",
                value=pool,
            )
            yield GaugeMetricFamily(
                "execution_manager_utilization_ratio",
                "active runs / pool size",
                value=active / pool if pool > 0 else math.nan,
            )
        buckets = [(_le(b), n) for b, n in zip(DURATION_BUCKETS, totals.bucket_counts, strict=True)]
        buckets.append(("+Inf", totals.duration_count))
        yield HistogramMetricFamily(
            "execution_duration_seconds",
            "Wall time of finished runs, from run start to run end (run storage)",
            buckets=buckets,
            sum_value=totals.duration_sum,
        )
        runs = CounterMetricFamily("execution_runs", "Finished runs by final status", labels=["status"])
        for status, n in sorted(totals.runs.items()):
            runs.add_metric([status], n)
        yield runs
        executions = CounterMetricFamily(
            "node_executions",
            "Node executions by block and status (agentflow_details step-output metadata)",
            labels=["block_type", "status"],
        )
        for (block, status), n in sorted(totals.executions.items()):
            executions.add_metric([block, status], n)
        yield executions
        rate = GaugeMetricFamily(
            "block_error_rate",
            "Failed / (completed + failed) node executions of each block",
            labels=["block_id", "block_name"],
        )
        for (block_id, block_name), (failed, total) in sorted(totals.block_runs.items()):
            rate.add_metric([block_id, block_name], failed / total)
        yield rate

    def _queue_metrics(self) -> Iterator[Metric]:
        if self.queue_factory is None:
            return
        up = GaugeMetricFamily("agentflow_redis_up", "1 when Redis answered")
        try:
            if self._queue is None:
                self._queue = self.queue_factory()
            depth = self._queue.depth()
            dead = self._queue.dead_letter_depth()
            # The output cache counts hits and misses of every run process in Redis.
            hits, misses = self._queue.client.mget(
                f"{self._queue.prefix}:cache:hits", f"{self._queue.prefix}:cache:misses"
            )
        except Exception as exc:
            log.error("metrics: cannot read the request queue: %s", exc, extra={"source": "redis"})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "agentflow_request_queue_depth", "Requests on the stream not yet acknowledged", value=depth
        )
        yield GaugeMetricFamily("agentflow_dead_letter_depth", "Entries in the dead-letter list", value=dead)
        yield CounterMetricFamily(
            "agentflow_output_cache_hits",
            "Node executions answered from the output cache",
            value=int(hits or 0),
        )
        yield CounterMetricFamily(
            "agentflow_output_cache_misses",
            "Cacheable node executions that ran the block",
            value=int(misses or 0),
        )


def _le(bound: float) -> str:
    return repr(float(bound))
