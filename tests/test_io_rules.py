"""Issue 12, conversion and I/O rules (4, 6, 7, 8b, 9): each on a small graph, on the reference engine
and on the compiled Dagster job (in process), which must agree with each other and with AutoGPT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from support_sensors import LISTENER_NAMES, listener_env, listener_workspace, listeners_on, new_id

from agent_defs.engine import ReferenceEngine
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from bench.graphs import export as export_graph
from blocks.library.basic import StoreValueBlock
from blocks.library.data import GetListItemBlock
from blocks.library.io import AgentDropdownInputBlock, AgentInputBlock, AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.text import FillTextTemplateBlock


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@dataclass
class Outcome:
    outputs: dict[str, list[Any]]
    counts: dict[str, int]
    failed: dict[str, int]


def on_both_engines(graph: Graph, instance: DagsterInstance, inputs: dict[str, Any] | None = None) -> Outcome:
    """The run's outcome on the reference engine, checked equal to the compiled job's."""
    reference = ReferenceEngine().run_sync(graph, inputs or {})
    run = compile_graph(graph).execute_in_process(run_config={"inputs": inputs or {}}, instance=instance)
    compiled = read_run_summary(instance, run.run_id)
    expected = Outcome(reference.outputs, reference.execution_counts(), reference.failed_nodes())
    assert (
        Outcome(compiled["outputs"], compiled["node_execution_counts"], compiled["failed_nodes"]) == expected
    )
    return expected


def constant(b: GraphBuilder, node_id: str, value: Any) -> str:
    return b.node(StoreValueBlock, node_id=node_id, input=value)


def graph_output(b: GraphBuilder, source: str, pin: str, name: str, **defaults: Any) -> str:
    out = b.node(AgentOutputBlock, node_id=f"out_{name}", name=name, **defaults)
    b.link(source, pin, out, "value")
    return out


# --- rule 4: linked values are converted to the pin's annotated type, as AutoGPT's `convert` does ---
def test_rule4_linked_values_are_converted_as_autogpt_converts(instance: DagsterInstance) -> None:
    b = GraphBuilder("conversions")
    # An LLM-like answer that is no number, into a number pin: AutoGPT runs the node with 0.
    add = b.node(CalculatorBlock, node_id="add", operation="Add")
    b.link(constant(b, "three_and_a_half", "3.5"), "output", add, "a")
    b.link(constant(b, "words", "abc"), "output", add, "b")
    graph_output(b, add, "result", "sum")
    # A list into a number pin is its length.
    times = b.node(CalculatorBlock, node_id="times", operation="Multiply", b=2)
    b.link(constant(b, "three_items", [7, 8, 9]), "output", times, "a")
    graph_output(b, times, "result", "product")
    # Text with a fraction into an integer pin: int(float("2.9")) == 2.
    pick = b.node(GetListItemBlock, node_id="pick")
    b.link(constant(b, "letters", ["a", "b", "c", "d"]), "output", pick, "list")
    b.link(constant(b, "index", "2.9"), "output", pick, "index")
    graph_output(b, pick, "item", "picked")
    # A boolean into a text pin is JSON text: "true", not Python's "True".
    fill = b.node(FillTextTemplateBlock, node_id="fill", values={})
    b.link(constant(b, "flag", True), "output", fill, "format")
    graph_output(b, fill, "output", "text")
    graph = b.build()
    assert validate_graph(graph) == []

    outcome = on_both_engines(graph, instance)

    assert outcome.outputs == {"sum": [3.5], "product": [6.0], "picked": ["c"], "text": ["true"]}
    assert outcome.failed == {}


def test_rule4_convert_follows_autogpt_type_by_type() -> None:
    from blocks.conversion import convert  # here, so the other tests run on code without it

    assert convert("abc", float) == 0.0 and convert(" 2.5 ", float) == 2.5
    assert convert({"a": 1, "b": 2}, int) == 2
    assert convert(False, str) == "false" and convert({"k": [1]}, str) == '{"k": [1]}'
    assert convert("x", list) == ["x"] and convert("[1, 2]", list[int]) == [1, 2]
    assert convert({"k": "v"}, list) == [["k", "v"]]  # AutoGPT's pairs, as JSON carries them
    assert convert("not json", dict) == {"value": "not json"} and convert([5, 6], dict[str, int]) == {
        "0": 5,
        "1": 6,
    }
    assert convert("TRUE", bool) is True and convert("yes", bool) is False and convert([0], bool) is True
    assert convert(["1", "2"], list[float]) == [1.0, 2.0]
    assert convert(3, int | None) == 3 and convert("3", int | None) == "3"  # unions are left as they are


# --- rule 6: a None into a required pin -----------------------------------------------------------------
def test_rule6_none_into_a_required_pin_leaves_the_execution_unrun_on_both_engines(
    instance: DagsterInstance,
) -> None:
    """AutoGPT's `validate_exec` drops None values before its JSON-schema check (`validate_data`), so a
    required pin given None fails that check when the value arrives and the execution is never
    queued (`_register_next_executions` logs "Skipped queueing"); the block never runs."""
    b = GraphBuilder("none into required")
    # An output node given no value yields None on its `output` pin (and records None).
    nothing = b.node(AgentOutputBlock, node_id="nothing", name="nothing")
    fill = b.node(FillTextTemplateBlock, node_id="fill", format="{{ x }}")
    b.link(nothing, "output", fill, "values")
    graph_output(b, fill, "output", "text")
    graph_output(b, fill, "error", "error")
    graph = b.build()

    outcome = on_both_engines(graph, instance)

    assert outcome.outputs == {"nothing": [None]}
    assert "fill" not in outcome.counts and outcome.failed == {}
    skipped = ReferenceEngine().run_sync(graph, {}).skipped
    assert [(s.node_id, "values" in s.reason) for s in skipped] == [("fill", True)]


# --- rule 7: outputs hold the value that reached the AgentOutput node -------------------------------
def test_rule7_outputs_hold_the_value_not_the_formatted_text(instance: DagsterInstance) -> None:
    b = GraphBuilder("formatted output")
    add = b.node(CalculatorBlock, node_id="add", operation="Add", a=1, b=2)
    out = graph_output(b, add, "result", "total", format="Total: {{ total }}")
    graph = b.build()

    outcome = on_both_engines(graph, instance)

    assert outcome.outputs == {"total": [3.0]}
    formatted = [e.outputs for e in ReferenceEngine().run_sync(graph, {}).executions if e.node_id == out]
    assert formatted == [[("output", "Total: 3.0")]]


# --- rule 8b: a graph input given no value ----------------------------------------------------------
def _input_without_value() -> Graph:
    b = GraphBuilder("optional input")
    topic = b.node(AgentInputBlock, node_id="topic", name="topic")
    graph_output(b, topic, "result", "topic")
    graph_output(b, constant(b, "greeting", "hello"), "output", "greeting")
    return b.build()


def test_rule8b_an_input_without_a_value_runs_on_both_engines(instance: DagsterInstance) -> None:
    graph = _input_without_value()

    outcome = on_both_engines(graph, instance)

    assert outcome.outputs == {"greeting": ["hello"]}
    assert on_both_engines(graph, instance, {"topic": None}).outputs == {"greeting": ["hello"]}
    assert on_both_engines(graph, instance, {"topic": "bees"}).outputs == {
        "greeting": ["hello"],
        "topic": ["bees"],
    }


def test_rule8b_a_queued_request_without_the_input_becomes_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Redis and the request listener (Dagster's own sensor code, in this process): a request
    that leaves the input out is run, not dead-lettered as not fitting the job's run config."""
    graph = _input_without_value()
    export = {**export_graph(graph), "id": "optional-input", "version": 1, "description": ""}
    export_file = tmp_path / "optional_input.json"
    export_file.write_text(json.dumps(export))
    listener_env(monkeypatch, tmp_path / "agents", new_id("t"))  # its own keys in Redis
    with (
        listener_workspace(tmp_path, execute_runs=True, graphs=(export_file,)) as (dagster, context),
        listeners_on(dagster, context, monkeypatch) as listening,
    ):
        request_id = new_id("no-input")
        listening.enqueue(
            {"request_id": request_id, "graph_id": "optional-input", "user_id": "u1", "inputs": {}}
        )
        listening.tick(LISTENER_NAMES[0])

        assert listening.dead_letters() == []
        [run] = listening.runs_for(request_id)
        assert read_run_summary(dagster, run.run_id)["outputs"] == {"greeting": ["hello"]}


# --- rule 9: AgentDropdownInput's choices, `options` (newer) or `placeholder_values` (older) -----------
@pytest.mark.parametrize("choices_pin", ["options", "placeholder_values"])
def test_rule9_dropdown_choices_under_either_name(choices_pin: str, instance: DagsterInstance) -> None:
    b = GraphBuilder("dropdown")
    tone = b.node(
        AgentDropdownInputBlock, node_id="tone", name="tone", **{choices_pin: ["Friendly", "Formal"]}
    )
    graph_output(b, tone, "result", "tone")
    graph = b.build()
    assert validate_graph(graph) == []
    model = AgentDropdownInputBlock().make_input(graph.nodes_by_id[tone].input_default)
    assert model.options == ["Friendly", "Formal"]  # type: ignore[attr-defined]

    assert on_both_engines(graph, instance, {"tone": "Formal"}).outputs == {"tone": ["Formal"]}
