"""Validation refuses what would never run and nothing AutoGPT's conversion accepts: defaults that
AutoGPT converts (numeric text into a number pin, a number into a text pin, ...) validate and run
converted; a pin fed by its own node *and* another node is a legal loop; NaN is refused by the store
API too, naming where it is (the corpus in tests/corpus/bad_graphs holds the refused cases)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent_defs.engine import ReferenceEngine
from agent_defs.graph import GraphLoadError, parse_graph
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.validation import validate_graph
from agent_defs.store import DirectoryGraphStore
from blocks.library.basic import StoreValueBlock
from blocks.library.data import AddToListBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.text import FillTextTemplateBlock


def test_defaults_that_autogpt_converts_validate_and_run_converted() -> None:
    b = GraphBuilder("converted defaults")
    b.node(CalculatorBlock, node_id="calc", operation="Multiply", a="3", b=2.5, round_result="true")
    b.node(FillTextTemplateBlock, node_id="fmt", format=42, values={})
    b.node(AddToListBlock, node_id="add", list="[1, 2]", entry=3)
    for name, source, pin in (
        ("product", "calc", "result"),
        ("text", "fmt", "output"),
        ("list", "add", "updated_list"),
    ):
        b.node(AgentOutputBlock, node_id=f"out_{name}", name=name)
        b.link(source, pin, f"out_{name}", "value")
    graph = b.build()
    assert validate_graph(graph) == []
    result = ReferenceEngine().run_sync(graph, {})
    assert result.skipped == []
    assert result.outputs == {"product": [8], "text": ["42"], "list": [[1, 2, 3]]}


def test_a_null_default_takes_the_pins_own_default_as_in_autogpt() -> None:
    """AutoGPT drops None inputs before building the block's input: the node runs with the pin's
    default (here round_result=False), rather than being left unrun for a "wrong type"."""
    b = GraphBuilder("null default")
    b.node(CalculatorBlock, node_id="calc", operation="Divide", a=7, b=2, round_result=None)
    b.node(FillTextTemplateBlock, node_id="fmt", format="{{ x }}", values={"x": None}, escape_html=None)
    b.node(AgentOutputBlock, node_id="out", name="quotient")
    b.node(AgentOutputBlock, node_id="text", name="text")
    b.link("calc", "result", "out", "value").link("fmt", "output", "text", "value")
    graph = b.build()
    assert validate_graph(graph) == []
    result = ReferenceEngine().run_sync(graph, {})
    assert result.skipped == []
    assert result.outputs == {"quotient": [3.5], "text": ["None"]}


def test_a_bad_default_on_a_linked_pin_is_never_used_so_it_is_not_reported() -> None:
    b = GraphBuilder("linked pin default")
    b.node(AgentInputBlock, node_id="in", name="x")
    b.node(CalculatorBlock, node_id="calc", operation="Add", a="not a number", b=1)
    b.node(AgentOutputBlock, node_id="out", name="sum")
    b.link("in", "result", "calc", "a").link("calc", "result", "out", "value")
    graph = b.build()
    assert validate_graph(graph) == []
    assert ReferenceEngine().run_sync(graph, {"x": 4}).outputs == {"sum": [5]}


def test_a_pin_fed_by_its_own_node_and_by_another_is_a_legal_loop() -> None:
    b = GraphBuilder("accumulator")
    b.node(StoreValueBlock, node_id="zero", input=0)
    b.node(CalculatorBlock, node_id="add", operation="Add", a=1)
    b.link("zero", "output", "add", "b").link("add", "result", "add", "b")
    assert validate_graph(b.build()) == []


def test_the_store_refuses_nan_naming_node_and_pin(tmp_path: Path) -> None:
    store = DirectoryGraphStore(tmp_path)
    export = {
        "id": "g-nan",
        "version": 1,
        "name": "NaN Default",
        "nodes": [
            {
                "id": "calc",
                "block_id": CalculatorBlock.id,
                "input_default": {"operation": "Add", "a": math.nan},
            },
        ],
        "links": [],
    }
    with pytest.raises(GraphLoadError) as caught:
        store.save(export)
    assert str(caught.value) == (
        "graph 'NaN Default' (g-nan v1): node calc: pin 'a': its default is NaN, which is not a JSON number "
        "(use a finite number, null or a string)"
    )
    assert store.refs() == []


@pytest.mark.parametrize(
    ("given", "static"), [("false", False), ("true", True), (0, False), ("1", True), (None, False)]
)
def test_is_static_reads_as_autogpt_reads_it(given: object, static: bool) -> None:
    """AutoGPT's Link model is pydantic: the text "false" is not a static link (bool("false") would be)."""
    export = {
        "id": "g-static",
        "name": "Static",
        "nodes": [{"id": "keep", "block_id": StoreValueBlock.id, "input_default": {"input": 1}}],
        "links": [
            {
                "id": "l1",
                "source_id": "keep",
                "source_name": "output",
                "sink_id": "keep",
                "sink_name": "data",
            },
        ],
    }
    export["links"][0]["is_static"] = given
    (link,) = parse_graph(export).links
    assert link.is_static is static
