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

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData, deserialize_value, serialize_value

WORKER_PID_TAG = "agentflow/worker_pid"
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
        recon_job = recon_job_from_origin(deserialize_value(serialized_origin))
        instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", run)
        try:
            for _ in execute_run_iterator(recon_job, run, instance):
                pass
        except KeyboardInterrupt:
            pass  # terminated: execute_run_iterator has recorded the run as canceled


class PreloadedRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._context: Any = None
        self._workers: dict[str, multiprocessing.process.BaseProcess] = {}
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
        worker = self._forkserver().Process(
            target=_execute,
            args=(serialize_value(origin), run.run_id, serialize_value(self._instance.get_ref())),
            name=f"run-{run.run_id[:8]}",
        )
        worker.start()
        self._workers[run.run_id] = worker
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(worker.pid)})
        self._reap()

    def _reap(self) -> None:
        for run_id, worker in list(self._workers.items()):
            if not worker.is_alive():
                worker.join(timeout=0)
                del self._workers[run_id]

    def _pid(self, run: DagsterRun) -> int | None:
        value = run.tags.get(WORKER_PID_TAG)
        return int(value) if value and value.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = self._pid(run)
        self._instance.report_run_canceling(run)
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)  # Dagster's run worker turns an interrupt into a clean cancel
        except ProcessLookupError:
            return False
        threading.Thread(target=self._repeat_interrupt, args=(run_id, pid), daemon=True).start()
        return True

    def _repeat_interrupt(self, run_id: str, pid: int, attempts: int = 15, interval: float = 2.0) -> None:
        """An interrupt that lands while the worker writes an event is held until the step ends;
        repeat it until the run has stopped."""
        for _ in range(attempts):
            time.sleep(interval)
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                return
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                return

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker pid recorded")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker {pid} is gone")
        except PermissionError:
            pass
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def join(self, timeout: int = 30) -> None:
        for worker in self._workers.values():
            worker.join(timeout=timeout)

    def dispose(self) -> None:
        self._reap()
