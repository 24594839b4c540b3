"""A server that echoes parts of a credential back (the token without "Bearer ", a JSON field of the
credential, the base64 of a Basic login, URL-encoded and JSON-escaped forms) leaks none of them: not
in the run's outputs, the Dagster event log, the live events on Redis, the JSON node logs or what
`agentflow run` prints. The run goes through the real CLI, credentials store (PostgreSQL) and Redis."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from cryptography.fernet import Fernet
from dagster import DagsterInstance
from dagster._serdes import serialize_value
from support_servers import RecordingServer, ScriptedLLMServer, StandInHandler

from agent_defs.engine import ReferenceEngine, RunOptions
from agent_defs.graph.builder import GraphBuilder
from agent_defs.paths import project_root
from bench.graphs import export
from blocks.library.http import SendAuthenticatedWebRequestBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.llm import AITextGeneratorBlock
from blocks.library.text import MatchTextPatternBlock

BIN = Path(sys.executable).parent
TOKEN = f"tok/{uuid.uuid4().hex[:16]}+Zq="  # "/", "+" and "=" change when URL-encoded
API_KEY = f"key-{uuid.uuid4().hex[:16]}"
LOGIN = "robot-user"
PASSWORD = f'pa"ss\\{uuid.uuid4().hex[:12]}'  # a quote and a backslash change when JSON-escaped


class _EchoCredentialParts(StandInHandler):
    """Answers, as text, the parts of the credential headers it was sent, as a careless API would."""

    def do_GET(self) -> None:
        headers = self.header_dict()
        self.server.owner.record({"headers": headers})  # type: ignore[attr-defined]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        lines = [f"echo (scheme={scheme}"]  # "(": not a valid regex, see _graph
        if scheme == "Bearer":
            lines += [
                f"token={token}",
                f"token_in_url=https://example.com/cb?token={quote(token, safe='')}",
                f"token_in_json={json.dumps({'token': token})}",
                f"api_key={headers.get('x-api-key', '')}",
            ]
        elif scheme == "Basic":
            login, _, password = base64.b64decode(token).decode().partition(":")
            lines += [
                f"basic={token}",
                f"login_pair={login}:{password}",
                f"password={password}",
                f"password_in_json={json.dumps({'password': password})}",
            ]
        self.send_data(200, "\n".join(lines).encode(), "text/plain")


@pytest.fixture(scope="module")
def echo() -> Iterator[RecordingServer]:
    server = RecordingServer(_EchoCredentialParts).start()
    yield server
    server.stop()


def _graph() -> dict[str, Any]:
    """Two authenticated calls; each response goes to an output and, to put it into an error message
    (logs, events), to a regex match that fails quoting it as an invalid pattern."""
    b = GraphBuilder("Echoed credential parts", graph_id=f"redact-{uuid.uuid4().hex[:8]}")
    url = b.node(AgentInputBlock, node_id="url", name="url")
    for name in ("bearer", "basic"):
        cred = b.node(AgentInputBlock, node_id=f"{name}_cred", name=f"{name}_credential")
        call = b.node(SendAuthenticatedWebRequestBlock, node_id=f"{name}_call", method="GET")
        out = b.node(AgentOutputBlock, node_id=f"{name}_out", name=name)
        match = b.node(MatchTextPatternBlock, node_id=f"{name}_match", text="x", data="x")
        failed = b.node(AgentOutputBlock, node_id=f"{name}_failed", name=f"{name}_match_error")
        b.link(url, "result", call, "url").link(cred, "result", call, "credentials")
        b.link(call, "response", out, "value").link(call, "error", out, "value")
        b.link(call, "response", match, "match").link(match, "error", failed, "value")
    return export(b.build())


def _forms() -> dict[str, str]:
    pair = f"{LOGIN}:{PASSWORD}"
    return {
        "bare token": TOKEN,
        "URL-encoded token": quote(TOKEN, safe=""),
        "JSON field (api key)": API_KEY,
        "base64 login": base64.b64encode(pair.encode()).decode(),
        "login pair": pair,
        "password": PASSWORD,
        "JSON-escaped password": json.dumps(PASSWORD)[1:-1],
    }


def test_echoed_parts_of_a_credential_appear_nowhere(
    echo: RecordingServer, pg_dsn: str, tmp_path: Path
) -> None:
    prefix = f"redact{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTFLOW_", "DAGSTER_"))} | {
        "AGENTFLOW_DATABASE_URL": pg_dsn,
        "AGENTFLOW_CREDENTIALS_KEYS": Fernet.generate_key().decode(),
        "AGENTFLOW_DAGSTER_HOME": str(tmp_path / "home"),
        "AGENTFLOW_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AGENTFLOW_REDIS_PREFIX": prefix,
        "AGENTFLOW_ALLOW_PRIVATE_ADDRESSES": "1",
    }

    def agentflow(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "agentflow"), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=project_root(),
        )

    references = {}
    for name, headers in (
        ("bearer", {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY}),
        ("basic", {"Authorization": "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()}),
    ):
        added = agentflow(
            "credentials", "add", "alice", "http", "--type", "host_scoped", "--title", "127.0.0.1",
            stdin=json.dumps(headers),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        references[f"{name}_credential"] = {"id": added.stdout.strip().split()[-1], "provider": "http"}
    graph_file = tmp_path / "graph.json"
    graph_file.write_text(json.dumps(_graph()))

    client = redis.Redis(decode_responses=True)
    pubsub = client.pubsub()
    pubsub.psubscribe("execution_event/alice/*")
    events: list[str] = []
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                events.append(message["data"])

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        inputs = {"url": f"{echo.url}/me", **references}
        run = agentflow(
            "run", str(graph_file), "--engine", "dagster", "--json", "--user", "alice",
            "--inputs-json", json.dumps(inputs),
        )  # fmt: skip
    finally:
        done.set()
        collector.join(timeout=5)
        pubsub.close()
        for key in client.keys(f"{prefix}:*"):
            client.delete(key)
    summary = json.loads(run.stdout)
    # The credentials were really sent, and the server echoed them: what comes back is masked.
    sent = {r["headers"]["authorization"].split()[0] for r in echo.requests}
    assert sent == {"Bearer", "Basic"}
    bearer, basic = summary["outputs"]["bearer"][0], summary["outputs"]["basic"][0]
    assert "token=***" in bearer and "api_key=***" in bearer and "basic=***" in basic, summary
    assert "password=***" in basic and '{"password": "***"}' in basic, summary
    errors = summary["outputs"]["bearer_match_error"] + summary["outputs"]["basic_match_error"]
    assert len(errors) == 2 and all("invalid regex pattern" in e for e in errors), errors

    home = Path(
        subprocess.run(
            [sys.executable, "-m", "agent_defs.instance"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    with DagsterInstance.from_config(str(home)) as instance:
        event_log = "\n".join(serialize_value(record) for record in instance.all_logs(summary["run_id"]))
    files = [p for p in home.rglob("*") if p.is_file() and p.suffix in (".err", ".out", ".log", ".txt")]
    json_logs = run.stderr + "".join(p.read_text(errors="replace") for p in files)
    searched = {
        "agentflow run output": run.stdout,
        "JSON logs (stderr and compute logs)": json_logs,
        "Dagster event log": event_log,
        "live events": "\n".join(events),
    }
    assert "invalid regex pattern" in event_log, "the errors were really recorded"
    assert '"logger": "agentflow.node"' in json_logs
    assert any("invalid regex pattern" in e for e in events)
    for where, text in searched.items():
        for form, secret in _forms().items():
            assert secret not in text, f"the {form} leaked into the {where}"


def test_an_operator_key_from_the_environment_echoed_back_is_redacted(
    llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node without a credential reference uses the operator's key (AGENTFLOW_LLM_API_KEY): a
    server that echoes it, bare, gets it masked as a resolved credential would be."""
    operator_key = f"sk-operator-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AGENTFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENTFLOW_LLM_API_KEY", operator_key)
    monkeypatch.setenv("AGENTFLOW_ALLOW_PRIVATE_ADDRESSES", "1")
    llm_server.reset()
    llm_server.script("echo my key", {"content": f"you sent key {operator_key}"})
    b = GraphBuilder("Operator key echoed")
    ask = b.node(AITextGeneratorBlock, node_id="ask", prompt="echo my key")
    out = b.node(AgentOutputBlock, node_id="out", name="answer")
    b.link(ask, "response", out, "value")
    result = ReferenceEngine().run_sync(b.build(), {}, RunOptions(settings={"allow_private_addresses": True}))
    assert llm_server.requests[0]["headers"]["authorization"] == f"Bearer {operator_key}"
    assert result.outputs["answer"] == ["you sent key ***"]
