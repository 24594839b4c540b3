"""Structured logs: every line parses as JSON, carries the ids, and never shows a planted secret."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dagster import DagsterInstance

from agent_defs.credentials.redaction import Redactor
from agent_defs.engine import ReferenceEngine, RunOptions
from agent_defs.graph.builder import GraphBuilder
from agent_defs.jobs.compiler import compile_graph
from agent_defs.logs import NODE_LOGGER, configure_json_logging, log_context, redactor
from blocks import REGISTRY, Block, BlockInput, BlockOutput, BlockRegistry, CredentialsField, RunContext
from blocks.library.io import AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.xml_parser import XMLParserBlock

IDS = ("user_id", "run_id", "graph_id", "node_id", "node_exec_id", "block_id")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines into a buffer, restored afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_json_logging(logging.DEBUG, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_lines_are_json_with_the_standard_fields_and_ids_from_extra(json_log: io.StringIO) -> None:
    log = logging.getLogger("agentflow.test")
    ids = {key: f"{key}-1" for key in IDS}
    log.info("node %s done", "n1", extra=ids)
    log.warning('quotes " and\nnewlines stay one line')
    lines = json_log.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "node n1 done"
    assert first["level"] == "INFO" and first["logger"] == "agentflow.test"
    assert first["ts"].endswith("+00:00")
    assert {key: first[key] for key in IDS} == ids
    assert second["message"] == 'quotes " and\nnewlines stay one line'
    assert not any(key in second for key in IDS)  # unknown ids are left out, not null


def test_ids_bound_with_log_context_reach_every_line_and_extra_wins(json_log: io.StringIO) -> None:
    log = logging.getLogger("agentflow.test")
    with log_context(user_id="alice", run_id="run-7", graph_id="g-1"):
        log.info("outer")
        with log_context(node_id="n-2", block_id="b-3"):
            log.info("inner", extra={"node_exec_id": "run-7/op:1", "node_id": "n-override"})
    log.info("after")
    outer, inner, after = _lines(json_log.getvalue())
    assert (outer["user_id"], outer["run_id"], outer["graph_id"]) == ("alice", "run-7", "g-1")
    assert "node_id" not in outer
    assert inner["node_id"] == "n-override" and inner["block_id"] == "b-3"
    assert inner["node_exec_id"] == "run-7/op:1" and inner["user_id"] == "alice"
    assert "run_id" not in after


def test_a_planted_secret_never_appears(json_log: io.StringIO) -> None:
    # A quote and a backslash: JSON would escape them, so redaction must happen before serialising.
    planted = 'sk-"planted\\' + uuid.uuid4().hex
    redactor().add(planted)
    log = logging.getLogger("agentflow.test")
    log.info("calling with key %s", planted, extra={"error": f"401 for {planted}", "user_id": planted})
    try:
        raise ValueError(f"bad key {planted}")
    except ValueError:
        log.exception("request failed")
    text = json_log.getvalue()
    assert planted not in text
    assert json.dumps(planted)[1:-1] not in text  # nor its escaped form
    first, second = _lines(text)
    assert first["message"] == "calling with key ***" and first["error"] == "401 for ***"
    assert first["user_id"] == "***"
    assert "ValueError: bad key ***" in second["exception"]


def test_a_run_redactor_bound_to_the_context_is_applied(json_log: io.StringIO) -> None:
    run_secret = "run-secret-" + uuid.uuid4().hex
    run_redactor = Redactor()
    run_redactor.add(run_secret)
    log = logging.getLogger("agentflow.test")
    with log_context(run_id="r", redactor=run_redactor):
        log.info(f"token {run_secret}")
    log.info(f"outside {run_secret}")  # not bound any more: this redactor does not apply
    inside, outside = _lines(json_log.getvalue())
    assert inside["message"] == "token ***" and inside["run_id"] == "r"
    assert run_secret in outside["message"]


def test_compiled_ops_write_one_json_line_per_node_execution(capfd: pytest.CaptureFixture[str]) -> None:
    planted = "sk-node-" + uuid.uuid4().hex
    redactor().add(planted)
    b = GraphBuilder("json log run", graph_id="json-log-graph")
    bad = b.node(XMLParserBlock, node_id="bad", input_xml="<<bad")
    err = b.node(AgentOutputBlock, node_id="err", name="error")
    calc = b.node(CalculatorBlock, node_id=planted, operation="Add", a=1, b=2)  # a secret in an id
    out = b.node(AgentOutputBlock, node_id="out", name="sum")
    b.link(bad, "error", err, "value").link(calc, "result", out, "value")
    with DagsterInstance.ephemeral() as instance:
        result = compile_graph(b.build()).execute_in_process(
            instance=instance, run_config={"user_id": "json-user"}
        )
    assert result.success
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert planted not in text
    nodes = [json.loads(line) for line in captured.err.splitlines() if f'"logger": "{NODE_LOGGER}"' in line]
    assert sorted(n["node_id"] for n in nodes) == ["***", "bad", "err", "out"]
    for node in nodes:
        assert node["user_id"] == "json-user"
        assert node["run_id"] == result.run_id
        assert node["graph_id"] == "json-log-graph"
        assert node["node_exec_id"].startswith(f"{result.run_id}/")
        assert node["block_id"] and node["block_name"]
    failed = next(n for n in nodes if n["node_id"] == "bad")
    assert failed["level"] == "ERROR" and failed["status"] == "FAILED"
    assert failed["block_id"] == XMLParserBlock.id and "xml" in failed["error"].lower()
    assert all(n["level"] == "INFO" and n["status"] == "COMPLETED" for n in nodes if n is not failed)


class _LogsItsKeyBlock(Block):
    """Stands in for a client library that logs the URL it calls, key included."""

    id = "5ec0f1a2-0000-4000-8000-00000000109e"
    repeated_output_pins = frozenset()
    description = "Logs the operator key it falls back to."
    credentials = (
        CredentialsField(
            "credentials", provider="logged", optional=True, env_fallback="AGENTFLOW_TEST_LOGGED_KEY"
        ),
    )

    class Input(BlockInput):
        credentials: dict[str, Any] = {}

    class Output(BlockOutput):
        done: bool

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        key = os.environ["AGENTFLOW_TEST_LOGGED_KEY"]
        logging.getLogger("some.client").warning(f"GET https://api.example.com/v1?key={key} -> 200")
        yield "done", True


def test_what_a_node_logs_while_it_runs_is_scrubbed_of_its_secrets(
    json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"operator-key-{uuid.uuid4().hex}"
    monkeypatch.setenv("AGENTFLOW_TEST_LOGGED_KEY", key)
    b = GraphBuilder("logs its key")
    b.node(_LogsItsKeyBlock, node_id="client")
    registry = BlockRegistry([*(type(block) for block in REGISTRY), _LogsItsKeyBlock])
    result = ReferenceEngine(registry=registry).run_sync(b.build(), {}, RunOptions())
    assert result.executions[0].outputs == [("done", True)]
    (line,) = [entry for entry in _lines(json_log.getvalue()) if entry["logger"] == "some.client"]
    assert line["message"] == "GET https://api.example.com/v1?key=*** -> 200"
