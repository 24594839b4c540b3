"""Behaviour tests for the io, data, basic (type converter), iteration and maths blocks."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

import blocks
from blocks.library.basic import UniversalTypeConverterBlock
from blocks.library.data import (
    AddToDictionaryBlock,
    AddToListBlock,
    CreateListBlock,
    FindInDictionaryBlock,
    GetListItemBlock,
    RemoveFromListBlock,
)
from blocks.library.io import (
    AgentDropdownInputBlock,
    AgentInputBlock,
    AgentNumberInputBlock,
    AgentOutputBlock,
    AgentShortTextInputBlock,
    AgentToggleInputBlock,
)
from blocks.library.iteration import MAX_ITEMS, StepThroughItemsBlock
from blocks.library.maths import CalculatorBlock, CountItemsBlock
from blocks.sdk import Block, BlockType, RunContext
from blocks.testing import self_test_failures


def run_block(block_cls: type[Block], **inputs: Any) -> list[tuple[str, Any]]:
    block = block_cls()
    data = block.Input.model_validate(inputs)

    async def collect() -> list[tuple[str, Any]]:
        return [
            (pin, block.validate_output(pin, value)) async for pin, value in block.run(data, RunContext())
        ]

    return asyncio.run(collect())


MY_BLOCK_IDS = {
    "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b": "AgentInputBlock",
    "7fcd3bcb-8e1b-4e69-903d-32d3d4a92158": "AgentShortTextInputBlock",
    "90a56ffb-7024-4b2b-ab50-e26c5e5ab8ba": "AgentLongTextInputBlock",
    "96dae2bb-97a2-41c2-bd2f-13a3b5a8ea98": "AgentNumberInputBlock",
    "655d6fdf-a334-421c-b733-520549c07cd1": "AgentDropdownInputBlock",
    "cbf36ab5-df4a-43b6-8a7f-f7ed8652116e": "AgentToggleInputBlock",
    "363ae599-353e-4804-937e-b2ee3cef3da4": "AgentOutputBlock",
    "0e50422c-6dee-4145-83d6-3a5a392f65de": "FindInDictionaryBlock",
    "b924ddf4-de4f-4b56-9a85-358930dcbc91": "CreateDictionaryBlock",
    "31d1064e-7446-4693-a7d4-65e5ca1180d1": "AddToDictionaryBlock",
    "a912d5c7-6e00-4542-b2a9-8034136930e4": "CreateListBlock",
    "aeb08fc1-2fc1-4141-bc8e-f758f183a822": "AddToListBlock",
    "d93c5a93-ac7e-41c1-ae5c-ef67e6e9b826": "RemoveFromListBlock",
    "262ca24c-1025-43cf-a578-534e23234e97": "GetListItemBlock",
    "896ed73b-27d0-41be-813c-c1c1dc856c03": "ListIsEmptyBlock",
    "95d1b990-ce13-4d88-9737-ba5c2070c97b": "UniversalTypeConverterBlock",
    "f66a3543-28d3-4ab5-8945-9b336371e2ce": "StepThroughItemsBlock",
    "b1ab9b19-67a6-406d-abf5-2dba76d00c79": "CalculatorBlock",
    "3c9c2f42-b0c3-435f-ba35-05f7a25c772a": "CountItemsBlock",
}


# --- registry and self-tests ----------------------------------------------------------------------


@pytest.mark.parametrize("block_id", sorted(MY_BLOCK_IDS))
def test_registered_under_autogpt_id_and_self_tests_pass(block_id: str) -> None:
    block = blocks.REGISTRY.get(block_id)
    assert block is not None, f"{MY_BLOCK_IDS[block_id]} is not registered"
    assert block.name == MY_BLOCK_IDS[block_id]
    assert block.self_tests, "every block declares at least one self-test"
    assert self_test_failures(block) == []


def test_input_and_output_blocks_are_static_and_typed() -> None:
    for cls in (AgentInputBlock, AgentShortTextInputBlock, AgentNumberInputBlock, AgentToggleInputBlock):
        assert cls.block_type is BlockType.INPUT and cls.static_output
    assert AgentOutputBlock.block_type is BlockType.OUTPUT and AgentOutputBlock.static_output
    assert AgentNumberInputBlock().input_pins({})["value"] == "integer"
    assert AgentShortTextInputBlock().input_pins({})["value"] == "string"
    assert AgentToggleInputBlock().input_pins({})["value"] == "boolean"
    assert AgentInputBlock().input_pins({})["value"] is None


# --- AgentInput / AgentOutput ---------------------------------------------------------------------


def test_agent_input_yields_nothing_for_none() -> None:
    assert run_block(AgentInputBlock, name="q") == []
    assert run_block(AgentInputBlock, name="q", value=None) == []
    assert run_block(AgentShortTextInputBlock, name="q", value=None) == []
    assert run_block(AgentDropdownInputBlock, name="q", placeholder_values=["a", "b"]) == []


def test_agent_input_forwards_falsy_but_not_none_values() -> None:
    assert run_block(AgentInputBlock, name="q", value="") == [("result", "")]
    assert run_block(AgentInputBlock, name="q", value=0) == [("result", 0)]
    assert run_block(AgentToggleInputBlock, name="t", value=False) == [("result", False)]
    # The toggle's default is False, not None, so it always yields.
    assert run_block(AgentToggleInputBlock, name="t") == [("result", False)]


def test_agent_output_without_format_yields_value_then_name() -> None:
    assert run_block(AgentOutputBlock, name="answer", value=[1, 2]) == [
        ("output", [1, 2]),
        ("name", "answer"),
    ]


def test_agent_output_format_renders_with_name_only_output() -> None:
    out = run_block(AgentOutputBlock, name="who", value={"n": "Ada"}, format="Hi {{ who.n }}!")
    assert out == [("output", "Hi Ada!")]


def test_agent_output_format_filter_is_printf_style() -> None:
    assert run_block(AgentOutputBlock, name="x", value=1.5, format='{{ x|format("%.2f") }}') == [
        ("output", "1.50")
    ]


def test_agent_output_escape_html_switch() -> None:
    plain = run_block(AgentOutputBlock, name="x", value="<i>&", format="{{ x }}")
    escaped = run_block(AgentOutputBlock, name="x", value="<i>&", format="{{ x }}", escape_html=True)
    assert plain == [("output", "<i>&")]
    assert escaped == [("output", "&lt;i&gt;&amp;")]


def test_agent_output_bad_template_reports_error_text_as_output() -> None:
    [(pin, value)] = run_block(AgentOutputBlock, name="x", value="v", format="{{ x ")
    assert pin == "output"
    assert value.startswith("Error: ") and value.endswith(", v")


def test_agent_output_template_is_sandboxed_and_limited() -> None:
    [(_, unsafe)] = run_block(AgentOutputBlock, name="x", value="v", format="{{ x.__class__.__mro__ }}")
    assert unsafe.startswith("Error: ") and "unsafe" in unsafe
    [(_, huge)] = run_block(AgentOutputBlock, name="x", value=2, format="{{ x ** 100000 }}")
    assert huge.startswith("Error: ")
    [(_, big_range)] = run_block(AgentOutputBlock, name="x", value=1, format="{{ range(10**6) | list }}")
    assert big_range.startswith("Error: ")


# --- AddToList / AddToDictionary / lists -----------------------------------------------------------


@pytest.mark.parametrize("falsy", [None, "", 0, False, [], {}])
def test_add_to_list_skips_falsy_entry(falsy: Any) -> None:
    assert run_block(AddToListBlock, list=["a"], entry=falsy) == [("updated_list", ["a"])]
    assert run_block(AddToListBlock, list=["a"], entry=falsy, entries=["b"]) == [("updated_list", ["a", "b"])]


def test_add_to_list_does_not_mutate_input_and_inserts_at_position() -> None:
    original = ["a", "b"]
    out = run_block(AddToListBlock, list=original, entry="x", entries=["y"], position=-1)
    assert out == [("updated_list", ["a", "y", "x", "b"])]
    assert original == ["a", "b"]


def test_add_to_dictionary_needs_key_and_non_none_value() -> None:
    assert run_block(AddToDictionaryBlock, dictionary={"a": 1}, key="b", value=None) == [
        ("updated_dictionary", {"a": 1})
    ]
    assert run_block(AddToDictionaryBlock, dictionary={"a": 1}, key="", value=2) == [
        ("updated_dictionary", {"a": 1})
    ]
    assert run_block(AddToDictionaryBlock, key="b", value=0) == [("updated_dictionary", {"b": 0})]


def test_remove_and_get_list_item_errors() -> None:
    assert run_block(RemoveFromListBlock, list=[1, 2]) == [("error", "Index or value not found")]
    assert run_block(RemoveFromListBlock, list=[1, 2], index=5) == [("error", "Index or value not found")]
    assert run_block(GetListItemBlock, list=[1, 2], index=2) == [("error", "Index out of range")]


def test_create_list_chunks_by_size() -> None:
    out = run_block(CreateListBlock, values=list(range(5)), max_size=2)
    assert out == [("list", [0, 1]), ("list", [2, 3]), ("list", [4])]


# --- FindInDictionary -----------------------------------------------------------------------------


def test_find_in_dictionary_missing_yields_the_original_input() -> None:
    assert run_block(FindInDictionaryBlock, input={"a": 1}, key="b") == [("missing", {"a": 1})]
    assert run_block(FindInDictionaryBlock, input=[1, 2], key=2) == [("missing", [1, 2])]
    assert run_block(FindInDictionaryBlock, input=[1, 2], key=-1) == [("missing", [1, 2])]
    assert run_block(FindInDictionaryBlock, input=None, key="a") == [("missing", None)]


def test_find_in_dictionary_does_not_return_dict_methods() -> None:
    assert run_block(FindInDictionaryBlock, input={"a": 1}, key="items") == [("missing", {"a": 1})]


def test_find_in_dictionary_falsy_found_value_is_output_not_missing() -> None:
    assert run_block(FindInDictionaryBlock, input={"a": None}, key="a") == [("output", None)]
    assert run_block(FindInDictionaryBlock, input={"a": 0}, key="a") == [("output", 0)]


def test_find_in_dictionary_lists_of_dicts_json_strings_and_objects() -> None:
    rows = [{"k": 1}, {"j": 2}, {"k": 3}]
    assert run_block(FindInDictionaryBlock, input=rows, key="k") == [("output", [1, 3])]
    assert run_block(FindInDictionaryBlock, input=[], key="k") == [("output", [])]
    assert run_block(FindInDictionaryBlock, input=json.dumps({"k": [1]}), key="k") == [("output", [1])]

    class Thing:
        colour = "red"

    assert run_block(FindInDictionaryBlock, input=Thing(), key="colour") == [("output", "red")]
    with pytest.raises(ValueError, match="not valid JSON"):
        run_block(FindInDictionaryBlock, input="{not json", key="k")


# --- StepThroughItems -----------------------------------------------------------------------------


def test_step_through_items_yields_item_then_key_in_order() -> None:
    out = run_block(StepThroughItemsBlock, items=["a", "b"])
    assert out == [("item", "a"), ("key", 0), ("item", "b"), ("key", 1)]
    out = run_block(StepThroughItemsBlock, items_object={"x": 1, "y": 2})
    assert out == [("item", 1), ("key", "x"), ("item", 2), ("key", "y")]


def test_step_through_items_walks_every_non_empty_source_in_turn() -> None:
    out = run_block(StepThroughItemsBlock, items=[10], items_object={"k": 20}, items_str='{"s": 30}')
    assert out == [("item", 10), ("key", 0), ("item", 20), ("key", "k"), ("item", 30), ("key", "s")]


def test_step_through_items_cap() -> None:
    at_cap = run_block(StepThroughItemsBlock, items=list(range(MAX_ITEMS)))
    assert MAX_ITEMS == 10_000
    assert len(at_cap) == 2 * MAX_ITEMS
    assert at_cap[-2:] == [("item", MAX_ITEMS - 1), ("key", MAX_ITEMS - 1)]
    with pytest.raises(ValueError, match=r"Too many items: 10001 > 10000"):
        run_block(StepThroughItemsBlock, items=list(range(MAX_ITEMS + 1)))
    with pytest.raises(ValueError, match="Too many items"):
        run_block(StepThroughItemsBlock, items_str=json.dumps({str(i): i for i in range(MAX_ITEMS + 1)}))


def test_step_through_items_bad_items_str() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        run_block(StepThroughItemsBlock, items_str="[1, 2")
    with pytest.raises(ValueError, match="Input too large"):
        run_block(StepThroughItemsBlock, items_str="[" + " " * (1024 * 1024) + "]")
    assert run_block(StepThroughItemsBlock) == []


# --- Calculator / CountItems ----------------------------------------------------------------------


def calc(operation: str, a: float, b: float, round_result: bool = False) -> float:
    [(pin, value)] = run_block(CalculatorBlock, operation=operation, a=a, b=b, round_result=round_result)
    assert pin == "result"
    return value


def test_calculator_operations() -> None:
    assert calc("Add", 2, 3) == 5
    assert calc("Subtract", 2, 3) == -1
    assert calc("Multiply", 2, 3) == 6
    assert calc("Divide", 3, 2) == 1.5
    assert calc("Power", 2, 10) == 1024
    assert calc("Divide", 10, 3, round_result=True) == 3


def test_calculator_division_by_zero_is_positive_infinity() -> None:
    assert calc("Divide", 1, 0) == math.inf
    assert calc("Divide", -1, 0) == math.inf
    assert calc("Divide", 0, 0) == math.inf


def test_calculator_other_errors_are_nan() -> None:
    assert math.isnan(calc("Power", 10, 10_000))  # OverflowError
    assert math.isnan(calc("Power", -8, 0.5))  # complex result
    assert calc("Power", 0, -1) == math.inf  # pow raises ZeroDivisionError, which AutoGPT maps to inf
    assert math.isnan(calc("Add", math.inf, 1, round_result=True))


def test_count_items() -> None:
    assert run_block(CountItemsBlock, collection=[1, 2, 3]) == [("count", 3)]
    assert run_block(CountItemsBlock, collection="") == [("count", 0)]
    assert run_block(CountItemsBlock, collection=None) == [("count", -1)]
    assert run_block(CountItemsBlock, collection=3.5) == [("count", -1)]


# --- UniversalTypeConverter -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [
        ("hello", "string", "hello"),
        (5, "string", "5"),
        ({"a": [1, True, None]}, "string", '{"a": [1, true, null]}'),
        (None, "string", "null"),
        ("3.5", "number", 3.5),
        (" 7 ", "number", 7.0),
        ("abc", "number", 0.0),
        (None, "number", 0.0),
        ([1, 2, 3], "number", 3.0),
        (True, "number", 1.0),
        ("TRUE", "boolean", True),
        ("1", "boolean", True),
        ("yes", "boolean", False),
        ("", "boolean", False),
        (0, "boolean", False),
        ([0], "boolean", True),
        ("[1, 2]", "list", [1, 2]),
        ("  [bad json] ", "list", ["[bad json]"]),
        ("  text ", "list", ["text"]),
        (5, "list", [5]),
        ({"a": 1}, "list", [["a", 1]]),
        ('{"a": 1}', "dictionary", {"a": 1}),
        ("[1]", "dictionary", {"value": [1]}),
        ("nope", "dictionary", {"value": "nope"}),
        (["x", "y"], "dictionary", {"0": "x", "1": "y"}),
        (3, "dictionary", {"value": 3}),
    ],
)
def test_type_converter(value: Any, target: str, expected: Any) -> None:
    out = run_block(UniversalTypeConverterBlock, value=value, type=target)
    assert out == [("value", expected)]
    assert type(out[0][1]) is type(expected)


def test_type_converter_unserialisable_value_is_an_error() -> None:
    [(pin, message)] = run_block(UniversalTypeConverterBlock, value={1, 2}, type="string")
    assert pin == "error"
    assert message.startswith("Failed to convert value")


def test_type_converter_rejects_unknown_type() -> None:
    with pytest.raises(ValueError):
        UniversalTypeConverterBlock.Input.model_validate({"value": 1, "type": "float"})
