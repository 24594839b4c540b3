"""The blocks the AutoGPT model (tests/autogpt_model.py) knows: tiny pure re-implementations of what
AutoGPT's blocks do, with the pin annotations `convert` works from. Keyed by AutoGPT's block ids
(this project's blocks carry the same ids)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Yields = Iterator[tuple[str, Any]]


@dataclass(frozen=True)
class ModelBlock:
    name: str
    pins: Mapping[str, Any]  # input pin -> its annotation (what `convert` targets)
    required: frozenset[str]
    defaults: Mapping[str, Any]  # schema defaults
    run: Callable[[dict[str, Any]], Yields]
    static_output: bool = False
    kind: str = "standard"  # "input", "output"


def _store_value(i: dict[str, Any]) -> Yields:
    yield "output", i.get("data") or i["input"]


_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "Add": lambda a, b: a + b,
    "Subtract": lambda a, b: a - b,
    "Multiply": lambda a, b: a * b,
}


def _calculator(i: dict[str, Any]) -> Yields:
    result = _OPERATIONS[i["operation"]](i["a"], i["b"])
    yield "result", float(round(result)) if i.get("round_result") else result


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _fill_template(i: dict[str, Any]) -> Yields:
    # Jinja prints Python's str() of a value; the families' templates are plain placeholders.
    yield "output", _PLACEHOLDER.sub(lambda m: str(i["values"].get(m.group(1), "")), i["format"])


def _agent_input(i: dict[str, Any]) -> Yields:
    if i.get("value") is not None:
        yield "result", i["value"]


def _agent_output(i: dict[str, Any]) -> Yields:
    yield "output", i.get("value")
    yield "name", i["name"]


def _add_to_list(i: dict[str, Any]) -> Yields:
    added = list(i.get("entries", []))
    if i.get("entry"):
        added.append(i["entry"])
    yield "updated_list", list(i.get("list", [])) + added


def _step_through(i: dict[str, Any]) -> Yields:
    for key, item in enumerate(i.get("items", [])):
        yield "item", item
        yield "key", key


def _combine_texts(i: dict[str, Any]) -> Yields:
    yield "output", i.get("delimiter", "").join(i.get("input", []))


def _find_in_dictionary(i: dict[str, Any]) -> Yields:
    # The dictionary case only: what the ported tests use.
    obj, key = i["input"], i["key"]
    if isinstance(obj, dict) and key in obj:
        yield "output", obj[key]
    else:
        yield "missing", obj


def _number_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    ">": lambda a, b: a > b,
}


def _condition(i: dict[str, Any]) -> Yields:
    # Numeric strings compare as numbers; yes/no values default to value1/value2.
    value1, value2 = _number_or_text(i["value1"]), _number_or_text(i["value2"])
    result = _COMPARISONS[i["operator"]](value1, value2)
    yield "result", result
    if result:
        yield "yes_output", value1 if i.get("yes_value") is None else i["yes_value"]
    else:
        yield "no_output", value2 if i.get("no_value") is None else i["no_value"]


def _block(
    name: str, pins: Mapping[str, Any], required: set[str], run: Callable[..., Yields], **kw: Any
) -> ModelBlock:
    return ModelBlock(name=name, pins=pins, required=frozenset(required), run=run, **kw)


# Keyed by AutoGPT's block ids (this project's blocks carry the same ids).
MODEL_BLOCKS: dict[str, ModelBlock] = {
    "1ff065e9-88e8-4358-9d82-8dc91f622ba9": _block(
        "StoreValue", {"input": Any, "data": Any}, {"input"}, _store_value, defaults={}, static_output=True
    ),
    "b1ab9b19-67a6-406d-abf5-2dba76d00c79": _block(
        "Calculator",
        {"operation": Any, "a": float, "b": float, "round_result": bool},
        {"operation", "a", "b"},
        _calculator,
        defaults={"round_result": False},
    ),
    "db7d8f02-2f44-4c55-ab7a-eae0941f0c30": _block(
        "FillTextTemplate",
        {"values": dict[str, Any], "format": str, "escape_html": bool},
        {"values", "format"},
        _fill_template,
        defaults={},
    ),
    "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b": _block(
        "AgentInput",
        {"name": str, "value": Any},
        {"name"},
        _agent_input,
        defaults={},
        static_output=True,
        kind="input",
    ),
    "363ae599-353e-4804-937e-b2ee3cef3da4": _block(
        "AgentOutput",
        {"value": Any, "name": str, "format": str},
        {"name"},
        _agent_output,
        defaults={"format": ""},
        static_output=True,
        kind="output",
    ),
    "aeb08fc1-2fc1-4141-bc8e-f758f183a822": _block(
        "AddToList",
        {"list": list[Any], "entry": Any, "entries": list[Any], "position": Any},
        set(),
        _add_to_list,
        defaults={},
    ),
    "f66a3543-28d3-4ab5-8945-9b336371e2ce": _block(
        "StepThroughItems", {"items": list[Any]}, set(), _step_through, defaults={}
    ),
    "0e50422c-6dee-4145-83d6-3a5a392f65de": _block(
        "FindInDictionary", {"input": Any, "key": Any}, {"input", "key"}, _find_in_dictionary, defaults={}
    ),
    "715696a0-e1da-45c8-b209-c2fa9c3b0be6": _block(
        "Condition",
        {"value1": Any, "operator": Any, "value2": Any, "yes_value": Any, "no_value": Any},
        {"value1", "operator", "value2"},
        _condition,
        defaults={},
    ),
    "e30a4d42-7b7d-4e6a-b36e-1f9b8e3b7d85": _block(
        "CombineTexts", {"input": list[str], "delimiter": str}, set(), _combine_texts, defaults={}
    ),
}
