"""Dictionary and list blocks (AutoGPT blocks/data_manipulation.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    RunContext,
)

# --- dictionaries ---------------------------------------------------------------------------------


class CreateDictionaryBlock(Block):
    id = "b924ddf4-de4f-4b56-9a85-358930dcbc91"
    repeated_output_pins = frozenset()
    description = "Creates a dictionary from the given key-value pairs."
    categories = frozenset({BlockCategory.DATA})

    class Input(BlockInput):
        values: dict[str, Any] = Field(description="Key-value pairs to create the dictionary with")

    class Output(BlockOutput):
        dictionary: dict[str, Any] = Field(description="The created dictionary")

    self_tests = (
        BlockSelfTest(
            input={"values": {"name": "Alice", "age": 25, "city": "New York"}},
            output=[("dictionary", {"name": "Alice", "age": 25, "city": "New York"})],
        ),
        BlockSelfTest(
            input={"values": {"numbers": [1, 2, 3], "active": True, "score": 95.5}},
            output=[("dictionary", {"numbers": [1, 2, 3], "active": True, "score": 95.5})],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "dictionary", input.values


class AddToDictionaryBlock(Block):
    id = "31d1064e-7446-4693-a7d4-65e5ca1180d1"
    repeated_output_pins = frozenset()
    description = (
        "Adds `key`: `value` (when the key is set and the value is not None) and every pair of "
        "`entries` to a copy of the dictionary (a new one when none is given)."
    )
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        dictionary: dict[Any, Any] = Field(default_factory=dict, description="The dictionary to add to")
        key: str = Field(default="", description="The key for the new entry")
        value: Any = Field(default=None, description="The value for the new entry")
        entries: dict[Any, Any] = Field(default_factory=dict, description="Several entries to add at once")

    class Output(BlockOutput):
        updated_dictionary: dict[Any, Any] = Field(description="The dictionary with the new entries")

    self_tests = (
        BlockSelfTest(
            input={"dictionary": {"existing_key": "existing_value"}, "key": "new_key", "value": "new_value"},
            output=[("updated_dictionary", {"existing_key": "existing_value", "new_key": "new_value"})],
        ),
        BlockSelfTest(
            input={"key": "first_key", "value": "first_value"},
            output=[("updated_dictionary", {"first_key": "first_value"})],
        ),
        BlockSelfTest(
            input={
                "dictionary": {"existing_key": "existing_value"},
                "entries": {"new_key": "new_value", "first_key": "first_value"},
            },
            output=[
                (
                    "updated_dictionary",
                    {"existing_key": "existing_value", "new_key": "new_value", "first_key": "first_value"},
                )
            ],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        updated = dict(input.dictionary)
        if input.value is not None and input.key:
            updated[input.key] = input.value
        updated.update(input.entries)
        yield "updated_dictionary", updated


class FindInDictionaryBlock(Block):
    id = "0e50422c-6dee-4145-83d6-3a5a392f65de"
    repeated_output_pins = frozenset()
    description = (
        "Looks up a key in a dictionary (or a JSON string of one), an index in a list, a key across a "
        "list of dictionaries, or an attribute of an object. Outputs `missing` with the input otherwise."
    )
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        input: Any = Field(description="Dictionary, list or object to look up from")
        key: str | int = Field(description="Key or index to look up")

    class Output(BlockOutput):
        output: Any = Field(description="Value found for the given key")
        missing: Any = Field(description="The input, when it lacks the key")

    self_tests = (
        BlockSelfTest(
            input={"input": {"apple": 1, "banana": 2, "cherry": 3}, "key": "banana"}, output=[("output", 2)]
        ),
        BlockSelfTest(
            input={"input": {"x": 10, "y": 20, "z": 30}, "key": "w"},
            output=[("missing", {"x": 10, "y": 20, "z": 30})],
        ),
        BlockSelfTest(input={"input": [1, 2, 3], "key": 1}, output=[("output", 2)]),
        BlockSelfTest(input={"input": [1, 2, 3], "key": 3}, output=[("missing", [1, 2, 3])]),
        BlockSelfTest(
            input={"input": [{"k1": "v1"}, {"k2": "v2"}, {"k1": "v3"}], "key": "k1"},
            output=[("output", ["v1", "v3"])],
        ),
        BlockSelfTest(input={"input": '{"a": {"b": 1}}', "key": "a"}, output=[("output", {"b": 1})]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        obj = input.input
        key = input.key
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except ValueError as exc:
                raise ValueError(f"FindInDictionary: `input` is a string but not valid JSON: {exc}") from exc

        if isinstance(obj, dict):
            if key in obj:
                yield "output", obj[key]
            else:
                # AutoGPT would fall through to getattr here and could return a dict method
                # (e.g. key "items"); a missing key is reported as missing instead.
                yield "missing", input.input
        elif isinstance(obj, list) and isinstance(key, int):
            if 0 <= key < len(obj):
                yield "output", obj[key]
            else:
                yield "missing", input.input
        elif isinstance(obj, list):
            if not obj:
                yield "output", []
            elif isinstance(obj[0], dict) and key in obj[0]:
                yield "output", [item[key] for item in obj if key in item]
            else:
                yield (
                    "output",
                    [getattr(item, key) for item in obj if not isinstance(item, dict) and hasattr(item, key)],
                )
        elif isinstance(key, str) and hasattr(obj, key):
            yield "output", getattr(obj, key)
        else:
            yield "missing", input.input


# --- lists ----------------------------------------------------------------------------------------

# Several models have a pin called `list`, which shadows the builtin inside their class bodies.
AnyList = list[Any]


def _empty_list() -> AnyList:
    return []


def _estimate_tokens(value: Any) -> int:
    """Rough token count (about four characters a token) of a value's text or JSON form.

    AutoGPT counts with tiktoken's gpt-4o encoding; that dependency is not installed here.
    """
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return (len(text) + 3) // 4


class CreateListBlock(Block):
    id = "a912d5c7-6e00-4542-b2a9-8034136930e4"
    repeated_output_pins = frozenset({"list"})
    description = (
        "Creates a list of the given values; with `max_size` or `max_tokens`, yields it in chunks "
        "that respect those limits."
    )
    categories = frozenset({BlockCategory.DATA})

    class Input(BlockInput):
        values: AnyList = Field(description="The values to put in the list")
        max_size: int | None = Field(default=None, description="Maximum items per yielded chunk")
        max_tokens: int | None = Field(default=None, description="Maximum (estimated) tokens per chunk")

    class Output(BlockOutput):
        list: AnyList = Field(description="The created list (or one chunk of it)")

    self_tests = (
        BlockSelfTest(input={"values": ["Alice", 25, True]}, output=[("list", ["Alice", 25, True])]),
        BlockSelfTest(
            input={"values": [1, 2, 3, "four", {"key": "value"}]},
            output=[("list", [1, 2, 3, "four", {"key": "value"}])],
        ),
        BlockSelfTest(
            input={"values": [1, 2, 3, 4, 5], "max_size": 2},
            output=[("list", [1, 2]), ("list", [3, 4]), ("list", [5])],
        ),
        BlockSelfTest(input={"values": []}, output=[("list", [])]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        max_size, max_tokens = input.max_size, input.max_tokens
        chunk: list[Any] = []
        size = tokens = 0
        for value in input.values:
            cost = _estimate_tokens(value) if max_tokens else 0
            if (max_tokens and tokens + cost > max_tokens) or (max_size and size + 1 > max_size):
                yield "list", chunk
                chunk, size, tokens = [value], 1, cost
            else:
                chunk.append(value)
                size, tokens = size + 1, tokens + cost
        if chunk or not input.values:
            yield "list", chunk


class AddToListBlock(Block):
    id = "aeb08fc1-2fc1-4141-bc8e-f758f183a822"
    repeated_output_pins = frozenset()
    description = (
        "Adds `entries` and then `entry` (only when it is truthy) to a copy of the list, at "
        "`position` or at the end (a new list when none is given)."
    )
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        list: AnyList = Field(default_factory=_empty_list, description="The list to add to")
        entry: Any = Field(default=None, description="The entry to add; skipped when falsy")
        entries: AnyList = Field(default_factory=_empty_list, description="Several entries to add at once")
        position: int | None = Field(default=None, description="Where to insert; the end when not set")

    class Output(BlockOutput):
        updated_list: AnyList = Field(description="The list with the new entries")

    self_tests = (
        BlockSelfTest(
            input={
                "list": [1, "string", {"existing_key": "existing_value"}],
                "entry": {"new_key": "new_value"},
                "position": 1,
            },
            output=[
                ("updated_list", [1, {"new_key": "new_value"}, "string", {"existing_key": "existing_value"}])
            ],
        ),
        BlockSelfTest(input={"entry": "first_entry"}, output=[("updated_list", ["first_entry"])]),
        BlockSelfTest(
            input={"list": ["a", "b", "c"], "entry": "d"}, output=[("updated_list", ["a", "b", "c", "d"])]
        ),
        BlockSelfTest(
            input={"entry": "e", "entries": ["f", "g"], "list": ["a", "b"], "position": 1},
            output=[("updated_list", ["a", "f", "g", "e", "b"])],
        ),
        BlockSelfTest(input={"list": ["a"], "entry": ""}, output=[("updated_list", ["a"])]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        added = list(input.entries)
        if input.entry:
            added.append(input.entry)
        current = input.list
        pos = input.position
        yield "updated_list", (current + added if pos is None else current[:pos] + added + current[pos:])


class RemoveFromListBlock(Block):
    id = "d93c5a93-ac7e-41c1-ae5c-ef67e6e9b826"
    repeated_output_pins = frozenset()
    description = "Removes an item from a list by index (preferred) or by value."
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        list: AnyList = Field(description="The list to modify")
        value: Any = Field(default=None, description="Value to remove from the list")
        index: int | None = Field(default=None, description="Index of the item to pop (negative allowed)")
        return_item: bool = Field(default=False, description="Whether to output the removed item")

    class Output(BlockOutput):
        updated_list: AnyList = Field(description="The list after removal")
        removed_item: Any = Field(description="The removed item, when requested")

    self_tests = (
        BlockSelfTest(
            input={"list": [1, 2, 3], "index": 1, "return_item": True},
            output=[("updated_list", [1, 3]), ("removed_item", 2)],
        ),
        BlockSelfTest(input={"list": ["a", "b", "c"], "value": "b"}, output=[("updated_list", ["a", "c"])]),
        BlockSelfTest(input={"list": ["a"], "value": "z"}, output=[("error", "Index or value not found")]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        remaining = list(input.list)
        try:
            if input.index is not None:
                removed = remaining.pop(input.index)
            elif input.value is not None:
                remaining.remove(input.value)
                removed = input.value
            else:
                raise ValueError("No index or value provided for removal")
        except (IndexError, ValueError):
            yield "error", "Index or value not found"
            return
        yield "updated_list", remaining
        if input.return_item:
            yield "removed_item", removed


class GetListItemBlock(Block):
    id = "262ca24c-1025-43cf-a578-534e23234e97"
    repeated_output_pins = frozenset()
    description = "Outputs the element at the given 0-based index (negative indices count from the end)."
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        list: AnyList = Field(description="The list to get the item from")
        index: int = Field(description="The 0-based index of the item (negative allowed)")

    class Output(BlockOutput):
        item: Any = Field(description="The item at the index")

    self_tests = (
        BlockSelfTest(input={"list": [1, 2, 3], "index": 1}, output=[("item", 2)]),
        BlockSelfTest(input={"list": [1, 2, 3], "index": -1}, output=[("item", 3)]),
        BlockSelfTest(input={"list": [], "index": 0}, output=[("error", "Index out of range")]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            item = input.list[input.index]
        except IndexError:
            yield "error", "Index out of range"
            return
        yield "item", item


class ListIsEmptyBlock(Block):
    id = "896ed73b-27d0-41be-813c-c1c1dc856c03"
    repeated_output_pins = frozenset()
    description = "Checks whether a list is empty."
    categories = frozenset({BlockCategory.BASIC})

    class Input(BlockInput):
        list: AnyList = Field(description="The list to check")

    class Output(BlockOutput):
        is_empty: bool = Field(description="True if the list is empty")

    self_tests = (
        BlockSelfTest(input={"list": []}, output=[("is_empty", True)]),
        BlockSelfTest(input={"list": [1]}, output=[("is_empty", False)]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "is_empty", not input.list
