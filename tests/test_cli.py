"""The `agentflow` command line, run as the installed entry point in a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent_defs.cli import parse_input_value
from agent_defs.paths import project_root

ROOT = project_root()
AGENTS = ROOT / "agents"
CORPUS = project_root() / "tests" / "corpus" / "bad_graphs"
AGENTFLOW = Path(sys.executable).parent / "agentflow"

AUTOGPT_IDS = {
    "StoreValueBlock": "1ff065e9-88e8-4358-9d82-8dc91f622ba9",
    "AgentInputBlock": "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b",
    "AgentOutputBlock": "363ae599-353e-4804-937e-b2ee3cef3da4",
    "AgentExecutorBlock": "e189baac-8c20-45a1-94a7-55177ea42565",
}


def agentflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(AGENTFLOW), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def run_json(*args: str | Path) -> dict[str, object]:
    proc = agentflow("run", *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object"
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    return result


# --- validate ----------------------------------------------------------------------------------------


def test_validate_the_shipped_agents() -> None:
    proc = agentflow("validate", "agents")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    graphs = sorted(AGENTS.glob("*.json"))
    assert len(graphs) >= 3
    lines = proc.stdout.splitlines()
    assert len(lines) == len(graphs), proc.stdout
    for line, path in zip(lines, graphs, strict=True):
        assert line.startswith(f"OK   agents/{path.name} ("), line
    assert proc.stderr == ""


def test_validate_a_mixed_directory_checks_every_graph(tmp_path: Path) -> None:
    for name in ("count_to_n.json", "ticket_triage.json"):
        shutil.copy(AGENTS / name, tmp_path / name)
    # Sorted between the good ones, so a stop at the first bad graph would hide one of them.
    shutil.copy(CORPUS / "link_to_missing_node.json", tmp_path / "middle_bad.json")
    shutil.copy(CORPUS / "not_json.json", tmp_path / "a_bad.json")
    proc = agentflow("validate", tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = [line for line in proc.stdout.splitlines() if not line.startswith("  - ")]
    assert summary == [
        f"FAIL {tmp_path / 'a_bad.json'} (unreadable): 1 problem",
        f"OK   {tmp_path / 'count_to_n.json'} ('Count to N' v1)",
        f"FAIL {tmp_path / 'middle_bad.json'} ('Ghost Sink' v1): 1 problem",
        f"OK   {tmp_path / 'ticket_triage.json'} ('Ticket Triage' v1)",
    ]
    assert "link l9 goes to missing node ghost" in proc.stdout
    assert "is not valid JSON" in proc.stdout


def test_validate_several_paths_and_a_missing_one() -> None:
    proc = agentflow("validate", "agents/count_to_n.json", "agents/nope.json")
    assert proc.returncode == 1
    assert "OK   agents/count_to_n.json" in proc.stdout
    assert "error: agents/nope.json: no such file or directory" in proc.stderr


# --- run ---------------------------------------------------------------------------------------------


def test_run_count_to_n_json() -> None:
    result = run_json("agents/count_to_n.json", "--input", "limit=3")
    assert result["status"] == "COMPLETED", result
    assert result["error"] is None
    outputs = result["outputs"]
    assert isinstance(outputs, dict)
    assert outputs["steps"] == [1, 2, 3]  # 1.0 == 1: floats are fine
    assert outputs["final"] == [3]
    assert result["node_execution_counts"] == {
        "limit": 1,
        "start": 1,
        "increment": 3,
        "below": 3,
        "step": 3,
        "final": 1,
    }
    assert result["node_error_count"] == 0


def test_run_uses_the_input_default_when_no_input_is_given() -> None:
    result = run_json("agents/count_to_n.json")
    assert result["outputs"] == {"steps": [1, 2, 3, 4, 5], "final": [5]}


def test_run_plain_text_output() -> None:
    proc = agentflow("run", "agents/count_to_n.json", "--input", "limit=2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "graph 'Count to N' (9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01 v1): COMPLETED",
        "  steps = 1.0",
        "  steps = 2.0",
        "  final = 2",
    ] or proc.stdout.splitlines() == [
        "graph 'Count to N' (9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01 v1): COMPLETED",
        "  steps = 1",
        "  steps = 2",
        "  final = 2",
    ]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ("true", True),
        ("null", None),
        ('"3"', "3"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("hello world", "hello world"),
        ("", ""),
        ("{not json", "{not json"),
        ("a=b", "a=b"),
        ("NaN", "NaN"),
        ("-Infinity", "-Infinity"),
        ("1e400", "1e400"),
        ("[1, NaN]", "[1, NaN]"),
    ],
)
def test_parse_input_value(raw: str, value: object) -> None:
    assert parse_input_value(raw) == value
    assert type(parse_input_value(raw)) is type(value)


def test_input_json_object_reaches_the_graph() -> None:
    ticket = {"title": "Disk full", "priority": "high", "tags": ["storage"]}
    result = run_json("agents/ticket_triage.json", "--input", f"ticket={json.dumps(ticket)}")
    assert result["status"] == "COMPLETED"
    assert result["outputs"] == {"escalated": ["ESCALATE: Disk full (storage)"]}


def test_input_that_is_not_json_is_a_string() -> None:
    """`ticket=Disk full` is not JSON, so the graph gets the string: no dict fields to read, so no
    branch fires (a missing dynamic-pin path fires nothing)."""
    result = run_json("agents/ticket_triage.json", "--input", "ticket=Disk full")
    assert result["status"] == "COMPLETED"
    assert result["outputs"] == {}
    assert result["node_error_count"] == 0
    ticket_runs = [e for e in result["node_executions"] if e["node_id"] == "ticket"]  # type: ignore[union-attr]
    assert len(ticket_runs) == 1
    assert ticket_runs[0]["status"] == "COMPLETED"


def test_input_overrides_inputs_json() -> None:
    result = run_json("agents/count_to_n.json", "--inputs-json", '{"limit": 4}', "--input", "limit=2")
    assert result["outputs"] == {"steps": [1, 2], "final": [2]}
    result = run_json("agents/count_to_n.json", "--inputs-json", '{"limit": 2}')
    assert result["outputs"] == {"steps": [1, 2], "final": [2]}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("{limit: 3}", "error: --inputs-json is not valid JSON"),
        ("", None),  # empty: no inputs at all, the default applies
        ("[3]", "error: --inputs-json must be a JSON object, got list"),
        ("3", "error: --inputs-json must be a JSON object, got int"),
        ('"limit=3"', "error: --inputs-json must be a JSON object, got str"),
        ('{"limit": NaN}', "error: --inputs-json: ['limit'] is NaN, which is not a JSON number"),
        ('{"limit": [1e400]}', "error: --inputs-json: ['limit'][0] is Infinity, which is not a JSON number"),
    ],
)
def test_inputs_json_must_be_a_json_object(given: str, message: str | None) -> None:
    proc = agentflow("run", "agents/count_to_n.json", "--inputs-json", given)
    if message is None:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_input_name_is_named_with_the_known_ones() -> None:
    proc = agentflow("run", "agents/count_to_n.json", "--input", "limt=3", "--input", "zzz=1")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "has no input named 'limt', 'zzz'" in proc.stderr, proc.stderr
    assert "its inputs are: 'limit'" in proc.stderr, proc.stderr
    assert "Count to N" in proc.stderr


def test_input_without_equals_sign() -> None:
    proc = agentflow("run", "agents/count_to_n.json", "--input", "limit")
    assert proc.returncode == 1
    assert "--input 'limit': expected NAME=VALUE" in proc.stderr


def test_run_a_missing_file() -> None:
    proc = agentflow("run", "agents/nope.json")
    assert proc.returncode == 1
    assert "error: agents/nope.json: no such file" in proc.stderr


def test_run_stops_a_runaway_graph_at_the_cap() -> None:
    result_proc = agentflow(
        "run", "agents/count_to_n.json", "--input", "limit=1000", "--max-node-executions", "20", "--json"
    )
    assert result_proc.returncode == 1, result_proc.stdout + result_proc.stderr
    result = json.loads(result_proc.stdout)
    assert result["status"] == "FAILED"
    assert result["error"]
    assert sum(result["node_execution_counts"].values()) <= 20


# --- blocks ------------------------------------------------------------------------------------------


def test_blocks_json_lists_every_block() -> None:
    from blocks import REGISTRY

    proc = agentflow("blocks", "--json")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert isinstance(described, list)
    ids = [b["id"] for b in described]
    assert len(ids) == len(set(ids)), "block ids are unique"
    assert set(ids) == {block.id for block in REGISTRY}
    for info in described:
        assert isinstance(info["name"], str) and info["name"]
        assert isinstance(info["inputs"], dict)
        assert isinstance(info["outputs"], dict)
        for pin in info["inputs"].values():
            assert {"type", "required"} <= set(pin)
    by_id = {b["id"]: b for b in described}
    for name, block_id in AUTOGPT_IDS.items():
        assert block_id in by_id, f"{name} {block_id} missing"
        assert by_id[block_id]["name"] == name
    assert "input" in by_id[AUTOGPT_IDS["StoreValueBlock"]]["inputs"]
    assert "output" in by_id[AUTOGPT_IDS["StoreValueBlock"]]["outputs"]
    assert "name" in by_id[AUTOGPT_IDS["AgentInputBlock"]]["inputs"]
    assert "result" in by_id[AUTOGPT_IDS["AgentInputBlock"]]["outputs"]
    assert "graph_id" in by_id[AUTOGPT_IDS["AgentExecutorBlock"]]["inputs"]


def test_blocks_text_lists_every_block() -> None:
    from blocks import REGISTRY

    proc = agentflow("blocks")
    assert proc.returncode == 0
    for block in REGISTRY:
        assert f"{block.id}  {block.name}" in proc.stdout


def test_no_command_is_a_usage_error() -> None:
    proc = agentflow()
    assert proc.returncode == 2
    assert "usage: agentflow" in proc.stderr
