"""Both engines against an independent model of AutoGPT's execution rules (tests/autogpt_model.py).

One plain test per rule of issue 12 (each the smallest graph found that told the engines apart from
AutoGPT; the expected values are worked out by hand from AutoGPT's code and checked on the model
too), then generated graphs from three families: static links, type conversion, dynamic paths. Each
graph runs on the model, on the reference engine and on the compiled job with regions; outputs (as
multisets per name), node execution counts and node failures must be the same.

Arrival orders are scripted with one StepThroughItems node over dictionaries: a link from
`item_#_a` fires only for the items that have an `a`, so one node yields the values for several
pins in exactly the order a test needs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from autogpt_compare import assert_follows_model, model_side
from dagster import DagsterInstance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from blocks.library.basic import StoreValueBlock
from blocks.library.branching import ConditionBlock
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


# --- generated graphs -----------------------------------------------------------------------------
STATIC_VALUES = st.sampled_from([1, 2, 3, "x"])
CONVERT_VALUES = st.sampled_from(
    [3, 2.5, "7", "2.5", "abc", "", True, False, 0, [1, 2], "[5, 6]", {"k": 4}, None]
)
DYNAMIC_VALUES = st.sampled_from([{"k": 1}, {"k": None}, {"j": [7, 8]}, {"k": {"k": 2}}, [1, 2], [3], 5])
SOURCE_PATHS = {  # output pin -> the dynamic paths the dynamic family links from
    "item": ["item_#_k", "item_@_k", "item_$_1", "item_#_j_$_0", "item_#_k_#_k"],
    "output": ["output_#_k", "output_$_0", "output_@_k"],
    "result": ["result_#_k"],
    "updated_list": ["updated_list_$_0"],
}
# block, defaults, sink pins
MIDDLES: list[tuple[Any, dict[str, Any], list[str]]] = [
    (CalculatorBlock, {"operation": "Add", "a": 0, "b": 0}, ["a", "b"]),
    (
        FillTextTemplateBlock,
        {"format": "{{a}}|{{b}}", "values": {"a": "-", "b": "-"}},
        ["values_#_a", "values_#_b"],
    ),
    (StoreValueBlock, {"input": 0}, ["input", "data"]),
    (AddToListBlock, {}, ["list", "entry"]),
    (CombineTextsBlock, {"delimiter": "+"}, ["input"]),
]
OUT_PINS = {
    CalculatorBlock: "result",
    FillTextTemplateBlock: "output",
    StoreValueBlock: "output",
    AddToListBlock: "updated_list",
    CombineTextsBlock: "output",
}


@st.composite
def family_graphs(draw: st.DrawFn, family: str) -> Graph:
    """Acyclic graphs (so every run ends): 1-3 sources (a stream, a StoreValue latch, a graph input),
    1-3 nodes each fed from earlier nodes (one source into several pins, static and non-static links
    mixed into one pin), and AgentOutputs on some of them."""
    values = {"static": STATIC_VALUES, "convert": CONVERT_VALUES, "dynamic": DYNAMIC_VALUES}[family]
    static_odds = 2 if family == "static" else 5
    b = GraphBuilder(f"{family} family")
    made: list[tuple[str, str]] = []  # node id, output pin
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["stream", "latch", "input"]))
        if kind == "stream":
            made.append(
                (
                    b.node(
                        StepThroughItemsBlock,
                        node_id=f"s{i}",
                        items=draw(st.lists(values, min_size=1, max_size=3)),
                    ),
                    "item",
                )
            )
        elif kind == "latch":
            # AutoGPT refuses to start a graph whose starting StoreValue holds None (a required pin).
            latch = draw(values.filter(lambda v: v is not None))
            made.append((b.node(StoreValueBlock, node_id=f"s{i}", input=latch), "output"))
        else:
            made.append(
                (b.node(AgentInputBlock, node_id=f"s{i}", name=f"in{i}", value=draw(values)), "result")
            )
    for j in range(draw(st.integers(1, 3))):
        block, defaults, pins = draw(st.sampled_from(MIDDLES))
        node = b.node(block, node_id=f"m{j}", **copy.deepcopy(defaults))
        chosen = draw(st.lists(st.sampled_from(pins), min_size=1, max_size=len(pins), unique=True))
        one_source = draw(st.sampled_from(made)) if family == "static" and draw(st.booleans()) else None
        for pin in chosen:
            for _ in range(draw(st.integers(1, 2))):
                source, out_pin = one_source or draw(st.sampled_from(made))
                if out_pin == "item" and draw(st.booleans()):
                    out_pin = "key"
                elif family == "dynamic" and draw(st.booleans()):
                    out_pin = draw(st.sampled_from(SOURCE_PATHS.get(out_pin, [out_pin])))
                b.link(source, out_pin, node, pin, static=draw(st.integers(0, static_odds)) == 0)
        made.append((node, OUT_PINS[block]))
    tails = [made[-1], *draw(st.lists(st.sampled_from(made), max_size=2))]
    for k, (source, out_pin) in enumerate(tails):
        sink = b.node(AgentOutputBlock, node_id=f"o{k}", name=f"out{k % 2}")
        b.link(source, out_pin, sink, "value")
    return b.build()


SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(graph=family_graphs("static"))
def test_static_link_family_follows_autogpt(graph: Graph) -> None:
    assert_follows_model(graph)


@SETTINGS
@given(graph=family_graphs("convert"))
def test_conversion_family_follows_autogpt(graph: Graph) -> None:
    assert_follows_model(graph)


@SETTINGS
@given(graph=family_graphs("dynamic"))
def test_dynamic_path_family_follows_autogpt(graph: Graph) -> None:
    assert_follows_model(graph)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=st.sampled_from(["static", "convert", "dynamic"]).flatmap(family_graphs))
def test_compiled_job_follows_autogpt(graph: Graph, instance: DagsterInstance) -> None:
    assert_follows_model(graph, instance=instance)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=family_graphs("static"))
def test_compiled_static_link_family_follows_autogpt(graph: Graph, instance: DagsterInstance) -> None:
    assert_follows_model(graph, instance=instance)


@st.composite
def loop_graphs(draw: st.DrawFn) -> Graph:
    """Count from a start to a limit: a cycle (so a region op in the compiled job) fed by StoreValue
    latches and graph inputs over static links; the step may come from a latch too. Node and link
    order are drawn: they decide which starting node runs first and which link a yield fires first."""
    nodes: list[tuple[Any, str, dict[str, Any]]] = [
        (StoreValueBlock, "start", {"input": draw(st.integers(0, 2))}),
        (CalculatorBlock, "inc", {"operation": "Add", "b": 1}),
        (ConditionBlock, "below", {"operator": "<"}),
        (AgentOutputBlock, "steps", {"name": "steps"}),
        (AgentOutputBlock, "final", {"name": "final"}),
    ]
    limit = draw(st.integers(0, 4))
    if draw(st.booleans()):
        nodes.append((StoreValueBlock, "limit", {"input": limit}))
    else:
        nodes.append((AgentInputBlock, "limit", {"name": "limit", "value": limit}))
    links = [
        ("start", "output", "inc", "a", False),
        ("inc", "result", "below", "value1", False),
        ("limit", "output" if nodes[-1][0] is StoreValueBlock else "result", "below", "value2", True),
        ("below", "yes_output", "inc", "a", draw(st.booleans())),
        ("inc", "result", "steps", "value", False),
        ("below", "no_output", "final", "value", False),
    ]
    if draw(st.booleans()):
        nodes.append((StoreValueBlock, "step", {"input": draw(st.sampled_from([1, 2, "1"]))}))
        links.append(("step", "output", "inc", "b", draw(st.booleans())))
    b = GraphBuilder("loop family")
    for block, node_id, defaults in draw(st.permutations(nodes)):
        b.node(block, node_id=node_id, **defaults)
    for source, source_pin, sink, sink_pin, static in draw(st.permutations(links)):
        b.link(source, source_pin, sink, sink_pin, static=static)
    return b.build()


@SETTINGS
@given(graph=loop_graphs())
def test_loop_family_follows_autogpt(graph: Graph) -> None:
    assert_follows_model(graph)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=loop_graphs())
def test_compiled_loop_regions_follow_autogpt(graph: Graph, instance: DagsterInstance) -> None:
    assert_follows_model(graph, instance=instance)
