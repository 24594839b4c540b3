"""AutoGPT's own executor tests about graph semantics, ported to this project's blocks.

Each test names its upstream test (Significant-Gravitas/AutoGPT, autogpt_platform/backend/backend/,
module::function). Upstream runs them on its executor with a database; here each graph runs on the
reference engine and on the compiled job, both checked against the upstream test's expectations and
against the AutoGPT model (tests/autogpt_model.py). PrintToConsoleBlock, which this project does not
have, is replaced by an AgentOutput where the upstream test reads a node's output. Older copies of
the same tests live upstream in test/executor/test_manager.py and test/executor/
test_execution_functions.py; the cases with Python objects (`_@_` on a MockObject) and tool pins
have no counterpart in JSON graphs and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from autogpt_compare import assert_follows_model
from dagster import DagsterInstance

from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from blocks.library.basic import StoreValueBlock
from blocks.library.data import FindInDictionaryBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.text import FillTextTemplateBlock


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _values(observed: Any, name: str) -> list[str]:
    return sorted(observed.outputs.get(name, {}).elements())


def sample_graph() -> Graph:
    """usecases/sample.py::create_test_graph: two inputs into a template, into a StoreValue."""
    b = GraphBuilder("sample")
    first = b.node(AgentInputBlock, node_id="input_1", name="input_1")
    second = b.node(
        AgentInputBlock,
        node_id="input_2",
        name="input_2",
        description="This is my description of this parameter",
    )
    fill = b.node(FillTextTemplateBlock, node_id="fill", format="{{a}}, {{b}}{{c}}", **{"values_#_c": "!!!"})
    store = b.node(StoreValueBlock, node_id="store")
    b.link(first, "result", fill, "values_#_a")
    b.link(second, "result", fill, "values_#_b")
    b.link(fill, "output", store, "input")
    b.node(AgentOutputBlock, node_id="printed", name="printed")
    b.link(store, "output", "printed", "value")
    return b.build()


def test_agent_execution(instance: DagsterInstance) -> None:
    """executor/manager_test.py::test_agent_execution: 4 node executions (5 with our AgentOutput);
    the template joins both inputs with the `values_#_c` default: "Hello, World!!!"."""
    observed = assert_follows_model(sample_graph(), {"input_1": "Hello", "input_2": "World"}, instance)
    assert _values(observed, "printed") == ['"Hello, World!!!"']
    assert observed.counts == {"input_1": 1, "input_2": 1, "fill": 1, "store": 1, "printed": 1}


def test_input_pin_always_waited(instance: DagsterInstance) -> None:
    """executor/manager_test.py::test_input_pin_always_waited: a linked pin is waited for even when
    its default is set; FindInDictionary runs once, with both linked values: "value2"."""
    b = GraphBuilder("input pin always waited")
    data = b.node(StoreValueBlock, node_id="data", input={"key1": "value1", "key2": "value2"})
    key = b.node(StoreValueBlock, node_id="key", input="key2")
    find = b.node(FindInDictionaryBlock, node_id="find", key="", input={})
    b.link(data, "output", find, "input")
    b.link(key, "output", find, "key")
    b.node(AgentOutputBlock, node_id="found", name="found")
    b.link(find, "output", "found", "value")
    observed = assert_follows_model(b.build(), instance=instance)
    assert observed.counts["find"] == 1
    assert _values(observed, "found") == ['"value2"']


def test_static_input_link_on_graph(instance: DagsterInstance) -> None:
    """executor/manager_test.py::test_static_input_link_on_graph: three values wait on pin `a`;
    the static `b` (5) arriving later completes all three: 8 executions, the last three 4+5=9."""
    b = GraphBuilder("static input link")
    calc = b.node(CalculatorBlock, node_id="calc", operation="Add")
    for i in range(3):
        b.link(b.node(StoreValueBlock, node_id=f"a{i}", input=4), "output", calc, "a")
    five = b.node(StoreValueBlock, node_id="five", input=5)
    relay = b.node(StoreValueBlock, node_id="relay")
    b.link(five, "output", relay, "input")
    b.link(relay, "output", calc, "b", static=True)
    b.node(AgentOutputBlock, node_id="sum", name="sum")
    b.link(calc, "result", "sum", "value")
    observed = assert_follows_model(b.build(), instance=instance)
    assert _values(observed, "sum") == ["9.0", "9.0", "9.0"]
    upstream_nodes = {"a0", "a1", "a2", "five", "relay", "calc"}
    assert sum(n for node, n in observed.counts.items() if node in upstream_nodes) == 8


def preset_graph() -> Graph:
    b = GraphBuilder("preset")
    dictionary = b.node(AgentInputBlock, node_id="dictionary", name="dictionary")
    selected = b.node(AgentInputBlock, node_id="selected_value", name="selected_value")
    store = b.node(StoreValueBlock, node_id="store", input={"key1": "Hi", "key2": "Everyone"})
    find = b.node(FindInDictionaryBlock, node_id="find", key="", input={})
    b.link(dictionary, "result", store, "input")
    b.link(selected, "result", find, "key")
    b.link(store, "output", find, "input")
    b.node(AgentOutputBlock, node_id="found", name="found")
    b.link(find, "output", "found", "value")
    return b.build()


PRESET = {"dictionary": {"key1": "Hello", "key2": "World"}, "selected_value": "key2"}


def test_execute_preset(instance: DagsterInstance) -> None:
    """executor/manager_test.py::test_execute_preset: the graph inputs reach the input nodes and
    replace the StoreValue's default: 4 executions, "World"."""
    observed = assert_follows_model(preset_graph(), PRESET, instance)
    assert _values(observed, "found") == ['"World"']
    assert sum(n for node, n in observed.counts.items() if node != "found") == 4


def test_execute_preset_with_clash(instance: DagsterInstance) -> None:
    """executor/manager_test.py::test_execute_preset_with_clash: an input given at run time wins over
    the preset's value for the same input: "Hello"."""
    observed = assert_follows_model(preset_graph(), {**PRESET, "selected_value": "key1"}, instance)
    assert _values(observed, "found") == ['"Hello"']


# --- executor/utils_test.py: dynamic pins, through links ------------------------------------------
PARSE_CASES: list[tuple[Any, str, Any]] = [  # a yielded value, a link's source path, what it carries
    ("value", "output", "value"),
    ([10, 20, 30], "output_$_1", 20),
    ({"key1": "value1", "key2": "value2"}, "output_#_key1", "value1"),
    ([[1, 2], [3, 4]], "output_$_0_$_1", 2),
    ([[1, 2], [3, 4]], "output_$_1_$_0", 3),
    ([{"key1": "value1"}, {"key2": "value2"}], "output_$_0_#_key1", "value1"),
    ([{"key1": "value1"}, {"key2": "value2"}], "output_$_1_#_key2", "value2"),
    ({"key1": [1, 2], "key2": [3, 4]}, "output_#_key1_$_1", 2),
    ({"key1": [1, 2], "key2": [3, 4]}, "output_#_key2_$_0", 3),
    ([[{"key": [1, 2]}], [3, 4]], "output_$_0_$_0_#_key_$_1", 2),
]
MISSING_CASES: list[tuple[Any, str]] = [  # paths that resolve to nothing: the link does not fire
    ([1, 2, 3], "output_$_5"),
    ([1, 2, 3], "output_#_key"),
    ([1, 2, 3], "output_@_attr"),
    ([{"key": [1, 2]}], "output_$_0_#_wrong_key"),
    ([{"key": [1, 2]}], "output_$_0_#_key_$_5"),
    ([{"key": [1, 2]}], "output_$_0_@_attr"),
    ({"key": [1, 2]}, "output_#_key_$_1_@_attr"),
    ({"key": [1, 2]}, "output_@_attr_$_0_#_key"),
]


def test_parse_execution_output(instance: DagsterInstance) -> None:
    """executor/utils_test.py::test_parse_execution_output (also test/executor/
    test_execution_functions.py::test_parse_execution_output; the cases without Python objects or tool
    pins): a link from `output_$_1`, `output_#_key1`, ... carries that part of the yielded value;
    a path that does not resolve fires nothing."""
    b = GraphBuilder("parse execution output")
    for i, (value, path, _) in enumerate(PARSE_CASES):
        b.node(StoreValueBlock, node_id=f"hit{i}", input=value)
        b.node(AgentOutputBlock, node_id=f"out_hit{i}", name=f"hit{i}")
        b.link(f"hit{i}", path, f"out_hit{i}", "value")
    for i, (value, path) in enumerate(MISSING_CASES):
        b.node(StoreValueBlock, node_id=f"miss{i}", input=value)
        b.node(AgentOutputBlock, node_id=f"out_miss{i}", name=f"miss{i}")
        b.link(f"miss{i}", path, f"out_miss{i}", "value")
    observed = assert_follows_model(b.build(), instance=instance)
    assert {name: _values(observed, name) for name in observed.outputs} == {
        f"hit{i}": [json.dumps(expected)] for i, (_, _, expected) in enumerate(PARSE_CASES)
    }


MERGE_CASES: list[tuple[dict[str, Any], Any]] = [  # values on dynamic sink pins of `input`, merged
    ({"input_$_0": "a", "input_$_1": "b"}, ["a", "b"]),
    ({"input_#_key1": "value1", "input_#_key2": "value2"}, {"key1": "value1", "key2": "value2"}),
    ({"input_$_0_$_0": "a", "input_$_0_$_1": "b", "input_$_1_$_0": "c"}, [["a", "b"], ["c"]]),
    (
        {"input_$_0_#_key1": "value1", "input_$_0_#_key2": "value2", "input_$_1_#_key3": "value3"},
        [{"key1": "value1", "key2": "value2"}, {"key3": "value3"}],
    ),
    (
        {"input_#_key1_$_0": "value1", "input_#_key1_$_1": "value2", "input_#_key2_$_0": "value3"},
        {"key1": ["value1", "value2"], "key2": ["value3"]},
    ),
    ({"input_$_0_#_key_$_0": "value1", "input_$_0_#_key_$_1": "value2"}, [{"key": ["value1", "value2"]}]),
]


@pytest.mark.parametrize(("pins", "expected"), MERGE_CASES, ids=[f"case{i}" for i in range(len(MERGE_CASES))])
def test_merge_execution_input(pins: dict[str, Any], expected: Any, instance: DagsterInstance) -> None:
    """executor/utils_test.py::test_merge_execution_input (also test/executor/
    test_execution_functions.py::test_merge_execution_input; the list and dict cases): values linked
    into `input_$_0`, `input_#_key1`, ... are merged into the `input` a StoreValue outputs."""
    b = GraphBuilder("merge execution input")
    store = b.node(StoreValueBlock, node_id="store")
    for pin, value in pins.items():
        source = b.node(StoreValueBlock, node_id=f"v_{pin}", input=value)
        b.link(source, "output", store, pin)
    b.node(AgentOutputBlock, node_id="merged", name="merged")
    b.link(store, "output", "merged", "value")
    observed = assert_follows_model(b.build(), instance=instance)
    assert _values(observed, "merged") == [json.dumps(expected, sort_keys=True)]


def input_schema_graph() -> Graph:
    """test/data/test_graph.py::test_get_input_schema's graph: two inputs (one with a default value,
    one without) into one StoreValue pin, into an output."""
    b = GraphBuilder("input schema")
    b.node(AgentInputBlock, node_id="node_0_a", name="in_key_a", title="Key A", value="A", advanced=True)
    b.node(AgentInputBlock, node_id="node_0_b", name="in_key_b", advanced=True)
    b.node(StoreValueBlock, node_id="node_1")
    b.node(AgentOutputBlock, node_id="node_2", name="out_key", description="This is an output key")
    b.link("node_0_a", "result", "node_1", "input")
    b.link("node_0_b", "result", "node_1", "input")
    b.link("node_1", "output", "node_2", "value")
    return b.build()


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [({}, ['"A"']), ({"in_key_b": "B"}, ['"A"', '"B"']), ({"in_key_a": "X"}, ['"X"'])],
    ids=["defaults", "both", "override"],
)
def test_get_input_schema_graph_runs(
    inputs: dict[str, Any], expected: list[str], instance: DagsterInstance
) -> None:
    """test/data/test_graph.py::test_get_input_schema (upstream checks the graph's input schema:
    `in_key_a` defaults to "A", `in_key_b` has no default). Run here: an input left out yields
    nothing, each value that arrives runs the StoreValue once."""
    observed = assert_follows_model(input_schema_graph(), inputs, instance)
    assert _values(observed, "out_key") == expected
