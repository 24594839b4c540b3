"""The request listeners on a real Dagster instance, ticked by Dagster's own sensor daemon code
(`execute_sensor_iteration`) in this process: run keys, tick resumption and run creation are
Dagster's, the code location is `agent_defs` loaded from a directory of graphs, and runs stay QUEUED
(nothing dequeues them), so a test sees exactly which runs a request became.

Each test gets its own Redis prefix (read by the sensors at every tick) and its own request ids."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from dagster import DagsterInstance, DagsterRun, RunsFilter
from dagster._core.instance_for_test import instance_for_test
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration

from agent_defs.paths import project_root
from agent_defs.requests.queue import RequestQueue

COUNT_ID = "9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01"  # agents/count_to_n.json: input `limit`
LISTENER_NAMES = ("agent_requests_0", "agent_requests_1")
RECLAIM_MS = 300
LOCATION = "agentflow_test"
# When each listener of each instance was last evaluated: Dagster skips a sensor evaluated less than
# its minimum interval (1 s) ago, whichever test evaluated it.
_LAST_TICK: dict[tuple[int, str], float] = {}


@dataclass
class Listeners:
    """Ticks one listener sensor at a time (the other is stopped), as the daemon would."""

    instance: DagsterInstance
    context: Any
    client: redis.Redis
    prefix: str

    @property
    def queue(self) -> RequestQueue:
        return RequestQueue(self.client, self.prefix, reclaim_idle_ms=RECLAIM_MS)

    def _sensors(self) -> dict[str, Any]:
        location = self.context.create_request_context().get_code_location(LOCATION)
        return {s.name: s for s in location.get_repository("agentflow").get_sensors()}

    def only(self, name: str) -> None:
        """Run the listener `name`; stop the other one and the notification sensors."""
        for sensor_name, sensor in self._sensors().items():
            state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
            running = state.is_running if state else sensor.default_status.value == "RUNNING"
            if sensor_name == name and not running:
                self.instance.start_sensor(sensor)
            elif sensor_name != name and running:
                self.instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)

    def tick(self, name: str, crash_after_reserving_runs: bool = False) -> None:
        """One evaluation of listener `name` and the creation of its runs. With the crash flag, the
        daemon fails after recording the tick's run requests and before creating any run (as a
        daemon killed there would); Dagster resumes that tick on the sensor's next evaluation."""
        self.only(name)
        # The sensors' minimum interval is 1 s: wait it out so that this iteration evaluates.
        key = (id(self.instance), name)
        wait = _LAST_TICK.get(key, 0.0) + 1.05 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        flags = (
            {name: {"RUN_IDS_RESERVED": Exception("daemon crashed")}} if crash_after_reserving_runs else None
        )
        logger = logging.getLogger("test.sensors")
        list(execute_sensor_iteration(self.context, logger, None, None, debug_crash_flags=flags))
        _LAST_TICK[key] = time.monotonic()

    def enqueue(self, request: dict[str, Any]) -> str:
        return self.client.xadd(f"{self.prefix}:requests", {"request": json.dumps(request)}).decode()

    def enqueue_raw(self, data: bytes | str, field_name: str = "request") -> str:
        return self.client.xadd(f"{self.prefix}:requests", {field_name: data}).decode()

    def runs_for(self, request_id: str) -> list[DagsterRun]:
        return list(self.instance.get_runs(RunsFilter(tags={"agentflow/request_id": request_id})))

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.client.lrange(f"{self.prefix}:dead_letter", 0, -1)]

    def wait_reclaim(self) -> None:
        time.sleep(RECLAIM_MS / 1000 + 0.1)


def count_request(request_id: str, user: str = "alice", limit: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "graph_id": COUNT_ID,
        "user_id": user,
        "inputs": {"limit": limit},
        **extra,
    }


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


@contextmanager
def listener_workspace(
    tmp_path: Path,
    storage: dict[str, Any] | None = None,
    execute_runs: bool = False,
    graphs: tuple[Path, ...] = (),
) -> Iterator[tuple[DagsterInstance, Any]]:
    """A Dagster instance (SQLite, or `storage` overrides) and the `agent_defs` code location loaded
    in this process from a directory holding count_to_n.json and `graphs` (the environment it reads
    at load is set by `listener_env`). Runs stay QUEUED, or with `execute_runs` run in this process
    as soon as they are created."""
    agents = tmp_path / "agents"
    agents.mkdir()
    for graph_file in (project_root() / "agents" / "count_to_n.json", *graphs):
        shutil.copy(graph_file, agents / graph_file.name)
    queued = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    overrides: dict[str, Any] = {
        **({} if execute_runs else queued),
        "telemetry": {"enabled": False},
        **(storage or {}),
    }
    (tmp_path / "home").mkdir()
    with instance_for_test(
        overrides=overrides,
        temp_dir=str(tmp_path / "home"),
        synchronous_run_coordinator=execute_runs,
        synchronous_run_launcher=execute_runs,
    ) as instance:
        # The repository caches what its function returned on the module's object: a location loaded
        # earlier in this process would keep the graphs of that test's store.
        sys.modules.pop("agent_defs.definitions", None)
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name="agent_defs", working_directory=str(project_root())),
            location_name=LOCATION,
        )
        with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as context:
            yield instance, context


def listener_env(monkeypatch: pytest.MonkeyPatch, agents: Path, prefix: str) -> None:
    monkeypatch.setenv("AGENTFLOW_AGENTS_DIR", str(agents))
    monkeypatch.setenv("AGENTFLOW_GRAPH_STORE", "directory")
    monkeypatch.setenv("AGENTFLOW_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("AGENTFLOW_REDIS_PREFIX", prefix)
    monkeypatch.setenv("AGENTFLOW_REQUEST_RECLAIM_MS", str(RECLAIM_MS))
    monkeypatch.setenv("AGENTFLOW_REQUEST_LISTEN_MS", "0")  # tests tick on purpose: never long-poll


@contextmanager
def listeners_on(
    instance: DagsterInstance, context: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Listeners]:
    """`Listeners` on their own Redis prefix (read by the sensors at each tick), deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex}"
    monkeypatch.setenv("AGENTFLOW_REDIS_PREFIX", prefix)
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        yield Listeners(instance, context, client, prefix)
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
