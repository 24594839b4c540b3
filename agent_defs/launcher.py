"""A run launcher whose run workers fork from a process that has already imported Dagster and the
code location, instead of starting a fresh Python for every run.

Dagster's default launcher asks the code server to start each run worker with multiprocessing
"spawn": a new interpreter that imports Dagster and the code location (about 1.3 s of CPU and
~120 MiB per run on this machine), which bounds how many short agent runs a small machine can
start per second. Here a multiprocessing forkserver, preloaded once with those imports, forks each
run worker in milliseconds; the forked worker executes the run exactly as Dagster's own run worker
does. Selected in dagster.yaml as `run_launcher: {module: agent_defs.launcher, class:
PreloadedRunLauncher}`; on Kubernetes the K8sRunLauncher replaces it.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData, deserialize_value, serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info

from agent_defs.worker_process import PID_TAG, WorkerProcess

log = logging.getLogger("agentflow.launcher")
WORKER_PID_TAG = PID_TAG
# How often the watcher of this launcher's workers takes in newly launched ones and re-checks a worker
# whose forkserver died (its exit is then seen by process, not by the forkserver's report).
WATCH_INTERVAL_SECONDS = 0.5
MAX_REASON_CHARS = 500  # of an error quoted in a run's failure message (the whole error is attached)
UNFINISHED_WITH_WORKER = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
# Everything a run worker imports except the repository itself: importing agent_defs.definitions
# lists the stored graphs, and a list taken when the forkserver started would miss every graph
# stored since. Each worker builds that list afresh (cheap, with the preflight cache).
PRELOAD = [
    "dagster",
    "dagster._core.execution.api",
    "dagster._utils.hosted_user_process",
    "agent_defs.jobs.catalog",
    "agent_defs.schedules.definitions",
    "agent_defs.sensors.notifications",
    "agent_defs.sensors.requests",
    "agent_defs.store.env",
    "openai",  # the LLM blocks import it on first use; warm here so LLM runs do not pay for it
]


def _execute(serialized_origin: str, run_id: str, serialized_ref: str) -> None:
    """The run worker: what Dagster's own run worker does for one run, in a forked process."""
    from dagster._core.execution.api import execute_run_iterator
    from dagster._utils.hosted_user_process import recon_job_from_origin

    with DagsterInstance.from_ref(deserialize_value(serialized_ref)) as instance:
        run = instance.get_run_by_id(run_id)
        if run is None:
            return
        try:
            recon_job = recon_job_from_origin(deserialize_value(serialized_origin))
            recon_job.get_definition()  # loads the code location and builds the job: errors show here
        except Exception as exc:
            # Failed here, with the reason, rather than left STARTING by a worker that exits.
            reason = f"{type(exc).__name__}: {exc}"
            instance.report_run_failed(
                run,
                f"Run worker {os.getpid()} could not load job {run.job_name}: {reason[:MAX_REASON_CHARS]}",
                JobFailureData(
                    error=serializable_error_info_from_exc_info(sys.exc_info()),
                    failure_reason=RunFailureReason.JOB_INITIALIZATION_FAILURE,
                ),
            )
            return
        # Loading takes a while; a run failed or canceled meanwhile (start timeout, a terminate) must
        # not start from the snapshot read before it.
        run = instance.get_run_by_id(run_id)
        if run is None:
            return
        instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", run)
        try:
            for _ in execute_run_iterator(recon_job, run, instance):
                pass
        except KeyboardInterrupt:
            pass  # terminated: execute_run_iterator has recorded the run as canceled


@dataclass
class _Watched:
    """A worker this launcher started: `process` until its exit is reported (or its forkserver died),
    then only `identity`, checked by process id and start time."""

    run_id: str
    identity: WorkerProcess
    process: multiprocessing.process.BaseProcess | None


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class PreloadedRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._context: Any = None
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._watcher: threading.Thread | None = None
        self._adopted = False
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PreloadedRunLauncher:
        return cls(inst_data=inst_data)

    def _forkserver(self) -> Any:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            self._context = context
        return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no job code origin to load its job from")
        self._adopt_once()
        worker = self._forkserver().Process(
            target=_execute,
            args=(serialize_value(origin), run.run_id, serialize_value(self._instance.get_ref())),
            name=f"run-{run.run_id[:8]}",
        )
        worker.start()
        identity = WorkerProcess.of(worker.pid or 0)
        self._watch(_Watched(run.run_id, identity, worker))
        self._instance.add_run_tags(run.run_id, identity.tags())

    # --- workers that die before their run ends ------------------------------------------------------
    # Dagster's run monitoring (1.13) asks a launcher about STARTED runs only: a worker that dies while
    # its run is STARTING (loading the code location, before the run's first event) would leave the run
    # STARTING, holding its concurrency slot, until run_monitoring.start_timeout_seconds. This launcher
    # started the worker and learns of its exit at once, so it ends the run itself.

    def _watch(self, watched: _Watched) -> None:
        with self._lock:
            self._watched[watched.run_id] = watched
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_workers, name="run-workers", daemon=True)
                self._watcher.start()

    def _adopt_once(self) -> None:
        """The unfinished runs whose workers an earlier launcher process started (a daemon that died and
        was restarted) are watched from the first launch on, by worker identity: one whose worker is
        already gone (it died with that daemon) ends now rather than at the start timeout. A run with no
        worker recorded may not be forked yet; the start timeout covers it."""
        with self._lock:
            if self._adopted:
                return
            self._adopted = True
        try:
            unfinished = self._instance.get_runs(RunsFilter(statuses=UNFINISHED_WITH_WORKER))
        except Exception as exc:
            log.warning("runs of an earlier launcher process not adopted: %s", exc)
            return
        for run in unfinished:
            worker = WorkerProcess.from_tags(run.tags)
            if worker is not None and run.run_id not in self._watched:
                self._watch(_Watched(run.run_id, worker, process=None))

    def _watch_workers(self) -> None:
        while True:
            with self._lock:
                watched = list(self._watched.values())
                if not watched:
                    self._watcher = None
                    return
            sentinels = [w.process.sentinel for w in watched if w.process is not None]
            if sentinels:
                multiprocessing.connection.wait(sentinels, timeout=WATCH_INTERVAL_SECONDS)
            else:
                time.sleep(WATCH_INTERVAL_SECONDS)
            for w in watched:
                exitcode = None
                if w.process is not None:
                    exitcode = w.process.exitcode  # None while the forkserver reports it alive
                    if exitcode is None:
                        continue
                    w.process = None
                # The forkserver also reports an exit when it dies itself; the process decides.
                if w.identity.is_alive():
                    continue
                with self._lock:
                    self._watched.pop(w.run_id, None)
                try:
                    self._end_orphaned_run(w, exitcode)
                except Exception as exc:  # run monitoring's start timeout remains the backstop
                    log.warning("could not end run %s after its worker exited: %s", w.run_id, exc)

    def _end_orphaned_run(self, watched: _Watched, exitcode: int | None) -> None:
        run = self._instance.get_run_by_id(watched.run_id)
        if run is None or run.is_finished:
            return
        message = (
            f"{watched.identity.describe().capitalize()} exited ({_how_it_ended(exitcode)}) while the run "
            f"was {run.status.value}."
        )
        if run.status is DagsterRunStatus.CANCELING:
            self._instance.report_run_canceled(run, message)
        else:
            self._instance.report_run_failed(
                run,
                message + " Marking the run as failed.",
                JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
            )

    # --- terminate and health --------------------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        worker = WorkerProcess.from_tags(run.tags)
        self._instance.report_run_canceling(run)
        if worker is None or not worker.is_alive():
            return False
        try:
            os.kill(worker.pid, signal.SIGINT)  # Dagster's run worker turns an interrupt into a clean cancel
        except ProcessLookupError:
            return False
        threading.Thread(target=self._repeat_interrupt, args=(run_id, worker), daemon=True).start()
        return True

    def _repeat_interrupt(
        self, run_id: str, worker: WorkerProcess, attempts: int = 15, interval: float = 2.0
    ) -> None:
        """An interrupt that lands while the worker writes an event is held until the step ends;
        repeat it until the run has stopped."""
        for _ in range(attempts):
            time.sleep(interval)
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.is_finished or not worker.is_alive():
                return
            try:
                os.kill(worker.pid, signal.SIGINT)
            except ProcessLookupError:
                return

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = WorkerProcess.from_tags(run.tags)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run worker recorded for the run")
        if not worker.is_alive():
            return CheckRunHealthResult(WorkerStatus.FAILED, f"{worker.describe()} is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def join(self, timeout: int = 30) -> None:
        with self._lock:
            processes = [w.process for w in self._watched.values() if w.process is not None]
        for process in processes:
            process.join(timeout=timeout)
