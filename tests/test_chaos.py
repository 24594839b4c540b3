"""Chaos: while requests flow through a real daemon (Redis stream -> listener sensors -> queued run
coordinator -> preloaded launcher), the daemon's whole process group is SIGKILLed and restarted, and then
a run worker is SIGKILLed. Afterwards every request has run exactly once (one run per request id) or is
dead-lettered with a reason, no run is left non-terminal, and the stream is drained.

On the embedded SQLite instance, and on PostgreSQL (dagster-postgres, a fresh database).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterRun, DagsterRunStatus
from support_daemon import DaemonPlatform, agents_dir, fresh_database

from agent_defs.graph.builder import GraphBuilder
from bench.graphs import export
from blocks.library.io import AgentOutputBlock
from blocks.library.time_blocks import CountdownTimerBlock

pytestmark = pytest.mark.chaos

COUNT_ID = "9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01"
WAIT_ID = "c4a05000-0000-4000-8000-00000000a175"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
ALIVE = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}


def _wait_graph(seconds: int) -> dict:
    """A run that stays STARTED for a few seconds, so that kills find runs in flight."""
    b = GraphBuilder("Chaos wait", graph_id=WAIT_ID, version=1)
    timer = b.node(CountdownTimerBlock, node_id="wait", seconds=seconds, input_message="woke")
    out = b.node(AgentOutputBlock, node_id="out", name="done")
    b.link(timer, "output_message", out, "value")
    return export(b.build())


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DaemonPlatform]:
    agents = agents_dir(tmp_path / "agents", _wait_graph(seconds=2))
    if request.param == "sqlite":
        platform = DaemonPlatform(tmp_path, agents)
        try:
            yield platform
        finally:
            platform.stop()
        return
    with fresh_database() as url:
        platform = DaemonPlatform(tmp_path, agents, postgres_url=url)
        try:
            yield platform
        finally:
            platform.stop()


class Traffic:
    """Requests sent so far, a few users, alternating a short and a waiting graph."""

    def __init__(self, platform: DaemonPlatform) -> None:
        self.platform = platform
        self.sent: list[str] = []

    def send(self, count: int, label: str) -> list[str]:
        batch = []
        for _ in range(count):
            n = len(self.sent)
            request_id = f"{label}-{n}-{uuid.uuid4().hex[:8]}"
            graph = WAIT_ID if n % 2 else COUNT_ID
            self.platform.enqueue(request_id, graph, f"user{n % 3}", **({} if n % 2 else {"limit": 2}))
            self.sent.append(request_id)
            batch.append(request_id)
        return batch


def _live_worker_run(platform: DaemonPlatform, request_ids: list[str]) -> DagsterRun | None:
    """A run of these requests whose worker is running now."""
    for request_id in request_ids:
        for run in platform.runs_for(request_id):
            worker = platform.worker(run)
            if run.status in ALIVE and worker is not None and worker.is_alive():
                return run
    return None


def test_requests_run_once_and_no_run_is_left_behind_when_the_daemon_and_a_worker_are_killed(
    platform: DaemonPlatform,
) -> None:
    traffic = Traffic(platform)
    phases: dict[str, float] = {}
    began = time.monotonic()
    platform.start_daemon()
    (warm,) = traffic.send(1, "warm")
    platform.wait_for_status(warm, {DagsterRunStatus.SUCCESS}, timeout=120)
    phases["daemon up, first run done"] = time.monotonic() - began

    # 1. The daemon dies (with its code server, forkserver and run workers) while runs are in flight.
    before_crash = traffic.send(4, "a")
    platform.wait_for("a run in flight", lambda: _live_worker_run(platform, before_crash), timeout=60)
    platform.kill_daemon()
    phases["daemon killed"] = time.monotonic() - began
    while_down = traffic.send(2, "down")  # wait in Redis for the next daemon
    platform.start_daemon()

    # 2. Under the new daemon, one run worker dies.
    after_restart = traffic.send(3, "b")
    victim = platform.wait_for(
        "a run in flight after the restart",
        lambda: _live_worker_run(platform, while_down + after_restart),
        timeout=90,
    )
    worker = platform.worker(victim)
    assert worker is not None
    os.kill(worker.pid, signal.SIGKILL)
    phases["worker killed"] = time.monotonic() - began
    traffic.send(1, "c")

    # 3. Once monitoring has caught up: every request ran once or is dead-lettered, nothing is in flight.
    def settled() -> bool:
        runs = platform.all_runs()
        if any(run.status not in FINISHED for run in runs):
            return False
        dead = {d.get("raw", "") for d in platform.dead_letters()}
        handled = {run.tags.get("agentflow/request_id") for run in runs}
        unhandled = [r for r in traffic.sent if r not in handled and not any(r in raw for raw in dead)]
        return not unhandled and platform.redis.xlen(f"{platform.prefix}:requests") == 0

    platform.wait_for("every request handled and every run finished", settled, timeout=120)
    phases["settled"] = time.monotonic() - began
    outcome = Counter(run.status.value for run in platform.all_runs())
    print(f"chaos: {len(traffic.sent)} requests, runs {dict(outcome)}, seconds since start {phases}")

    dead_letters = platform.dead_letters()
    for request_id in traffic.sent:
        runs = platform.runs_for(request_id)
        assert len(runs) <= 1, f"request {request_id} became {len(runs)} runs: {[r.run_id for r in runs]}"
        if not runs:
            reasons = [d["reason"] for d in dead_letters if request_id in d.get("raw", "")]
            assert reasons and all(reasons), f"request {request_id}: no run and no dead letter with a reason"
    unfinished = [(r.run_id, r.status) for r in platform.all_runs() if r.status not in FINISHED]
    assert not unfinished
    killed = platform.run(victim.run_id)
    assert killed.status is DagsterRunStatus.FAILURE
    assert str(worker.pid) in platform.messages(killed.run_id)
    # Requests that waited in Redis while no daemon was up were neither lost nor harmed.
    for request_id in while_down:
        (run,) = platform.runs_for(request_id)
        assert run.status is DagsterRunStatus.SUCCESS or run.run_id == victim.run_id, (request_id, run.status)
