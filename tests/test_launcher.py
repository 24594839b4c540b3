"""The preloaded run launcher: workers fork from a warm process, yet see graphs stored after it started;
a worker that dies before its run ends, even while the run is STARTING, ends the run at once (with a
real dagster-daemon); a pid reused by another process is not taken for the worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.launcher import WorkerStatus
from support_daemon import DaemonPlatform, agents_dir

from agent_defs.launcher import PreloadedRunLauncher
from agent_defs.paths import project_root
from agent_defs.worker_process import WorkerProcess


def _job_names(queue: object) -> None:
    import agent_defs

    queue.put(sorted(agent_defs.agentflow.job_names))  # type: ignore[attr-defined]


def test_a_worker_forked_after_a_graph_was_stored_sees_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    shutil.copy(project_root() / "agents" / "count_to_n.json", agents)
    monkeypatch.setenv("AGENTFLOW_AGENTS_DIR", str(agents))
    monkeypatch.setenv("AGENTFLOW_DAGSTER_HOME", str(tmp_path / "home"))
    context = PreloadedRunLauncher()._forkserver()

    def names_in_a_new_worker() -> list[str]:
        queue = context.Queue()
        worker = context.Process(target=_job_names, args=(queue,))
        worker.start()
        names = queue.get(timeout=120)
        worker.join(timeout=30)
        return names

    assert names_in_a_new_worker() == ["Count_to_N_v1"]  # the forkserver is warm from here on
    later = json.loads((project_root() / "agents" / "ticket_triage.json").read_text())
    (agents / "ticket_triage.json").write_text(json.dumps(later))
    assert names_in_a_new_worker() == ["Count_to_N_v1", "Ticket_Triage_v1"]


# --- a worker that dies before its run ends ---------------------------------------------------------

COUNT_ID = "9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01"
DOOMED_ID = "1a0c7d52-3f51-4c1e-9a57-0d3b8f1e6a0d"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonPlatform]:
    root = tmp_path_factory.mktemp("launcher")
    doomed = json.loads((project_root() / "agents" / "count_to_n.json").read_text())
    doomed.update(id=DOOMED_ID, name="Count to N doomed")
    platform = DaemonPlatform(root, agents_dir(root / "agents", doomed))
    platform.start_daemon()
    try:
        warm = platform.enqueue(f"warm-{uuid.uuid4().hex[:8]}", COUNT_ID, "warm", limit=1)
        platform.wait_for_status(warm, {DagsterRunStatus.SUCCESS}, timeout=180)
        yield platform
    finally:
        platform.stop()


def _starting_with_worker(platform: DaemonPlatform, request_id: str) -> DagsterRun:
    def probe() -> DagsterRun | None:
        runs = platform.runs_for(request_id)
        started = runs and runs[0].status is DagsterRunStatus.STARTING and platform.worker(runs[0])
        return runs[0] if started else None

    return platform.wait_for(f"request {request_id} STARTING with its worker recorded", probe, timeout=90)


@contextmanager
def _gate(path: Path) -> Iterator[None]:
    """While open, a run worker blocks as it lists the stored graphs: it reads every `*.json` file
    of the store, and reading a FIFO waits for a writer. Its run stays STARTING for as long as the test
    needs. Closing the gate gives the waiting readers an empty file (a graph problem, skipped)."""
    os.mkfifo(path)
    try:
        yield
    finally:
        try:
            writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # wakes every blocked reader
        except OSError:
            writer = None  # no reader is waiting
        path.unlink()
        if writer is not None:
            os.close(writer)


def test_a_worker_killed_while_its_run_is_starting_fails_the_run_at_once_and_frees_its_slot(
    daemon: DaemonPlatform,
) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    with _gate(daemon.home.parent / "agents" / "zz_gate.json"):
        # The user's two slots (tag limit 2 in dagster.yaml), and a run queued behind them.
        held = [daemon.enqueue(f"held{i}-{uuid.uuid4().hex[:8]}", COUNT_ID, user, limit=1) for i in (0, 1)]
        victim, survivor = (_starting_with_worker(daemon, r) for r in held)
        behind = daemon.enqueue(f"behind-{uuid.uuid4().hex[:8]}", COUNT_ID, user, limit=1)
        daemon.wait_for_status(behind, {DagsterRunStatus.QUEUED}, timeout=60)

        worker = daemon.worker(victim)
        assert worker is not None and worker.is_alive()
        os.kill(worker.pid, signal.SIGKILL)
        # Well before run monitoring's start timeout would have failed it.
        failed = daemon.wait_for_status(held[0], {DagsterRunStatus.FAILURE}, timeout=20)
        messages = daemon.messages(failed.run_id)
        assert f"Run worker {worker.pid} exited (killed by SIGKILL) while the run was STARTING" in messages
        assert "to start" not in messages  # not the start timeout

        # The freed slot goes to the run behind it; the other held run, alive, is left alone.
        daemon.wait_for_status(behind, {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}, timeout=30)
        assert daemon.run(survivor.run_id).status is DagsterRunStatus.STARTING
    for request_id in (held[1], behind):
        daemon.wait_for_status(request_id, {DagsterRunStatus.SUCCESS}, timeout=90)


def test_a_restarted_daemon_ends_at_once_a_starting_run_whose_worker_died_with_the_old_one(
    daemon: DaemonPlatform,
) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    with _gate(daemon.home.parent / "agents" / "zz_gate.json"):
        orphan_id = daemon.enqueue(f"orphan-{uuid.uuid4().hex[:8]}", COUNT_ID, user, limit=1)
        orphan = _starting_with_worker(daemon, orphan_id)
        worker = daemon.worker(orphan)
        assert worker is not None
        daemon.kill_daemon()  # its process group: the forkserver and the worker die with it
        daemon.wait_for(f"{worker.describe()} gone", lambda: not worker.is_alive(), timeout=30)
    daemon.start_daemon()  # (its code server, too, would wait at the gate)
    # The new daemon's first launch adopts the runs of the old one's workers.
    nudge = daemon.enqueue(f"nudge-{uuid.uuid4().hex[:8]}", COUNT_ID, user, limit=1)
    failed = daemon.wait_for_status(orphan_id, {DagsterRunStatus.FAILURE}, timeout=90)
    messages = daemon.messages(failed.run_id)
    assert f"Run worker {worker.pid} exited (exit status unknown) while the run was STARTING" in messages
    assert "to start" not in messages  # not the start timeout
    daemon.wait_for_status(nudge, {DagsterRunStatus.SUCCESS}, timeout=90)


def test_a_run_whose_job_no_longer_loads_fails_with_the_reason_instead_of_staying_starting(
    daemon: DaemonPlatform,
) -> None:
    first = daemon.enqueue(f"first-{uuid.uuid4().hex[:8]}", DOOMED_ID, "doomed", limit=1)
    daemon.wait_for_status(first, {DagsterRunStatus.SUCCESS}, timeout=90)  # the code server built it
    (daemon.home.parent / "agents" / f"{DOOMED_ID}.json").unlink()  # gone before the next worker looks
    second = daemon.enqueue(f"second-{uuid.uuid4().hex[:8]}", DOOMED_ID, "doomed", limit=1)
    run = daemon.wait_for_status(second, {DagsterRunStatus.FAILURE}, timeout=30)
    messages = daemon.messages(run.run_id)
    assert "could not load job Count_to_N_doomed_v1: " in messages, messages
    assert "Could not find job 'Count_to_N_doomed_v1'" in messages  # the reason, not only the fact


# --- which process is the worker -------------------------------------------------------------------


def _run_with_worker(instance: DagsterInstance, worker: WorkerProcess) -> DagsterRun:
    run = DagsterRun(
        job_name="Count_to_N_v1",
        run_id=str(uuid.uuid4()),
        status=DagsterRunStatus.STARTED,
        tags=worker.tags(),
    )
    return instance.add_run(run)


def test_a_pid_taken_over_by_another_process_is_not_the_worker() -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert WorkerProcess.of(stranger.pid).is_alive()
        # The worker that had this pid started at another time: it is gone, the stranger must not be
        # taken for it, nor be interrupted by a terminate.
        earlier = WorkerProcess(stranger.pid, started="1")
        launcher = PreloadedRunLauncher()
        with DagsterInstance.ephemeral() as instance:
            launcher.register_instance(instance)
            run = _run_with_worker(instance, earlier)
            health = launcher.check_run_worker_health(run)
            assert health.status is WorkerStatus.FAILED, health
            assert launcher.terminate(run.run_id) is False
            live = _run_with_worker(instance, WorkerProcess.of(stranger.pid))
            assert launcher.check_run_worker_health(live).status is WorkerStatus.RUNNING
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()
    assert not WorkerProcess.of(stranger.pid).is_alive()
