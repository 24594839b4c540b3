"""Both engines against an independent model of AutoGPT's execution rules (tests/autogpt_model.py).

One plain test per rule of issue 12 (each the smallest graph found that told the engines apart from
AutoGPT; the expected values are worked out by hand from AutoGPT's code and checked on the model
too). Each graph runs on the model, on the reference engine and on the compiled job with regions;
outputs (as multisets per name), node execution counts and node failures must be the same.
Generated graphs are in tests/test_autogpt_families.py.

Arrival orders are scripted with one StepThroughItems node over dictionaries: a link from
`item_#_a` fires only for the items that have an `a`, so one node yields the values for several
pins in exactly the order a test needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from autogpt_compare import assert_follows_model, model_side
from dagster import DagsterInstance

from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from blocks.library.basic import StoreValueBlock
from blocks.library.data import AddToListBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.iteration import StepThroughItemsBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.text import CombineTextsBlock, FillTextTemplateBlock


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _outputs(graph: Graph) -> dict[str, list[Any]]:
    observed = model_side(graph)
    return {name: sorted(counter.elements()) for name, counter in observed.outputs.items()}


def _script(b: GraphBuilder, *items: dict[str, Any]) -> str:
    return b.node(StepThroughItemsBlock, node_id="script", items=list(items))


# --- rule 1: static pins are filled at readiness time, and the fill is saved only if ready ----------
def rule1_graph() -> Graph:
    b = GraphBuilder("rule 1")
    s = _script(b, {"c": 1}, {"a": 1}, {"b": 1}, {"a": 2}, {"b": 2}, {"c": 2})
    t = b.node(FillTextTemplateBlock, node_id="t", format="{{a}}{{b}}{{c}}", values={})
    for pin in "abc":
        b.link(s, f"item_#_{pin}", t, f"values_#_{pin}", static=pin == "b")
    out = b.node(AgentOutputBlock, node_id="out", name="text")
    b.link(t, "output", out, "value")
    return b.build()


def test_rule1_static_fill_is_not_saved_on_a_waiting_execution(instance: DagsterInstance) -> None:
    """a=2 arrives when the latest execution has b=1: the second execution is offered b=1 but is not
    ready (no c), so it keeps nothing; b=2 then fills it, and c=2 runs it with b=2 (not b=1)."""
    assert _outputs(rule1_graph()) == {"text": ['"111"', '"222"']}
    assert_follows_model(rule1_graph(), instance=instance)


# --- rule 2: a static pin reuses the latest execution's input, whichever link brought it -----------
def rule2_graph() -> Graph:
    b = GraphBuilder("rule 2")
    s = _script(b, {"bs": 1}, {"a": 1}, {"bn": 5}, {"a": 2}, {"a": 3})
    t = b.node(FillTextTemplateBlock, node_id="t", format="{{a}}{{b}}", values={})
    b.link(s, "item_#_a", t, "values_#_a")
    b.link(s, "item_#_bs", t, "values_#_b", static=True)
    b.link(s, "item_#_bn", t, "values_#_b")
    out = b.node(AgentOutputBlock, node_id="out", name="text")
    b.link(t, "output", out, "value")
    return b.build()


def test_rule2_static_pin_reuses_the_latest_input_from_any_link(instance: DagsterInstance) -> None:
    """b=5 came over the non-static link into the latest execution; a=3 then reuses b=5, not the
    last value the static link carried (1)."""
    assert _outputs(rule2_graph()) == {"text": ['"11"', '"25"', '"35"']}
    assert_follows_model(rule2_graph(), instance=instance)


# --- rule 3: newest first on static arrival; outputs routed in yield order ------------------------
def rule3_newest_first_graph() -> Graph:
    b = GraphBuilder("rule 3 newest first")
    s = _script(b, {"a": 1}, {"a": 2}, {"a": 3}, {"b": 10})
    pairs = b.node(StepThroughItemsBlock, node_id="pairs", items=[100, 200, 300])
    t = b.node(CalculatorBlock, node_id="t", operation="Add")
    b.link(s, "item_#_a", t, "a")
    b.link(s, "item_#_b", t, "b", static=True)
    u = b.node(CalculatorBlock, node_id="u", operation="Add")
    b.link(t, "result", u, "a")
    b.link(pairs, "item", u, "b")
    out = b.node(AgentOutputBlock, node_id="out", name="sum")
    b.link(u, "result", out, "value")
    return b.build()


def test_rule3_waiting_executions_are_rechecked_newest_first(instance: DagsterInstance) -> None:
    """Three executions of t wait for the static b; b=10 readies the oldest (11), then the others
    newest first (13, 12); u pairs them in that order with 100, 200, 300."""
    assert _outputs(rule3_newest_first_graph()) == {"sum": ["111.0", "213.0", "312.0"]}
    assert_follows_model(rule3_newest_first_graph(), instance=instance)


def rule3_yield_order_graph() -> Graph:
    b = GraphBuilder("rule 3 yield order")
    s = b.node(StepThroughItemsBlock, node_id="s", items=[1, 2, 3])
    c = b.node(CalculatorBlock, node_id="c", operation="Add")
    b.link(s, "item", c, "a")
    b.link(s, "key", c, "b", static=True)
    out = b.node(AgentOutputBlock, node_id="out", name="sum")
    b.link(c, "result", out, "value")
    return b.build()


def test_rule3_outputs_are_routed_in_yield_order_across_pins(instance: DagsterInstance) -> None:
    """item 1, key 0, item 2, key 1, item 3, key 2 interleaved: 1+0, 2+0 (static reuse), 3+1.
    Grouped per pin (all items, then all keys) it would be 1+0, 3+0, 2+0."""
    assert _outputs(rule3_yield_order_graph()) == {"sum": ["1.0", "2.0", "4.0"]}
    assert_follows_model(rule3_yield_order_graph(), instance=instance)


# --- rule 4: linked values are converted to the pin's type with AutoGPT's convert ------------------
def rule4_graph() -> Graph:
    b = GraphBuilder("rule 4")

    def store(node_id: str, value: Any) -> str:
        return b.node(StoreValueBlock, node_id=node_id, input=value)

    def output(node_id: str, name: str, source: str, pin: str) -> None:
        b.node(AgentOutputBlock, node_id=node_id, name=name)
        b.link(source, pin, node_id, "value")

    calc = b.node(CalculatorBlock, node_id="calc", operation="Add")
    b.link(store("seven", "7"), "output", calc, "a")  # a numeric string into a number pin
    b.link(store("pair", [1, 2]), "output", calc, "b")  # a container into a number pin: its length
    output("o_sum", "sum", calc, "result")
    combine = b.node(CombineTextsBlock, node_id="combine", delimiter="+")
    b.link(store("five", 5), "output", combine, "input")  # a scalar into list[str]: ["5"]
    output("o_text", "text", combine, "output")
    add = b.node(AddToListBlock, node_id="add", entry="y")
    b.link(store("x", "x"), "output", add, "list")  # a string into a list pin: ["x"]
    output("o_list", "list", add, "updated_list")
    template = b.node(FillTextTemplateBlock, node_id="template", values={})
    b.link(store("yes", True), "output", template, "format")  # a boolean into a text pin: "true"
    output("o_format", "format", template, "output")
    return b.build()


def test_rule4_linked_values_are_converted_to_the_pin_type(instance: DagsterInstance) -> None:
    assert _outputs(rule4_graph()) == {
        "sum": ["9.0"],
        "text": ['"5"'],
        "list": ['["x", "y"]'],
        "format": ['"true"'],
    }
    assert_follows_model(rule4_graph(), instance=instance)


# --- rule 5: dynamic source paths -----------------------------------------------------------------
def rule5_graph() -> Graph:
    b = GraphBuilder("rule 5")
    store = b.node(StoreValueBlock, node_id="store", input={"k": None, "j": 1})
    for name, pin in (
        ("k", "output_#_k"),
        ("attr", "output_@_j"),
        ("j", "output_#_j"),
        ("gone", "output_#_x"),
    ):
        b.node(AgentOutputBlock, node_id=f"o_{name}", name=name)
        b.link(store, pin, f"o_{name}", "value")
    return b.build()


def test_rule5_dynamic_paths_resolving_to_nothing_fire_nothing(instance: DagsterInstance) -> None:
    """`output_#_k` resolves to None: nothing fires; `output_@_j` reads an attribute, and a dict's
    keys are not attributes: nothing fires; `output_#_j` sends 1."""
    assert _outputs(rule5_graph()) == {"j": ["1"]}
    assert_follows_model(rule5_graph(), instance=instance)


# --- rule 6: None values are dropped before validation ---------------------------------------------
def rule6_graph() -> Graph:
    b = GraphBuilder("rule 6")
    empty = b.node(AgentOutputBlock, node_id="empty", name="empty")  # yields output=None
    two = b.node(StoreValueBlock, node_id="two", input=2)
    calc = b.node(CalculatorBlock, node_id="calc", operation="Add")
    b.link(empty, "output", calc, "a")
    b.link(two, "output", calc, "b")
    b.node(AgentOutputBlock, node_id="o_sum", name="sum")
    b.link(calc, "result", "o_sum", "value")
    add = b.node(AddToListBlock, node_id="add", entry="e")
    b.link(empty, "output", add, "list")
    b.node(AgentOutputBlock, node_id="o_list", name="list")
    b.link(add, "updated_list", "o_list", "value")
    return b.build()


def test_rule6_none_is_dropped_before_the_input_is_validated(instance: DagsterInstance) -> None:
    """AutoGPT validates the JSON schema with None values left out (`validate_data`): None into the
    required `a` leaves the Calculator execution invalid, so it is never queued (no run, no failure);
    None into the optional `list` leaves the pin to its default, so AddToList runs: ["e"].

    (Issue 12's rule 6 says the execution fails with its error pin firing; AutoGPT's code, the
    authority, never queues it. The model follows the code.)"""
    observed = model_side(rule6_graph())
    assert "calc" not in observed.counts and observed.failed == {}
    assert _outputs(rule6_graph()) == {"empty": ["null"], "list": ['["e"]']}
    assert_follows_model(rule6_graph(), instance=instance)


# --- rule 7: graph outputs are the AgentOutput's `value` input --------------------------------------
def rule7_graph() -> Graph:
    b = GraphBuilder("rule 7")
    store = b.node(StoreValueBlock, node_id="store", input=5)
    out = b.node(AgentOutputBlock, node_id="out", name="n", format="Value: {{ value }}")
    b.link(store, "output", out, "value")
    return b.build()


def test_rule7_outputs_are_the_value_not_the_formatted_text(instance: DagsterInstance) -> None:
    assert _outputs(rule7_graph()) == {"n": ["5"]}
    assert_follows_model(rule7_graph(), instance=instance)


# --- rule 8: a graph input without a value runs the same on both engines --------------------------
def rule8_graph() -> Graph:
    b = GraphBuilder("rule 8")
    question = b.node(AgentInputBlock, node_id="question", name="question")
    b.node(AgentOutputBlock, node_id="o_echo", name="echo")
    b.link(question, "result", "o_echo", "value")
    b.node(StoreValueBlock, node_id="store", input="still runs")
    b.node(AgentOutputBlock, node_id="o_other", name="other")
    b.link("store", "output", "o_other", "value")
    return b.build()


def test_rule8_graph_input_without_value_runs_and_yields_nothing(instance: DagsterInstance) -> None:
    """AutoGPT starts every input node; one without a value yields nothing (AgentInputBlock), and the
    rest of the graph runs. The compiled job must start too, not refuse its run config."""
    observed = model_side(rule8_graph())
    assert observed.counts == {"question": 1, "store": 1, "o_other": 1}
    assert_follows_model(rule8_graph(), instance=instance)


# --- rule 8: a region op sees its inputs in the order the reference engine produces them ----------
def region_order_graph() -> Graph:
    b = GraphBuilder("region order")
    three = b.node(StoreValueBlock, node_id="three", input=3)
    ones = b.node(StepThroughItemsBlock, node_id="ones", items=[1, 1])
    t = b.node(FillTextTemplateBlock, node_id="t", format="{{a}}|{{b}}", values={})
    b.link(three, "output", t, "values_#_a")
    b.link(three, "output", t, "values_#_a")
    b.link(ones, "item", t, "values_#_b")
    b.link(three, "output", t, "values_#_b")
    b.node(AgentOutputBlock, node_id="out", name="text")
    b.link(t, "output", "out", "value")
    return b.build()


def test_rule8_region_fed_by_two_starting_nodes_sees_them_in_run_order(instance: DagsterInstance) -> None:
    """`three` runs before `ones` (graph order, as on the reference engine): its two values on `a`
    and one on `b` give "3|3" twice, then each 1 reuses a=3. Fed in the other order (`ones` first,
    as Dagster happened to step them), the region gives "3|1" three times and "3|3" once."""
    assert _outputs(region_order_graph()) == {"text": ['"3|1"', '"3|1"', '"3|3"', '"3|3"']}
    assert_follows_model(region_order_graph(), instance=instance)


def never_ready_graph() -> Graph:
    b = GraphBuilder("never ready")
    source = b.node(AgentInputBlock, node_id="source", name="source", value={"j": [7, 8]})
    store = b.node(StoreValueBlock, node_id="store", input=0)
    b.link(source, "result", store, "input")
    b.link(source, "result_#_k", store, "data")  # the value has no `k`: this link never fires
    b.node(AgentOutputBlock, node_id="out", name="out")
    b.link(store, "output", "out", "value")
    return b.build()


def test_rule8_a_node_that_never_becomes_ready_leaves_the_other_counts_alone(
    instance: DagsterInstance,
) -> None:
    """`store` waits for `data` forever; the input node still ran once, on both engines."""
    assert model_side(never_ready_graph()).counts == {"source": 1}
    assert_follows_model(never_ready_graph(), instance=instance)
