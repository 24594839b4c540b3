"""Basic blocks: StoreValue, Note and UniversalTypeConverter (AutoGPT blocks/basic.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

from pydantic import Field

from blocks.conversion import convert
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    BlockType,
    RunContext,
)


class StoreValueBlock(Block):
    id = "1ff065e9-88e8-4358-9d82-8dc91f622ba9"
    repeated_output_pins = frozenset()
    description = (
        "Forwards the input data as output, or the trigger input when no data is set. "
        "Its output is static: later consumers reuse the latest value."
    )
    categories = frozenset({BlockCategory.BASIC})
    static_output = True

    class Input(BlockInput):
        input: Any = Field(description="Trigger; also the value output when `data` is not set")
        data: Any = Field(default=None, description="The value to store and output")

    class Output(BlockOutput):
        output: Any = Field(description="The stored value")

    self_tests = (
        BlockSelfTest(input={"input": "Hello, World!"}, output=[("output", "Hello, World!")]),
        BlockSelfTest(
            input={"input": "Hello, World!", "data": "Existing Data"}, output=[("output", "Existing Data")]
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "output", input.data or input.input


class NoteBlock(Block):
    id = "cc10ff7b-7753-4ff2-9af6-9399b1a7eddc"
    repeated_output_pins = frozenset()
    description = "A note on the canvas. The engine never executes it."
    categories = frozenset({BlockCategory.BASIC})
    block_type = BlockType.NOTE

    class Input(BlockInput):
        text: str = Field(default="", description="The note text")

    class Output(BlockOutput):
        output: str = Field(description="The note text")

    self_tests = (BlockSelfTest(input={"text": "Hello, World!"}, output=[("output", "Hello, World!")]),)

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "output", input.text


# --- type conversion (the rules of AutoGPT's backend/util/type.py `convert`: blocks/conversion.py) ---


def _to_dictionary(value: Any) -> dict[Any, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {"value": value}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    if isinstance(value, list | tuple):
        # AutoGPT uses int keys; downstream they arrive as JSON object keys, i.e. strings.
        return {str(i): item for i, item in enumerate(value)}
    return {"value": value}


class TypeOptions(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"
    DICTIONARY = "dictionary"


_CONVERTERS = {
    TypeOptions.STRING: lambda v: convert(v, str),
    TypeOptions.NUMBER: lambda v: convert(v, float),
    TypeOptions.BOOLEAN: lambda v: convert(v, bool),
    TypeOptions.LIST: lambda v: list(convert(v, list)),  # a copy, as AutoGPT's list(...) makes
    # Lists become string-keyed dictionaries here (they reach the next node as JSON object keys).
    TypeOptions.DICTIONARY: _to_dictionary,
}


def convert_value(value: Any, target: TypeOptions | str) -> Any:
    """Convert `value` to a string, number, boolean, list or dictionary as AutoGPT does."""
    return _CONVERTERS[TypeOptions(target)](value)


class UniversalTypeConverterBlock(Block):
    id = "95d1b990-ce13-4d88-9737-ba5c2070c97b"
    repeated_output_pins = frozenset()
    description = "Converts a value to a string, number, boolean, list or dictionary."
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        value: Any = Field(description="The value to convert")
        type: TypeOptions = Field(description="The type to convert the value to")

    class Output(BlockOutput):
        value: Any = Field(description="The converted value")

    self_tests = (
        BlockSelfTest(input={"value": "42", "type": "number"}, output=[("value", 42.0)]),
        BlockSelfTest(input={"value": {"a": 1}, "type": "string"}, output=[("value", '{"a": 1}')]),
        BlockSelfTest(input={"value": "true", "type": "boolean"}, output=[("value", True)]),
        BlockSelfTest(input={"value": "[1, 2]", "type": "list"}, output=[("value", [1, 2])]),
        BlockSelfTest(input={"value": "hello", "type": "dictionary"}, output=[("value", {"value": "hello"})]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            converted = convert_value(input.value, input.type)
        except Exception as exc:
            yield "error", f"Failed to convert value: Failed to convert {input.value} to {input.type}: {exc}"
            return
        yield "value", converted
