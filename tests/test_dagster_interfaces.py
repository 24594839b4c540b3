"""Dagster's own interfaces over the compiled graphs, end to end against dagster-postgres.

The `dagster` CLI, `dagster-webserver` + `dagster-daemon` (queued runs) and the GraphQL API are all
real subprocesses with the project's instance config (agent_defs.instance) pointed at a fresh
PostgreSQL database of this test module; the graphs come from temporary agents directories
(AGENTFLOW_AGENTS_DIR), so nothing here touches the repository's own `.dagster_home` or `agents/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from support_daemon import admin_sql
from support_processes import free_port, stop_process_group

from agent_defs.engine import ReferenceEngine
from agent_defs.graph import load_graph_file
from agent_defs.instance import prepare_dagster_home
from agent_defs.jobs.results import read_run_summary

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"
WORKSPACE = ROOT / "workspace.yaml"
BIN = Path(sys.executable).parent
PG_HOST = "postgres@127.0.0.1:5432"
LOCATION = "agent_defs"
REPOSITORY = "agentflow"
CLI_TIMEOUT = 120
RUN_TIMEOUT = 120.0
GOOD_JOBS = ("Count_to_N_v1", "Running_Total_v1", "Ticket_Triage_v1")

AGENT_INPUT = "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b"
SHORT_TEXT_INPUT = "7fcd3bcb-8e1b-4e69-903d-32d3d4a92158"
TEMPLATE = "db7d8f02-2f44-4c55-ab7a-eae0941f0c30"
AGENT_OUTPUT = "363ae599-353e-4804-937e-b2ee3cef3da4"
UNKNOWN_BLOCK = "0badb10c-0000-4000-8000-000000000000"

# dagster-graphql 1.13's DagsterGraphQLClient still calls gql's `Client.execute(document,
# variable_values=...)`, which gql 4 deprecates; the warning is about their code, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using variable_values and operation_name arguments:DeprecationWarning"
)

# Every variable that selects an instance, a store or a Dagster home is set by these tests only.
_OWN_VARS = (
    "DAGSTER_HOME",
    "DAGSTER_PG_URL",
    "AGENTFLOW_DAGSTER_HOME",
    "AGENTFLOW_GRAPH_STORE",
    "AGENTFLOW_DATABASE_URL",
    "AGENTFLOW_AGENTS_DIR",
)


# --- graphs -------------------------------------------------------------------------------------------


def node(node_id: str, block_id: str, **input_default: Any) -> dict[str, Any]:
    return {"id": node_id, "block_id": block_id, "input_default": input_default, "metadata": {}}


def link(link_id: str, source: str, source_pin: str, sink: str, sink_pin: str) -> dict[str, Any]:
    return {
        "id": link_id,
        "source_id": source,
        "source_name": source_pin,
        "sink_id": sink,
        "sink_name": sink_pin,
        "is_static": False,
    }


def template_graph(
    graph_id: str, name: str, template: str, input_block: str = AGENT_INPUT, **value: Any
) -> dict:
    """input `x` -> FillTextTemplate(template, values.x) -> output `text`."""
    return {
        "id": graph_id,
        "version": 1,
        "name": name,
        "description": f"renders {template!r}",
        "nodes": [
            node("x", input_block, name="x", **value),
            node("render", TEMPLATE, format=template),
            node("text", AGENT_OUTPUT, name="text"),
        ],
        "links": [
            link("l1", "x", "result", "render", "values_#_x"),
            link("l2", "render", "output", "text", "value"),
        ],
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def agents_dir_with_examples(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for source in sorted(AGENTS.glob("*.json")):
        shutil.copy(source, path / source.name)
    return path


# --- PostgreSQL and the Dagster home ------------------------------------------------------------------


@pytest.fixture(scope="session")
def new_database() -> Iterator[Callable[[], str]]:
    """Makes fresh databases (returns a dagster-postgres URL); drops them all at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"agentflow_t_{uuid.uuid4().hex[:12]}"
        admin_sql(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql://{PG_HOST}/{name}"

    yield make
    for name in made:
        admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class DagsterEnv:
    """A Postgres-backed Dagster home and an agents directory, as environment for subprocesses."""

    pg_url: str
    agentflow_home: Path
    agents: Path
    dagster_home: Path = field(init=False)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _OWN_VARS}
        env.update(
            DAGSTER_PG_URL=self.pg_url,
            AGENTFLOW_DAGSTER_HOME=str(self.agentflow_home),
            AGENTFLOW_AGENTS_DIR=str(self.agents),
            PYTHONUNBUFFERED="1",
        )
        # DAGSTER_HOME comes from the project's own helper, run with exactly this environment.
        proc = subprocess.run(
            [sys.executable, "-m", "agent_defs.instance"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.dagster_home = Path(proc.stdout.strip())
        assert self.dagster_home == self.agentflow_home.resolve()
        assert "postgres" in (self.dagster_home / "dagster.yaml").read_text(encoding="utf-8")
        env["DAGSTER_HOME"] = str(self.dagster_home)
        self.env = env

    def run(self, *args: str | Path, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    def dagster(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.run(BIN / "dagster", *args)


@pytest.fixture(scope="module")
def cli_env(new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> DagsterEnv:
    base = tmp_path_factory.mktemp("cli")
    agents = agents_dir_with_examples(base / "agents")
    return DagsterEnv(new_database(), base / "dagster_home", agents)


@pytest.fixture
def instance(cli_env: DagsterEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """The same instance, opened in this process the way the project opens it."""
    for var in _OWN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAGSTER_PG_URL", cli_env.pg_url)
    monkeypatch.setenv("AGENTFLOW_DAGSTER_HOME", str(cli_env.agentflow_home))
    monkeypatch.setenv("DAGSTER_HOME", "")  # so that monkeypatch restores it after prepare_dagster_home
    assert prepare_dagster_home() == cli_env.dagster_home
    with DagsterInstance.get() as opened:
        yield opened


# --- 1. dagster job execute on Postgres ---------------------------------------------------------------


def test_job_execute_on_postgres_records_the_graph_outputs(
    cli_env: DagsterEnv, instance: DagsterInstance, tmp_path: Path
) -> None:
    before = {r.run_id for r in instance.get_runs()}
    config = tmp_path / "config.yaml"
    config.write_text("inputs: {limit: 3}\n", encoding="utf-8")
    proc = cli_env.dagster("job", "execute", "-m", "agent_defs", "-j", "Count_to_N_v1", "-c", config)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    latest = instance.get_runs(limit=1)[0]
    assert {r.run_id for r in instance.get_runs()} - before == {latest.run_id}, "exactly one new run"
    summary = read_run_summary(instance, latest.run_id)
    assert summary["job"] == "Count_to_N_v1"
    assert summary["dagster_status"] == "SUCCESS"
    assert summary["outputs"] == {"steps": [1, 2, 3], "final": [3]}  # 1.0 == 1: floats are fine
    assert summary["node_error_count"] == 0
    assert latest.tags["agentflow/graph_version"] == "1"
    assert latest.run_config["inputs"] == {"limit": 3}


# --- 2. run config errors -----------------------------------------------------------------------------


def test_job_execute_refuses_a_wrongly_typed_input(cli_env: DagsterEnv, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('inputs: {limit: "abc"}\n', encoding="utf-8")
    proc = cli_env.dagster("job", "execute", "-m", "agent_defs", "-j", "Count_to_N_v1", "-c", config)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "limit" in output, output
    assert "abc" in output, output


def test_job_execute_runs_without_an_input_as_autogpt_and_names_an_unknown_one(
    cli_env: DagsterEnv, instance: DagsterInstance, tmp_path: Path
) -> None:
    """An input without a value runs as on the reference engine and in AutoGPT (its input node yields
    nothing, so nothing behind it runs: issue 12, rule 8b); a misspelt input is refused by name."""
    agents = agents_dir_with_examples(tmp_path / "agents")
    greeting = template_graph(
        "5e1ec7ed-0000-4000-8000-00000000a001", "Needs Person", "hello {{x}}", SHORT_TEXT_INPUT
    )
    greeting["nodes"][0]["input_default"]["name"] = "person_name"  # no "value": an input without a default
    write_json(agents / "needs_person.json", greeting)
    env = DagsterEnv(cli_env.pg_url, cli_env.agentflow_home, agents)
    before = {r.run_id for r in instance.get_runs()}

    config = tmp_path / "config.yaml"
    config.write_text("inputs: {persn_name: Ada}\n", encoding="utf-8")
    misspelt = env.dagster("job", "execute", "-m", "agent_defs", "-j", "Needs_Person_v1", "-c", config)
    output = misspelt.stdout + misspelt.stderr
    assert misspelt.returncode != 0, output
    assert "persn_name" in output, output
    assert {r.run_id for r in instance.get_runs()} == before  # the refused config made no run

    empty = env.dagster("job", "execute", "-m", "agent_defs", "-j", "Needs_Person_v1")
    assert empty.returncode == 0, empty.stdout + empty.stderr
    (empty_run,) = {r.run_id for r in instance.get_runs()} - before
    summary = read_run_summary(instance, empty_run)
    assert (summary["job"], summary["dagster_status"]) == ("Needs_Person_v1", "SUCCESS")
    assert summary["outputs"] == {}

    config.write_text("inputs: {person_name: Ada}\n", encoding="utf-8")
    ok = env.dagster("job", "execute", "-m", "agent_defs", "-j", "Needs_Person_v1", "-c", config)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (new_run,) = {r.run_id for r in instance.get_runs()} - before - {empty_run}
    summary = read_run_summary(instance, new_run)
    assert (summary["job"], summary["dagster_status"]) == ("Needs_Person_v1", "SUCCESS")
    assert summary["outputs"] == {"text": ["hello Ada"]}


# --- 3. a bad stored graph among good ones ------------------------------------------------------------


def test_job_list_survives_bad_graphs_and_reports_them(cli_env: DagsterEnv, tmp_path: Path) -> None:
    agents = agents_dir_with_examples(tmp_path / "agents")
    broken = template_graph("0badc0de-0000-4000-8000-00000000b001", "Broken Mystery", "{{x}}", value="a")
    broken["nodes"].append(node("mystery", UNKNOWN_BLOCK))
    broken["links"].append(link("l3", "render", "output", "mystery", "anything"))
    write_json(agents / "broken.json", broken)
    (agents / "not_json.json").write_text("{ this is not JSON", encoding="utf-8")
    env = DagsterEnv(cli_env.pg_url, cli_env.agentflow_home, agents)

    proc = env.dagster("job", "list", "-m", "agent_defs")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    listed = [
        line.removeprefix("Job: ").strip() for line in proc.stdout.splitlines() if line.startswith("Job: ")
    ]
    assert sorted(listed) == sorted(GOOD_JOBS), output
    # The bad graph's problem, with graph, node and reason, and the unreadable file, are reported.
    problem = next((line for line in output.splitlines() if "Broken Mystery" in line), "")
    assert "node mystery" in problem, output
    assert UNKNOWN_BLOCK in problem and "unknown block" in problem, output
    assert any("not_json.json" in line and "JSON" in line for line in output.splitlines()), output
    assert "Traceback" not in output, output


# --- 4 and 5. webserver + daemon + GraphQL -------------------------------------------------------------


class Servers:
    """dagster-webserver and dagster-daemon on one Postgres-backed instance."""

    def __init__(self, env: DagsterEnv, logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.webserver: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def _spawn(self, name: str, *args: str | Path) -> subprocess.Popen[bytes]:
        self._starts += 1
        log = open(self.logs / f"{name}.{self._starts}.log", "wb")  # noqa: SIM115 - closed below
        try:
            return subprocess.Popen(
                [str(a) for a in args],
                env=self.env.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor

    def start_webserver(self) -> None:
        self.webserver = self._spawn(
            "webserver", BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(self.port), "-w", WORKSPACE
        )

    def start_daemon(self) -> None:
        assert self.daemon is None or self.daemon.poll() is not None
        self.daemon = self._spawn("daemon", BIN / "dagster-daemon", "run", "-w", WORKSPACE)

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            stop_process_group(self.daemon)

    def stop_all(self) -> None:
        for proc in (self.daemon, self.webserver):
            if proc is not None:
                stop_process_group(proc)

    def log_tail(self) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(self.url, json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]

    def wait_until_loaded(self, timeout: float = 120.0) -> None:
        """Until the webserver answers GraphQL and the code location is loaded without an error."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.webserver is not None and self.webserver.poll() is None, self.log_tail()
            try:
                last = self.location_entry()
            except httpx.HTTPError as exc:
                last = exc
            else:
                if last["loadStatus"] == "LOADED":
                    assert last["locationOrLoadError"]["__typename"] == "RepositoryLocation", last
                    return
            time.sleep(0.5)
        raise AssertionError(f"code location not loaded in {timeout} s: {last}\n{self.log_tail()}")

    def location_entry(self) -> dict[str, Any]:
        data = self.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                   name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        (entry,) = [e for e in data["workspaceOrError"]["locationEntries"] if e["name"] == LOCATION]
        return entry

    def reload_location(self) -> None:
        data = self.graphql(
            """mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
                 __typename
                 ... on WorkspaceLocationEntry { name loadStatus locationOrLoadError {
                       __typename ... on PythonError { message } } }
                 ... on PythonError { message } } }""",
            {"name": LOCATION},
        )
        result = data["reloadRepositoryLocation"]
        assert result["__typename"] == "WorkspaceLocationEntry", result
        assert (result["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation", result

    def job_names(self) -> set[str]:
        data = self.graphql(
            """query Repo($selector: RepositorySelector!) { repositoryOrError(repositorySelector: $selector) {
                 __typename ... on Repository { jobs { name } } ... on PythonError { message } } }""",
            {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
        )
        repo = data["repositoryOrError"]
        assert repo["__typename"] == "Repository", repo
        return {job["name"] for job in repo["jobs"]}

    def run_outputs(self, run_id: str) -> dict[str, list[Any]]:
        """The graph outputs, as the summary step's `graph_outputs` metadata in the run's event log."""
        query = """query Logs($runId: ID!, $cursor: String) {
          logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
            __typename
            ... on EventConnection { cursor hasMore events { __typename
              ... on ExecutionStepOutputEvent { stepKey outputName metadataEntries { __typename label
                ... on JsonMetadataEntry { jsonString } ... on TextMetadataEntry { text } } } } }
            ... on PythonError { message } } }"""
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            logs = self.graphql(query, {"runId": run_id, "cursor": cursor})["logsForRun"]
            assert logs["__typename"] == "EventConnection", logs
            found.extend(
                entry
                for event in logs["events"]
                if event["__typename"] == "ExecutionStepOutputEvent"
                and event["stepKey"] == "agentflow_run_summary"
                for entry in event["metadataEntries"]
                if entry["label"] == "graph_outputs"
            )
            cursor = logs["cursor"]
            if not logs["hasMore"]:
                break
        assert len(found) == 1, found
        (entry,) = found
        return json.loads(entry.get("jsonString") or entry["text"])


def wait_for_status(client: DagsterGraphQLClient, run_id: str, servers: Servers) -> DagsterRunStatus:
    deadline = time.monotonic() + RUN_TIMEOUT
    status = client.get_run_status(run_id)
    while status not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {status} after {RUN_TIMEOUT} s\n{servers.log_tail()}")
        time.sleep(0.5)
        status = client.get_run_status(run_id)
    return status


@pytest.fixture(scope="module")
def servers(new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("servers")
    agents = agents_dir_with_examples(base / "agents")
    logs = base / "logs"
    logs.mkdir()
    running = Servers(DagsterEnv(new_database(), base / "dagster_home", agents), logs)
    try:
        running.start_webserver()
        running.start_daemon()
        running.wait_until_loaded()
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def client(servers: Servers) -> DagsterGraphQLClient:
    """One client per test (the client is not thread-safe; tests here use one thread)."""
    return DagsterGraphQLClient("127.0.0.1", port_number=servers.port)


def test_graphql_run_through_the_daemon_and_outputs_in_the_event_log(
    servers: Servers, client: DagsterGraphQLClient
) -> None:
    run_id = client.submit_job_execution("Running_Total_v1", run_config={"inputs": {"numbers": [1, 2, 3]}})
    status = wait_for_status(client, run_id, servers)
    assert status == DagsterRunStatus.SUCCESS, servers.log_tail()
    outputs = servers.run_outputs(run_id)
    assert outputs["totals"] == [1, 3, 6]
    # Every output as the reference engine gives it (the Calculator yields floats: "total 1.0").
    reference = ReferenceEngine().run_sync(
        load_graph_file(AGENTS / "running_total.json"), {"numbers": [1, 2, 3]}
    )
    assert outputs == json.loads(json.dumps(reference.outputs))


def test_graphql_shows_the_ops_and_their_node_tags(servers: Servers) -> None:
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "pipelineName": "Running_Total_v1",
    }
    data = servers.graphql(
        """query Job($selector: PipelineSelector!, $config: RunConfigData) {
             pipelineOrError(params: $selector) {
               __typename
               ... on Pipeline { name tags { key value } solidHandles { handleID solid { name } } }
               ... on PythonError { message } }
             executionPlanOrError(pipeline: $selector, mode: "default", runConfigData: $config) {
               __typename
               ... on ExecutionPlan { steps { key solidHandleID metadata { key value } } }
               ... on PythonError { message } } }""",
        {"selector": selector, "config": {"inputs": {"numbers": [1, 2, 3]}}},
    )
    job = data["pipelineOrError"]
    assert job["__typename"] == "Pipeline", job
    ops = {handle["solid"]["name"] for handle in job["solidHandles"]}
    assert {"AgentInput_Numbers", "StepThroughItems_Each_number", "agentflow_run_summary"} <= ops, sorted(ops)
    job_tags = {t["key"]: t["value"] for t in job["tags"]}
    assert job_tags["agentflow/graph_id"] == "4f6e2a90-8d3b-4b7a-a1c5-6e2f9d8b7c02"
    assert job_tags["agentflow/graph_version"] == "1"

    # The op tags as Dagster resolves them for each step (definition and invocation tags merged).
    plan = data["executionPlanOrError"]
    assert plan["__typename"] == "ExecutionPlan", plan
    steps = {step["key"]: {m["key"]: m["value"] for m in step["metadata"]} for step in plan["steps"]}
    assert set(steps) == ops
    assert steps["StepThroughItems_Each_number"]["agentflow/node_id"] == "each"
    assert (
        steps["StepThroughItems_Each_number"]["agentflow/block_id"] == "f66a3543-28d3-4ab5-8945-9b336371e2ce"
    )
    assert steps["AgentInput_Numbers"]["agentflow/node_id"] == "numbers"


def test_a_queued_run_keeps_the_version_it_was_submitted_with(
    servers: Servers, client: DagsterGraphQLClient, tmp_path: Path
) -> None:
    graph_id = "9e5510e0-0000-4000-8000-00000000c001"
    servers.stop_daemon()
    try:
        write_json(
            servers.env.agents / "pinned.json",
            template_graph(graph_id, "Pinned Text", "v1: {{x}}", value="d"),
        )
        servers.reload_location()
        assert "Pinned_Text_v1" in servers.job_names()

        queued = client.submit_job_execution("Pinned_Text_v1", run_config={"inputs": {"x": "alpha"}})
        assert client.get_run_status(queued) == DagsterRunStatus.QUEUED  # no daemon: nothing launches it

        # An edit of the same graph id: the store keeps v1 and stores this as v2.
        edited = write_json(
            tmp_path / "edited.json", template_graph(graph_id, "Pinned Text", "v2: {{x}}", value="d")
        )
        imported = servers.env.run(BIN / "agentflow", "import", edited)
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert f"{graph_id} v2" in imported.stdout, imported.stdout
        servers.reload_location()
        assert {"Pinned_Text_v1", "Pinned_Text_v2"} <= servers.job_names()
        assert client.get_run_status(queued) == DagsterRunStatus.QUEUED
    finally:
        servers.start_daemon()

    assert wait_for_status(client, queued, servers) == DagsterRunStatus.SUCCESS, servers.log_tail()
    assert servers.run_outputs(queued) == {"text": ["v1: alpha"]}

    second = client.submit_job_execution("Pinned_Text_v2", run_config={"inputs": {"x": "beta"}})
    assert wait_for_status(client, second, servers) == DagsterRunStatus.SUCCESS, servers.log_tail()
    assert servers.run_outputs(second) == {"text": ["v2: beta"]}


def test_graphql_refuses_a_wrongly_typed_input_without_creating_a_run(
    servers: Servers, client: DagsterGraphQLClient
) -> None:
    with pytest.raises(DagsterGraphQLClientError) as raised:
        client.submit_job_execution("Count_to_N_v1", run_config={"inputs": {"limit": "abc"}})
    kind, errors = raised.value.args
    assert kind in ("RunConfigValidationInvalid", "PipelineConfigValidationInvalid"), raised.value.args
    assert any("limit" in error["message"] for error in errors), errors
    runs = servers.graphql(
        """{ runsOrError(filter: {pipelineName: "Count_to_N_v1"}) { __typename ... on Runs { results { runId } } } }"""
    )["runsOrError"]
    assert runs == {"__typename": "Runs", "results": []}
