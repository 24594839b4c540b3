"""A real dagster-daemon on a fresh Dagster home, fed through the Redis request queue, that a test can
kill and restart: for the launcher's and the chaos tests.

The instance is the project's own (`python -m agent_defs.instance`): embedded SQLite by default, or a
fresh PostgreSQL database (dagster-postgres) when `postgres_url` is given. The daemon runs in its own
process group, so killing the group kills what it started too (code server, forkserver, run workers),
as a crash of its host or container would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import redis
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from agent_defs.paths import project_root
from agent_defs.worker_process import WorkerProcess

BIN = Path(sys.executable).parent
REQUEST_TAG = "agentflow/request_id"
PG_ADMIN_DSN = os.environ.get("AGENTFLOW_TEST_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
PG_URL_BASE = "postgresql://postgres@127.0.0.1:5432"
# Variables that select an instance, a store or a queue: set here only.
_OWN_VARS = (
    "DAGSTER_HOME",
    "DAGSTER_PG_URL",
    "AGENTFLOW_DAGSTER_HOME",
    "AGENTFLOW_GRAPH_STORE",
    "AGENTFLOW_DATABASE_URL",
    "AGENTFLOW_AGENTS_DIR",
    "AGENTFLOW_REDIS_URL",
    "AGENTFLOW_REDIS_PREFIX",
)
T = TypeVar("T")


def admin_sql(sql: str) -> None:
    """Run one statement on the test PostgreSQL as its administrator (autocommit: CREATE DATABASE)."""
    conn = psycopg2.connect(PG_ADMIN_DSN)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for one Dagster instance (its dagster-postgres URL), dropped after."""
    name = f"agentflow_t_{uuid.uuid4().hex[:12]}"
    admin_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_URL_BASE}/{name}"
    finally:
        admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class DaemonPlatform:
    def __init__(self, root: Path, agents: Path, postgres_url: str | None = None) -> None:
        self.root = root
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        env = {k: v for k, v in os.environ.items() if k not in _OWN_VARS}
        env.update(
            AGENTFLOW_AGENTS_DIR=str(agents),
            AGENTFLOW_DAGSTER_HOME=str(root / "home"),
            AGENTFLOW_REDIS_URL="redis://127.0.0.1:6379/0",
            AGENTFLOW_REDIS_PREFIX=self.prefix,
            # A request read by a daemon that was then killed is taken over this soon.
            AGENTFLOW_REQUEST_RECLAIM_MS="3000",
            PYTHONUNBUFFERED="1",
        )
        if postgres_url:
            env["DAGSTER_PG_URL"] = postgres_url
        home = subprocess.run(
            [sys.executable, "-m", "agent_defs.instance"],
            env=env,
            cwd=project_root(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env["DAGSTER_HOME"] = home
        self.env = env
        self.home = Path(home)
        self.redis = redis.Redis(decode_responses=True)
        self.daemon: subprocess.Popen[bytes] | None = None
        self._starts = 0
        with self.instance():
            pass  # creates the storage once, before the daemon's processes race to create it

    # --- the daemon -----------------------------------------------------------------------------------

    def start_daemon(self) -> None:
        assert self.daemon is None or self.daemon.poll() is not None
        self._starts += 1
        with (self.root / f"daemon.{self._starts}.log").open("wb") as log:
            self.daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(project_root() / "workspace.yaml")],
                env=self.env,
                cwd=project_root(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill_daemon(self) -> None:
        """SIGKILL the daemon's whole process group: nothing it started gets to clean up."""
        assert self.daemon is not None
        with suppress(ProcessLookupError):
            os.killpg(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(timeout=30)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.kill_daemon()  # a test's daemon has nothing to save; a clean stop takes seconds
        for key in self.redis.scan_iter(f"{self.prefix}:*"):
            self.redis.delete(key)
        self.redis.close()

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-chars:]
            for p in sorted(self.root.glob("daemon.*.log"))
        )

    # --- requests and runs ----------------------------------------------------------------------------

    def enqueue(self, request_id: str, graph_id: str, user_id: str, **inputs: Any) -> str:
        request = {"request_id": request_id, "graph_id": graph_id, "user_id": user_id, "inputs": inputs}
        self.redis.xadd(f"{self.prefix}:requests", {"request": json.dumps(request)})
        return request_id

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(f"{self.prefix}:dead_letter", 0, -1)]

    @contextmanager
    def instance(self) -> Iterator[DagsterInstance]:
        previous = {k: os.environ.get(k) for k in ("DAGSTER_PG_URL",)}
        if "DAGSTER_PG_URL" in self.env:
            os.environ["DAGSTER_PG_URL"] = self.env["DAGSTER_PG_URL"]  # read by dagster-postgres
        try:
            with DagsterInstance.from_config(str(self.home)) as instance:
                yield instance
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def runs_for(self, request_id: str) -> list[DagsterRun]:
        with self.instance() as instance:
            return list(instance.get_runs(RunsFilter(tags={REQUEST_TAG: request_id})))

    def all_runs(self) -> list[DagsterRun]:
        with self.instance() as instance:
            return list(instance.get_runs())

    def run(self, run_id: str) -> DagsterRun:
        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
        assert run is not None, run_id
        return run

    def messages(self, run_id: str) -> str:
        with self.instance() as instance:
            return "\n".join(e.message or "" for e in instance.all_logs(run_id))

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Polls `probe` until it returns something other than None (or False)."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what} after {timeout} s\n{self.log_tail()}")
            time.sleep(0.25)

    def wait_for_status(self, request_id: str, statuses: set[DagsterRunStatus], timeout: float) -> DagsterRun:
        def probe() -> DagsterRun | None:
            runs = self.runs_for(request_id)
            return runs[0] if runs and runs[0].status in statuses else None

        return self.wait_for(f"request {request_id} in {statuses}", probe, timeout)

    @staticmethod
    def worker(run: DagsterRun) -> WorkerProcess | None:
        return WorkerProcess.from_tags(run.tags)


def agents_dir(path: Path, *graphs: dict[str, Any]) -> Path:
    """An agents directory with the project's count_to_n.json and `graphs`."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(project_root() / "agents" / "count_to_n.json", path)
    for graph in graphs:
        (path / f"{graph['id']}.json").write_text(json.dumps(graph), encoding="utf-8")
    return path
