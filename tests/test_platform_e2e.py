"""Platform services end to end, with a real dagster-daemon and webserver, Redis and PostgreSQL:
requests become runs, nothing is lost or duplicated, bad requests are dead-lettered, cancels stop
runs, the per-user limit holds, credits are charged and a zero balance stops a run, and a planted
secret appears nowhere it must not."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from cryptography.fernet import Fernet
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._serdes import serialize_value
from support_processes import free_port, stop_process_group

from agent_defs.graph.builder import GraphBuilder
from agent_defs.jobs.results import read_run_outputs
from agent_defs.paths import project_root
from bench.graphs import export
from blocks.library.agent import AgentExecutorBlock
from blocks.library.http import SendAuthenticatedWebRequestBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.time_blocks import CountdownTimerBlock

pytestmark = pytest.mark.filterwarnings(
    # gql (inside dagster-graphql's client) passes arguments it has itself deprecated.
    "ignore:Using variable_values and operation_name arguments:DeprecationWarning"
)

BIN = Path(sys.executable).parent
COUNT_ID = "9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01"
SLOW_ID = "e2e00000-0000-4000-8000-00000000510e"
SECRET_ID = "e2e00000-0000-4000-8000-000000005ec2"
SHORT_ID = "e2e00000-0000-4000-8000-0000000005a0"
PLANTED = "sk-planted-" + uuid.uuid4().hex
CALCULATOR_ID = CalculatorBlock.id


def _slow_graph(seconds: int) -> dict[str, Any]:
    """A parent whose only node is a sub-agent that waits: cancelling must stop the child too."""
    child = GraphBuilder("Waiter", graph_id="e2e-waiter", version=1)
    timer = child.node(CountdownTimerBlock, node_id="wait", seconds=seconds, input_message="woke")
    out = child.node(AgentOutputBlock, node_id="out", name="done")
    child.link(timer, "output_message", out, "value")
    parent = GraphBuilder("Slow parent", graph_id=SLOW_ID)
    agent = parent.node(
        AgentExecutorBlock,
        node_id="agent",
        graph_id="e2e-waiter",
        graph_version=1,
        input_schema={"properties": {}},
        output_schema={"properties": {"done": {"type": "string"}}},
    )
    result = parent.node(AgentOutputBlock, node_id="result", name="result")
    parent.link(agent, "done", result, "value")
    data = export(parent.build())
    data["sub_graphs"] = [export(child.build())]
    return data


def _secret_graph() -> dict[str, Any]:
    b = GraphBuilder("Authenticated call", graph_id=SECRET_ID)
    url = b.node(AgentInputBlock, node_id="url", name="url")
    cred = b.node(AgentInputBlock, node_id="cred", name="credential")
    call = b.node(SendAuthenticatedWebRequestBlock, node_id="call", method="GET")
    response = b.node(AgentOutputBlock, node_id="response", name="response")
    error = b.node(AgentOutputBlock, node_id="error", name="error")
    b.link(url, "result", call, "url").link(cred, "result", call, "credentials")
    b.link(call, "response", response, "value").link(call, "error", error, "value")
    return export(b.build())


class _EchoHeaders(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Platform:
    env: dict[str, str]
    home: Path
    prefix: str
    redis: redis.Redis
    dsn: str
    port: int
    echo_url: str
    echo_seen: list[dict[str, str]]

    def agentflow(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "agentflow"), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def enqueue(self, request: dict[str, Any]) -> None:
        self.redis.xadd(f"{self.prefix}:requests", {"request": json.dumps(request)})

    def enqueue_raw(self, text: str) -> None:
        self.redis.xadd(f"{self.prefix}:requests", {"request": text})

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_config(str(self.home))

    def runs_for(self, request_id: str) -> list[Any]:
        with self.instance() as instance:
            return list(instance.get_runs(RunsFilter(tags={"agentflow/request_id": request_id})))

    def wait_for_run(self, request_id: str, statuses: set[DagsterRunStatus], timeout: float = 90) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            runs = self.runs_for(request_id)
            if runs and runs[0].status in statuses:
                return runs[0]
            time.sleep(0.3)
        raise AssertionError(
            f"request {request_id}: no run reached {statuses}; runs: {self.runs_for(request_id)}"
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(f"{self.prefix}:dead_letter", 0, -1)]

    def notifications(self, user: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(f"{self.prefix}:notifications:{user}", 0, -1)]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    agents = root / "agents"
    agents.mkdir()
    for path in (project_root() / "agents").glob("*.json"):
        shutil.copy(path, agents / path.name)
    (agents / "slow.json").write_text(json.dumps(_slow_graph(seconds=60)))
    (agents / "secret.json").write_text(json.dumps(_secret_graph()))
    short = _slow_graph(seconds=4)
    short.update(id=SHORT_ID, name="Short wait")
    (agents / "short.json").write_text(json.dumps(short))
    pricing = root / "block_costs.json"
    pricing.write_text(json.dumps({CALCULATOR_ID: [{"amount": 1, "type": "run"}]}))

    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, dbname="test", user="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    dsn = f"host=127.0.0.1 port=5432 dbname=test user=postgres options=-csearch_path={schema}"

    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=echo.serve_forever, daemon=True).start()

    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AGENTFLOW_AGENTS_DIR": str(agents),
        "AGENTFLOW_DAGSTER_HOME": str(root / "home"),
        "AGENTFLOW_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AGENTFLOW_REDIS_PREFIX": prefix,
        "AGENTFLOW_REQUEST_RECLAIM_MS": "3000",
        "AGENTFLOW_DATABASE_URL": dsn,
        "AGENTFLOW_CREDENTIALS_KEYS": Fernet.generate_key().decode(),
        "AGENTFLOW_BLOCK_COSTS": str(pricing),
        "AGENTFLOW_ALLOW_PRIVATE_ADDRESSES": "1",
    }
    env.pop("DAGSTER_PG_URL", None)
    home = subprocess.run(
        [sys.executable, "-m", "agent_defs.instance"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    env["DAGSTER_HOME"] = home
    with DagsterInstance.from_config(home):
        pass  # creates the storage once, before two processes race to create it
    port = free_port()
    workspace = str(project_root() / "workspace.yaml")
    common = {"env": env, "cwd": project_root(), "start_new_session": True}
    with (root / "daemon.log").open("wb") as daemon_log, (root / "webserver.log").open("wb") as web_log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", workspace],
            stdout=daemon_log,
            stderr=subprocess.STDOUT,
            **common,
        )
        webserver = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace],
            stdout=web_log,
            stderr=subprocess.STDOUT,
            **common,
        )
    client = redis.Redis(decode_responses=True)
    seen: list[dict[str, str]] = []
    platform = Platform(
        env, Path(home), prefix, client, dsn, port, f"http://127.0.0.1:{echo.server_port}/me", seen
    )
    try:
        for user in ("alice", "bob", "carol", "erin", "frank"):
            assert platform.agentflow("credits", "grant", user, "1000").returncode == 0
        assert platform.agentflow("credits", "grant", "dave", "2").returncode == 0
        warm = f"warm-{uuid.uuid4().hex}"
        platform.enqueue(
            {"request_id": warm, "graph_id": COUNT_ID, "user_id": "alice", "inputs": {"limit": 1}}
        )
        platform.wait_for_run(warm, {DagsterRunStatus.SUCCESS}, timeout=180)
        yield platform
    finally:
        stop_process_group(daemon)
        stop_process_group(webserver)
        echo.shutdown()
        echo.server_close()
        for key in client.keys(f"{prefix}:*"):
            client.delete(key)
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_a_request_becomes_a_run_whose_outputs_are_readable_and_charged(platform: Platform) -> None:
    request_id = f"ok-{uuid.uuid4().hex}"
    platform.enqueue(
        {"request_id": request_id, "graph_id": COUNT_ID, "user_id": "alice", "inputs": {"limit": 3}}
    )
    run = platform.wait_for_run(request_id, {DagsterRunStatus.SUCCESS})
    assert run.tags["agentflow/user_id"] == "alice"
    with platform.instance() as instance:
        assert read_run_outputs(instance, run.run_id) == {"steps": [1.0, 2.0, 3.0], "final": [3]}
    balance = platform.agentflow("credits", "balance", "alice")
    assert run.run_id in balance.stdout  # each Calculator execution is a USAGE row referencing the run
    kinds = [n["kind"] for n in platform.notifications("alice")]
    deadline = time.time() + 30
    while "RUN_SUCCEEDED" not in kinds and time.time() < deadline:
        time.sleep(0.5)
        kinds = [n["kind"] for n in platform.notifications("alice")]
    assert "RUN_SUCCEEDED" in kinds


def test_malformed_requests_are_dead_lettered_and_the_good_ones_behind_them_run(platform: Platform) -> None:
    before = len(platform.dead_letters())
    platform.enqueue_raw("this is not json")
    platform.enqueue({"request_id": f"nouser-{uuid.uuid4().hex}", "graph_id": COUNT_ID})
    platform.enqueue(
        {"request_id": f"nograph-{uuid.uuid4().hex}", "graph_id": "no-such-graph", "user_id": "bob"}
    )
    bad_input = f"badinput-{uuid.uuid4().hex}"
    platform.enqueue(
        {"request_id": bad_input, "graph_id": COUNT_ID, "user_id": "bob", "inputs": {"limit": "many"}}
    )
    good = f"good-{uuid.uuid4().hex}"
    platform.enqueue({"request_id": good, "graph_id": COUNT_ID, "user_id": "bob", "inputs": {"limit": 2}})
    platform.wait_for_run(good, {DagsterRunStatus.SUCCESS})
    reasons = [d["reason"] for d in platform.dead_letters()[: len(platform.dead_letters()) - before]]
    assert len(reasons) == 4, reasons
    text = "\n".join(reasons)
    assert "user_id: Field required" in text
    assert "no-such-graph is not stored" in text
    assert "limit" in text and "many" in text
    assert platform.runs_for(bad_input) == []


def test_a_reader_killed_before_launch_loses_nothing_and_duplicates_none(platform: Platform) -> None:
    request_id = f"crash-{uuid.uuid4().hex}"
    # A consumer of the same group reads the request and dies before its run exists.
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, redis\n"
            "from agent_defs.requests.queue import RequestQueue\n"
            f"q = RequestQueue(redis.Redis(decode_responses=True), {platform.prefix!r})\n"
            "got = q.read('doomed', count=1, block_ms=30000)\n"
            "print(got[0].request.request_id, flush=True)\n"
            "os.kill(os.getpid(), 9)\n",
        ],
        stdout=subprocess.DEVNULL,
        env=platform.env,
    )
    time.sleep(1.0)  # the reader is blocking on the stream; the sensor may take it too, either is fine
    platform.enqueue(
        {"request_id": request_id, "graph_id": COUNT_ID, "user_id": "carol", "inputs": {"limit": 1}}
    )
    platform.enqueue(
        {"request_id": request_id, "graph_id": COUNT_ID, "user_id": "carol", "inputs": {"limit": 1}}
    )
    reader.wait(timeout=60)
    platform.wait_for_run(request_id, {DagsterRunStatus.SUCCESS}, timeout=120)
    time.sleep(6)  # one more listener cycle: a late re-delivery would show as a second run
    assert len(platform.runs_for(request_id)) == 1
    deadline = time.time() + 30
    while platform.redis.xlen(f"{platform.prefix}:requests") and time.time() < deadline:
        time.sleep(0.5)
    assert platform.redis.xlen(f"{platform.prefix}:requests") == 0  # both entries acknowledged


def test_cancel_by_request_id_and_by_graphql_stops_the_run_and_its_sub_agent(platform: Platform) -> None:
    from dagster_graphql import DagsterGraphQLClient

    by_request = f"slow-{uuid.uuid4().hex}"
    platform.enqueue({"request_id": by_request, "graph_id": SLOW_ID, "user_id": "erin"})
    platform.wait_for_run(by_request, {DagsterRunStatus.STARTED})
    time.sleep(2)  # the sub-agent's timer is running
    assert platform.agentflow("cancel", "--request-id", by_request).returncode == 0
    run = platform.wait_for_run(by_request, {DagsterRunStatus.CANCELED}, timeout=60)
    with platform.instance() as instance:
        assert read_run_outputs(instance, run.run_id) is None  # the child never produced `done`

    by_graphql = f"slow-{uuid.uuid4().hex}"
    platform.enqueue({"request_id": by_graphql, "graph_id": SLOW_ID, "user_id": "erin"})
    run = platform.wait_for_run(by_graphql, {DagsterRunStatus.STARTED})
    DagsterGraphQLClient("127.0.0.1", port_number=platform.port).terminate_run(run.run_id)
    platform.wait_for_run(by_graphql, {DagsterRunStatus.CANCELED}, timeout=60)


def test_the_per_user_limit_holds_while_another_users_runs_proceed(platform: Platform) -> None:
    frank = [f"frank-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    for request_id in frank:
        platform.enqueue({"request_id": request_id, "graph_id": SHORT_ID, "user_id": "frank"})
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    time.sleep(1)
    platform.enqueue({"request_id": carol, "graph_id": SHORT_ID, "user_id": "carol"})
    peak = 0
    carol_started_while_frank_waited = False
    deadline = time.time() + 120
    while time.time() < deadline:
        statuses = {r: (platform.runs_for(r) or [None])[0] for r in [*frank, carol]}
        running = [
            r for r in frank if statuses[r] is not None and statuses[r].status is DagsterRunStatus.STARTED
        ]
        waiting = [r for r in frank if statuses[r] is None or statuses[r].status is DagsterRunStatus.QUEUED]
        peak = max(peak, len(running))
        carol_run = statuses[carol]
        if (
            carol_run is not None
            and carol_run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS)
            and waiting
        ):
            carol_started_while_frank_waited = True
        if all(
            statuses[r] is not None and statuses[r].status is DagsterRunStatus.SUCCESS
            for r in [*frank, carol]
        ):
            break
        time.sleep(0.2)
    assert peak == 2  # never more than the per-user limit, and the limit was reached
    assert carol_started_while_frank_waited


def test_zero_balance_stops_the_run_as_failed_and_notifies(platform: Platform) -> None:
    request_id = f"broke-{uuid.uuid4().hex}"
    platform.enqueue(
        {"request_id": request_id, "graph_id": COUNT_ID, "user_id": "dave", "inputs": {"limit": 5}}
    )
    run = platform.wait_for_run(request_id, {DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS})
    assert run.status is DagsterRunStatus.FAILURE
    assert run.tags.get("agentflow/stopped_by") == "InsufficientBalanceError"
    balance = platform.agentflow("credits", "balance", "dave")
    assert balance.returncode == 0 and "dave: balance 0" in balance.stdout
    deadline = time.time() + 30
    while (
        "ZERO_BALANCE" not in [n["kind"] for n in platform.notifications("dave")] and time.time() < deadline
    ):
        time.sleep(0.5)
    assert "ZERO_BALANCE" in [n["kind"] for n in platform.notifications("dave")]


def test_a_planted_secret_appears_nowhere_and_never_crosses_users(platform: Platform) -> None:
    added = platform.agentflow(
        "credentials",
        "add",
        "alice",
        "http",
        "--type",
        "host_scoped",
        "--title",
        "127.0.0.1",
        stdin=json.dumps({"Authorization": f"Bearer {PLANTED}"}),
    )
    assert added.returncode == 0, added.stderr
    credential_id = added.stdout.strip().split()[-1]
    events: list[str] = []
    pubsub = platform.redis.pubsub()
    pubsub.psubscribe("execution_event/*")
    collecting = threading.Event()

    def collect() -> None:
        while not collecting.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                events.append(message["data"])

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    reference = {"id": credential_id, "provider": "http", "type": "host_scoped"}
    inputs = {"url": platform.echo_url, "credential": reference}
    mine, theirs = f"secret-{uuid.uuid4().hex}", f"stolen-{uuid.uuid4().hex}"
    platform.enqueue({"request_id": mine, "graph_id": SECRET_ID, "user_id": "alice", "inputs": inputs})
    platform.enqueue({"request_id": theirs, "graph_id": SECRET_ID, "user_id": "bob", "inputs": inputs})
    mine_run = platform.wait_for_run(mine, {DagsterRunStatus.SUCCESS})
    theirs_run = platform.wait_for_run(theirs, {DagsterRunStatus.SUCCESS})
    time.sleep(3)  # notifications and the run-level events
    collecting.set()
    collector.join(timeout=5)
    pubsub.close()

    with platform.instance() as instance:
        outputs = read_run_outputs(instance, mine_run.run_id)
        stolen = read_run_outputs(instance, theirs_run.run_id)
        # The echo server received the header: the credential was really used, then scrubbed.
        assert outputs is not None and outputs["response"][0]["headers"]["Authorization"] == "***"
        assert stolen is not None and f"no credential {credential_id!r} for user 'bob'" in stolen["error"][0]
        searched = {
            "run config": json.dumps([mine_run.run_config, theirs_run.run_config]),
            "event log": "\n".join(
                serialize_value(record)
                for run in (mine_run, theirs_run)
                for record in instance.all_logs(run.run_id)
            ),
            "outputs": json.dumps([outputs, stolen]),
        }
    logs = [
        p for p in platform.home.rglob("*") if p.is_file() and p.suffix in (".err", ".out", ".log", ".txt")
    ]
    assert logs, "compute logs were captured"
    searched["compute logs"] = "\n".join(p.read_text(errors="replace") for p in logs)
    searched["Redis events"] = "\n".join(events)
    searched["notifications"] = json.dumps(platform.notifications("alice") + platform.notifications("bob"))
    searched["credentials list"] = platform.agentflow("credentials", "list", "alice").stdout
    assert events and searched["compute logs"]
    for where, text in searched.items():
        assert PLANTED not in text, f"the planted secret leaked into the {where}"


def test_a_killed_run_worker_is_detected_and_its_run_failed(platform: Platform) -> None:
    request_id = f"doomed-{uuid.uuid4().hex}"
    platform.enqueue({"request_id": request_id, "graph_id": SLOW_ID, "user_id": "erin"})
    run = platform.wait_for_run(request_id, {DagsterRunStatus.STARTED})
    os.kill(int(run.tags["agentflow/worker_pid"]), signal.SIGKILL)
    run = platform.wait_for_run(request_id, {DagsterRunStatus.FAILURE}, timeout=90)
    with platform.instance() as instance:
        messages = " ".join(e.message or "" for e in instance.all_logs(run.run_id))
    assert "run worker" in messages.lower()


def test_a_run_over_its_maximum_runtime_is_stopped_with_the_reason(platform: Platform) -> None:
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=platform.port)
    run_id = client.submit_job_execution(
        "Slow_parent_v1", run_config={"user_id": "erin"}, tags={"dagster/max_runtime": "3"}
    )
    deadline = time.time() + 90
    status = None
    while time.time() < deadline:
        with platform.instance() as instance:
            status = instance.get_run_by_id(run_id).status
        if status in (DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE):
            break
        time.sleep(0.5)
    assert status in (DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE), status
    with platform.instance() as instance:
        messages = " ".join(e.message or "" for e in instance.all_logs(run_id))
    assert "maximum runtime" in messages.lower()
