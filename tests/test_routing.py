"""AutoGPT's routing rules (executor/manager.py `_register_next_executions`, data/dynamic_fields.py),
each on a small graph whose result differs under any other reading of them, on the reference engine
and on the compiled job (agent_defs/engine/routing.py is the one implementation both use).

A StepThroughItems node over a list of one-key dicts, with links `item_#_<key>`, is a scripted source:
each element fires exactly one link (paths that do not resolve fire nothing), in list order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dagster import DagsterInstance

from agent_defs.compile.plan import OpKind, plan_compile
from agent_defs.engine import EngineLimits, ReferenceEngine, RunResult
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from blocks.library.io import AgentOutputBlock
from blocks.library.iteration import StepThroughItemsBlock
from blocks.library.text import CombineTextsBlock, FillTextTemplateBlock

SEQUENTIAL = EngineLimits(node_concurrency=1)


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def run(graph: Graph) -> RunResult:
    return ReferenceEngine(limits=SEQUENTIAL).run_sync(graph)


def run_compiled(graph: Graph, instance: DagsterInstance) -> dict[str, Any]:
    job = compile_graph(
        graph, fused=False, engine=ReferenceEngine(limits=SEQUENTIAL), console_log_level="ERROR"
    )
    result = job.execute_in_process(run_config={"inputs": {}}, instance=instance, raise_on_error=False)
    summary = read_run_summary(instance, result.run_id)
    assert summary["status"] == "COMPLETED", summary
    return summary


def scripted_template(script: list[dict[str, str]], static: set[str], pins: str = "abc") -> Graph:
    """src yields each element of `script`; link `item_#_<pin>` feeds template pin `<pin>` (static
    when in `static`); the template's texts are the output `out`."""
    b = GraphBuilder("scripted")
    src = b.node(StepThroughItemsBlock, node_id="src", items=script)
    fmt = "".join(f"{{{{{p}}}}}" for p in pins)
    t = b.node(FillTextTemplateBlock, node_id="t", format=fmt, values={})
    out = b.node(AgentOutputBlock, node_id="out", name="out")
    for pin in pins:
        b.link(src, f"item_#_{pin}", t, f"values_#_{pin}", static=pin in static)
    b.link(t, "output", out, "value")
    return b.build()


def test_rule1_a_static_value_offered_to_an_unready_execution_is_not_kept() -> None:
    # a=A1, a=A2, b=B1: two waiting executions. c=K1 (static) readies the first; the second is
    # offered K1 but still lacks b, so keeps nothing: c=K2 then goes to it, and b=B2 readies it.
    script = [{"a": "A1"}, {"a": "A2"}, {"b": "B1"}, {"c": "K1"}, {"c": "K2"}, {"b": "B2"}]
    result = run(scripted_template(script, static={"c"}))
    assert result.outputs["out"] == ["A1B1K1", "A2B2K2"]  # before: ["A1B1K1", "A2B2K1"]


def test_rule2_a_static_pin_reuses_the_latest_executions_value_whichever_link_brought_it() -> None:
    b = GraphBuilder("latest value")
    script = [{"cs": "K1"}, {"a": "A1"}, {"cn": "K2"}, {"a": "A2"}, {"a": "A3"}]
    src = b.node(StepThroughItemsBlock, node_id="src", items=script)
    t = b.node(FillTextTemplateBlock, node_id="t", format="{{a}}{{c}}", values={})
    out = b.node(AgentOutputBlock, node_id="out", name="out")
    b.link(src, "item_#_a", t, "values_#_a")
    b.link(src, "item_#_cs", t, "values_#_c", static=True)
    b.link(src, "item_#_cn", t, "values_#_c")  # not static: K2 still becomes the value reused
    b.link(t, "output", out, "value")
    result = run(b.build())
    assert result.outputs["out"] == ["A1K1", "A2K2", "A3K2"]  # before: A3 took K1


def test_rule3_waiting_executions_are_rechecked_newest_first() -> None:
    script = [{"a": "A1"}, {"a": "A2"}, {"a": "A3"}, {"c": "K"}]
    result = run(scripted_template(script, static={"c"}, pins="ac"))
    # K readies A1's execution (it had the pin free); then A3's, then A2's (newest first).
    assert result.outputs["out"] == ["A1K", "A3K", "A2K"]  # before: A1K, A2K, A3K


def test_rule3_links_fire_in_the_graphs_link_order_dynamic_paths_included() -> None:
    b = GraphBuilder("link order")
    src = b.node(StepThroughItemsBlock, node_id="src", items=[{"k": 1}])
    out = b.node(AgentOutputBlock, node_id="out", name="out")
    b.link(src, "item_#_k", out, "value")
    b.link(src, "item", out, "value")
    assert run(b.build()).outputs["out"] == [1, {"k": 1}]  # before: exact links first


def test_rule5_a_path_resolving_to_none_and_attribute_paths_on_dicts_fire_nothing() -> None:
    b = GraphBuilder("paths")
    src = b.node(StepThroughItemsBlock, node_id="src", items=[{"x": None, "y": 2}])
    for name, path in (("none", "item_#_x"), ("attr", "item_@_y"), ("key", "item_#_y"), ("whole", "item")):
        b.link(src, path, b.node(AgentOutputBlock, node_id=f"out_{name}", name=name), "value")
    result = run(b.build())
    assert result.outputs == {"key": [2], "whole": [{"x": None, "y": 2}]}  # before: none [None], attr [2]
    assert "out_none" not in result.execution_counts()


def test_rule5_a_non_integer_list_index_on_a_sink_pin_makes_the_input_invalid() -> None:
    b = GraphBuilder("bad index")
    src = b.node(StepThroughItemsBlock, node_id="src", items=["x"])
    join = b.node(CombineTextsBlock, node_id="join", delimiter="+")
    b.link(src, "item", join, "input_$_first")
    b.link(join, "output", b.node(AgentOutputBlock, node_id="out", name="out"), "value")
    result = run(b.build())
    assert "join" not in result.execution_counts()  # before: it ran with input ["x"]
    assert [s.node_id for s in result.skipped] == ["join"]
    assert "input_$_first" in result.skipped[0].reason and "whole number" in result.skipped[0].reason


def test_rule5_dynamic_sink_pins_extend_the_default_without_changing_the_stored_graph() -> None:
    b = GraphBuilder("defaults kept")
    src = b.node(StepThroughItemsBlock, node_id="src", items=["x", "y"])
    t = b.node(FillTextTemplateBlock, node_id="t", format="{{a}}{{b}}", values={"a": "-", "b": "-"})
    b.link(src, "item", t, "values_#_b")
    b.link(t, "output", b.node(AgentOutputBlock, node_id="out", name="out"), "value")
    graph = b.build()
    assert run(graph).outputs["out"] == ["-x", "-y"]
    assert graph.nodes_by_id["t"].input_default["values"] == {"a": "-", "b": "-"}  # before: b was "y"


def test_rule8_a_region_receives_its_inputs_in_the_order_they_were_produced(
    instance: DagsterInstance,
) -> None:
    # src runs once (its own op) and yields item, key, item, key, ...; both links into the region
    # are static, so how the values interleave decides which pairs run.
    b = GraphBuilder("region order")
    src = b.node(StepThroughItemsBlock, node_id="src", items=["x0", "x1", "x2"])
    t = b.node(FillTextTemplateBlock, node_id="t", format="{{i}}{{k}}", values={})
    out = b.node(AgentOutputBlock, node_id="out", name="out")
    b.link(src, "item", t, "values_#_i", static=True)
    b.link(src, "key", t, "values_#_k", static=True)
    b.link(t, "output", out, "value")
    graph = b.build()
    plan = plan_compile(graph)
    assert plan.op(plan.op_of_node["src"]).kind is OpKind.NODE
    assert plan.op(plan.op_of_node["t"]).kind is OpKind.REGION
    autogpt = ["x00", "x10", "x11", "x21", "x22"]
    assert run(graph).outputs["out"] == autogpt
    summary = run_compiled(graph, instance)
    # Before: the region got every item, then every key: x00, x20, x10, x11, x12.
    assert summary["outputs"]["out"] == autogpt
    assert summary["node_execution_counts"] == run(graph).execution_counts()
