"""ExecuteCodeBlock through the real e2b-code-interpreter SDK, against the local E2B stand-in
(tests/support_e2b.py), and the Domain Name Finder export's code node on the reference engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support_blocks import credential as make_credential
from support_blocks import run_block
from support_e2b import (
    DOMAIN_FINDER_NAMES,
    E2B_TEST_KEY,
    E2BStyleServer,
    domain_finder_llm_rules,
    script_domain_finder,
)
from support_servers import ScriptedLLMServer

from agent_defs.engine import RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from agent_defs.paths import shared_dir
from blocks import Credentials
from blocks.library.code_executor import ExecuteCodeBlock

CRED_ID = "e2b0e2b0-0000-4000-8000-0000000000aa"
DOMAIN_FINDER = shared_dir() / "autogpt-agents" / "agent_b6f6f0d3-49f4-4e3b-8155-ffe9141b32c0.json"
CODE_NODE = "1177aa11-112e-4644-996c-cb9bab6e03ba"


@pytest.fixture
def e2b(e2b_server: E2BStyleServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[E2BStyleServer]:
    e2b_server.reset()
    monkeypatch.setenv("AGENTFLOW_E2B_API_URL", e2b_server.url)
    monkeypatch.setenv("AGENTFLOW_E2B_SANDBOX_URL", e2b_server.url)
    monkeypatch.delenv("AGENTFLOW_E2B_API_KEY", raising=False)
    yield e2b_server
    e2b_server.reset()


def credential(secret: str = E2B_TEST_KEY) -> dict[str, Credentials]:
    return make_credential("e2b", secret, cred_id=CRED_ID, title="E2B")


def run(
    data: dict[str, Any],
    credentials: dict[str, Credentials] | None = None,
    allow_private: bool = True,
) -> list[tuple[str, Any]]:
    """ExecuteCodeBlock's outputs; with no credentials given, the server's key (`{}`: none at all)."""
    return run_block(
        ExecuteCodeBlock(), data, credential() if credentials is None else credentials, allow_private
    )


def test_runs_code_and_reports_every_output(e2b: E2BStyleServer) -> None:
    code = "import math\nprint('Hello World')\nmath.pi"
    e2b.program(
        code,
        {
            "stdout": ["Hello ", "World\n"],
            "results": [
                {"text": "<Figure>", "png": "iVBORw0KGgo=", "is_main_result": False},
                {"text": "3.141592653589793", "is_main_result": True},
            ],
        },
    )
    outputs = run({"code": code, "language": "python", "setup_commands": [], "timeout": 120})
    assert outputs == [
        ("main_result", {"text": "3.141592653589793"}),
        (
            "results",
            [
                {"text": "<Figure>", "png": "iVBORw0KGgo=", "is_main_result": False},
                {"text": "3.141592653589793", "is_main_result": True},
            ],
        ),
        ("response", "3.141592653589793"),
        ("stdout_logs", "Hello World\n"),
    ]
    create, execute, kill = e2b.requests
    assert (create["method"], create["path"]) == ("POST", "/v2/sandboxes")
    assert create["headers"]["x-api-key"] == E2B_TEST_KEY
    body = json.loads(create["body"])
    assert body["templateID"] == "code-interpreter-v1" and body["timeout"] == 120
    assert (execute["method"], execute["path"]) == ("POST", "/execute")
    assert execute["headers"]["e2b-sandbox-port"] == "49999"
    assert json.loads(execute["body"])["code"] == code
    assert json.loads(execute["body"])["language"] == "python"
    # dispose_sandbox defaults to true: the sandbox is killed once the code ran.
    assert (kill["method"], kill["path"]) == ("DELETE", f"/sandboxes/{e2b.created[0]}")
    assert e2b.killed == e2b.created and not e2b.sandboxes


def test_stderr_without_an_exception_is_reported_on_stderr_logs(e2b: E2BStyleServer) -> None:
    e2b.program("warn()", {"stdout": ["done\n"], "stderr": ["DeprecationWarning: old\n"]})
    outputs = run({"code": "warn()"})
    assert outputs == [
        ("results", []),
        ("stdout_logs", "done\n"),
        ("stderr_logs", "DeprecationWarning: old\n"),
    ]


def test_a_code_error_goes_to_error_and_kills_the_sandbox(e2b: E2BStyleServer) -> None:
    e2b.program(
        "1/0",
        {
            "stdout": ["before\n"],
            "error": {
                "name": "ZeroDivisionError",
                "value": "division by zero",
                "traceback": "Traceback (most recent call last):\n  Cell In[1], line 1\nZeroDivisionError: division by zero",
            },
        },
    )
    outputs = run({"code": "1/0", "dispose_sandbox": False})
    assert [pin for pin, _ in outputs] == ["error"]
    error = outputs[0][1]
    assert "ZeroDivisionError: division by zero" in error and "Cell In[1], line 1" in error
    # Like AutoGPT, a sandbox whose code raised is killed even when it was to be kept.
    assert e2b.killed == e2b.created and len(e2b.created) == 1


def test_unscripted_code_is_an_error_not_a_silent_success(e2b: E2BStyleServer) -> None:
    outputs = run({"code": "print('not scripted')"})
    assert outputs[0][0] == "error" and "UnscriptedCode" in outputs[0][1]


def test_keeping_the_sandbox_and_choosing_template_and_language(e2b: E2BStyleServer) -> None:
    e2b.program("console.log(1)", {"stdout": ["1\n"]})
    outputs = run(
        {"code": "console.log(1)", "language": "js", "template_id": "my-node-tpl", "dispose_sandbox": False}
    )
    assert outputs == [("results", []), ("stdout_logs", "1\n")]
    assert json.loads(e2b.requests[0]["body"])["templateID"] == "my-node-tpl"
    assert json.loads(e2b.requests[1]["body"])["language"] == "js"
    assert e2b.killed == [] and list(e2b.sandboxes) == e2b.created


def test_setup_commands_run_in_the_sandbox_before_the_code(e2b: E2BStyleServer) -> None:
    e2b.commands["pip install cowsay"] = ("Successfully installed cowsay-6.1\n", "", 0)
    e2b.program("import cowsay", {"results": []})
    outputs = run({"code": "import cowsay", "setup_commands": ["pip install cowsay"]})
    assert outputs == [("results", [])]
    assert e2b.commands_run == ["pip install cowsay"]
    start = next(r for r in e2b.requests if r["path"] == "/process.Process/Start")
    assert start["headers"]["e2b-sandbox-port"] == "49983"
    assert start["headers"]["content-type"] == "application/connect+json"
    order = [r["path"] for r in e2b.requests]
    assert order.index("/process.Process/Start") < order.index("/execute")


def test_a_failing_setup_command_stops_before_the_code(e2b: E2BStyleServer) -> None:
    e2b.program("print(1)", {"stdout": ["1\n"]})
    outputs = run({"code": "print(1)", "setup_commands": ["apt-get install nothing-such"]})
    assert [pin for pin, _ in outputs] == ["error"]
    assert "apt-get install nothing-such" in outputs[0][1] and "127" in outputs[0][1]
    assert e2b.executions == 0 and e2b.killed == e2b.created


def test_a_refused_api_key_is_a_clear_error_without_the_key(e2b: E2BStyleServer) -> None:
    wrong = "e2b_WRONG-5150-key-do-not-leak"
    outputs = run({"code": "print(1)"}, credentials=credential(wrong))
    assert [pin for pin, _ in outputs] == ["error"]
    error = outputs[0][1]
    assert "could not create an E2B sandbox" in error and "Unauthorized" in error
    assert wrong not in error and E2B_TEST_KEY not in error
    assert e2b.created == []
    assert e2b.requests[0]["headers"]["x-api-key"] == wrong


def test_no_key_anywhere_fails_at_once_without_a_request(e2b: E2BStyleServer) -> None:
    outputs = run({"code": "print(1)"}, credentials={})
    assert outputs[0][0] == "error" and "AGENTFLOW_E2B_API_KEY" in outputs[0][1]
    assert e2b.requests == []


def test_the_key_and_endpoints_from_the_environment(
    e2b: E2BStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_E2B_API_KEY", E2B_TEST_KEY)
    e2b.program("x = 1", {})
    assert run({"code": "x = 1"}, credentials={}) == [("results", [])]
    assert e2b.requests[0]["headers"]["x-api-key"] == E2B_TEST_KEY


def test_a_json_credential_names_its_own_endpoints(
    e2b: E2BStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_E2B_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AGENTFLOW_E2B_SANDBOX_URL", "http://127.0.0.1:9")
    e2b.program("x = 2", {})
    secret = json.dumps({"api_key": E2B_TEST_KEY, "api_url": e2b.url, "sandbox_url": e2b.url})
    assert run({"code": "x = 2"}, credentials=credential(secret)) == [("results", [])]
    assert len(e2b.created) == 1


def test_loopback_endpoints_are_refused_unless_allowed(e2b: E2BStyleServer) -> None:
    outputs = run({"code": "print(1)"}, allow_private=False)
    assert outputs[0][0] == "error"
    assert "127.0.0.1" in outputs[0][1] and "allow_private_addresses" in outputs[0][1]
    assert e2b.requests == []


def test_the_domain_name_finder_checks_the_proposed_names_in_the_sandbox(
    e2b: E2BStyleServer, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_llm_blocks import API_KEY, EngineWithCredentials, Resolver, with_credential_references

    llm_server.reset()
    for match, replies in domain_finder_llm_rules():
        llm_server.script(match, *replies)
    script_domain_finder(e2b)
    monkeypatch.setenv("AGENTFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENTFLOW_LLM_API_KEY", API_KEY)
    graph = with_credential_references(load_graph_file(Path(DOMAIN_FINDER)))
    result = EngineWithCredentials(credentials=Resolver()).run_sync(
        graph, {"Product Pitch": "An AI barista app"}, RunOptions(settings={"allow_private_addresses": True})
    )
    llm_server.reset()
    assert result.status is RunStatus.COMPLETED, result.error
    (code_run,) = [e for e in result.executions if e.node_id == CODE_NODE]
    assert code_run.error is None
    outputs = dict(code_run.outputs)
    stdout = outputs["stdout_logs"]
    # The names the LLM proposed reached the sandbox inside the rendered checker script.
    assert "I checked 4 domains for you." in stdout
    assert "<available>\nbrewbot.com\nbeanly.com\nroastwise.com\n</available>" in stdout
    assert "<unavailable>\ngoogle.com\n</unavailable>" in stdout and "cafe-ai.net" in stdout
    (execute,) = [r for r in e2b.requests if r["path"] == "/execute"]
    code = json.loads(execute["body"])["code"]
    assert ",".join(DOMAIN_FINDER_NAMES) in code and code.startswith("#!/usr/bin/env python3")
    assert e2b.killed == e2b.created and len(e2b.created) == 1  # dispose_sandbox: true in the export
