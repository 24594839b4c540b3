"""What the compiler builds: op per node, regions, fused mode, run config, tags, failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterInvalidConfigError

from agent_defs.compile.mode import compile_mode
from agent_defs.compile.plan import OpKind, plan_compile
from agent_defs.graph import load_graph_file, parse_graph
from agent_defs.graph.builder import GraphBuilder
from agent_defs.jobs.catalog import build_catalog
from agent_defs.jobs.compiler import SUMMARY_OP, TAG_PREFIX, compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.jobs.run_config import job_config_schema
from agent_defs.paths import agents_dir
from agent_defs.store.directory import DirectoryGraphStore
from blocks.library.io import (
    AgentInputBlock,
    AgentNumberInputBlock,
    AgentOutputBlock,
    AgentShortTextInputBlock,
)
from blocks.library.maths import CalculatorBlock
from blocks.library.xml_parser import XMLParserBlock


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def test_one_op_per_node_with_readable_names_and_tags() -> None:
    graph = load_graph_file(agents_dir() / "ticket_triage.json")
    job = compile_graph(graph)
    node_names = {n.name for n in job.graph.nodes}
    assert {
        "AgentInput_Ticket",
        "Condition_High_priority",
        "FillTextTemplate_Escalation_message",
    } <= node_names
    condition = job.graph.node_named("Condition_High_priority")
    assert condition.tags[f"{TAG_PREFIX}node_id"] == "is_high"
    assert condition.tags[f"{TAG_PREFIX}block_id"] == "715696a0-e1da-45c8-b209-c2fa9c3b0be6"
    assert job.tags[f"{TAG_PREFIX}graph_id"] == graph.id
    assert job.tags[f"{TAG_PREFIX}graph_version"] == "1"
    # every node is its own op: no regions in a graph without loops or streams
    assert all(op.kind is OpKind.NODE for op in plan_compile(graph).ops)


def test_cycles_and_streams_become_regions_and_the_rest_stay_ops() -> None:
    plan = plan_compile(load_graph_file(agents_dir() / "count_to_n.json"))
    regions = [op for op in plan.ops if op.kind is OpKind.REGION]
    assert len(regions) == 1
    assert regions[0].nodes == {"increment", "below", "step", "final"}
    assert {op.name for op in plan.ops if op.kind is OpKind.NODE} == {
        "AgentNumberInput_Limit",
        "StoreValue_Start_at_zero",
    }


def test_fused_mode_is_a_setting_stored_with_the_graph(instance: DagsterInstance) -> None:
    data = json.loads((agents_dir() / "count_to_n.json").read_text())
    data["agentflow"] = {"compile": "fused"}
    graph = parse_graph(data)
    assert compile_mode(graph) == "fused"
    job = compile_graph(graph)
    assert [n.name for n in job.graph.nodes if n.name != SUMMARY_OP] == ["Count_to_N_fused"]
    run = job.execute_in_process(run_config={"inputs": {"limit": 2}}, instance=instance)
    assert read_run_summary(instance, run.run_id)["outputs"] == {"steps": [1.0, 2.0], "final": [2]}


def test_run_config_is_typed_from_the_input_nodes() -> None:
    b = GraphBuilder("typed inputs")
    b.node(AgentShortTextInputBlock, node_id="q", name="question", description="What to ask")
    b.node(AgentNumberInputBlock, node_id="n", name="count", value=3)
    b.node(AgentInputBlock, node_id="any", name="payload", value={"a": 1})
    fields = job_config_schema(b.build())["inputs"].config_type.fields  # type: ignore[attr-defined]
    # Without a default the input may be left out (or null), as in AutoGPT: its node yields nothing.
    assert not fields["question"].is_required and fields["question"].description == "What to ask"
    assert fields["question"].config_type.inner_type.given_name == "String"
    assert fields["count"].default_value == 3 and fields["count"].config_type.given_name == "Int"
    assert fields["payload"].default_value == {"a": 1}


def test_unknown_or_mistyped_input_is_a_config_error_naming_it(instance: DagsterInstance) -> None:
    b = GraphBuilder("needs a question")
    q = b.node(AgentShortTextInputBlock, node_id="q", name="question")
    out = b.node(AgentOutputBlock, node_id="o", name="echo")
    b.link(q, "result", out, "value")
    job = compile_graph(b.build())
    with pytest.raises(DagsterInvalidConfigError, match="questions"):
        job.execute_in_process(run_config={"inputs": {"questions": "typo"}}, instance=instance)
    counting = compile_graph(load_graph_file(agents_dir() / "count_to_n.json"))
    with pytest.raises(DagsterInvalidConfigError, match="limit"):
        counting.execute_in_process(run_config={"inputs": {"limit": "five"}}, instance=instance)


def test_node_failure_fires_error_pin_and_the_run_records_its_error_count(instance: DagsterInstance) -> None:
    b = GraphBuilder("failing node")
    bad = b.node(XMLParserBlock, node_id="bad", input_xml="<<not xml")
    err = b.node(AgentOutputBlock, node_id="err", name="error")
    ok = b.node(CalculatorBlock, node_id="ok", operation="Add", a=1, b=2)
    out = b.node(AgentOutputBlock, node_id="out", name="sum")
    b.link(bad, "error", err, "value").link(ok, "result", out, "value")
    run = compile_graph(b.build()).execute_in_process(instance=instance)
    summary = read_run_summary(instance, run.run_id)
    assert summary["dagster_status"] == "SUCCESS"  # as AutoGPT: node failures do not fail the run
    assert summary["node_error_count"] == 1
    assert summary["failed_nodes"] == {"bad": 1}
    assert summary["outputs"]["sum"] == [3.0] and len(summary["outputs"]["error"]) == 1
    errors = [
        e.message for e in instance.all_logs(run.run_id) if e.level >= 40 and "bad" in (e.user_message or "")
    ]
    assert errors, "the failed node is logged at ERROR level"


def test_runaway_loop_fails_the_dagster_run(instance: DagsterInstance) -> None:
    from agent_defs.engine import EngineLimits, ReferenceEngine

    b = GraphBuilder("runaway")
    start = b.node(CalculatorBlock, node_id="start", operation="Add", a=0, b=0)
    inc = b.node(CalculatorBlock, node_id="inc", operation="Add", b=1)
    b.link(start, "result", inc, "a").link(inc, "result", inc, "a")
    job = compile_graph(b.build(), engine=ReferenceEngine(limits=EngineLimits(max_node_executions=30)))
    run = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not run.success
    assert read_run_summary(instance, run.run_id)["dagster_status"] == "FAILURE"


def test_bad_stored_graph_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    for path in agents_dir().glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    broken = json.loads((agents_dir() / "count_to_n.json").read_text())
    broken.update(id="broken-graph", name="Broken graph")
    broken["nodes"][2]["block_id"] = "0082d712-ff1b-4c3d-8a8d-6c7721883b83"  # PostToYouTube: unsupported
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    (tmp_path / "not_json.json").write_text("{ nope")
    catalog = build_catalog(DirectoryGraphStore(tmp_path))
    assert set(catalog.jobs) == {"Count_to_N_v1", "Running_Total_v1", "Ticket_Triage_v1"}
    text = "\n".join(catalog.problems)
    assert "Broken graph" in text and "increment" in text and "PostToYouTubeBlock" in text
    assert "not_json.json" in text
    for make_job in catalog.jobs.values():
        assert make_job().name in catalog.jobs
