"""Iteration block: StepThroughItems (AutoGPT blocks/iteration.py)."""

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

# AutoGPT's limits against runaway iterations.
MAX_ITEMS = 10_000
MAX_ITEMS_STR_SIZE = 1024 * 1024


def _empty_list() -> list[Any]:
    return []


class StepThroughItemsBlock(Block):
    id = "f66a3543-28d3-4ab5-8945-9b336371e2ce"
    repeated_output_pins = frozenset({"item", "key"})
    description = (
        "Iterates over a list or dictionary (from `items`, `items_object` or the JSON `items_str`, in "
        "that order) and outputs each `item` followed by its `key` (dictionary key or list index)."
    )
    categories = frozenset({BlockCategory.LOGIC})

    class Input(BlockInput):
        items: list[Any] = Field(default_factory=_empty_list, description="The list of items to iterate over")
        items_object: dict[Any, Any] = Field(
            default_factory=dict, description="The dictionary of items to iterate over"
        )
        items_str: str = Field(default="", description="A JSON list or dictionary of items to iterate over")

    class Output(BlockOutput):
        item: Any = Field(description="The current item")
        key: Any = Field(description="The key or index of the current item")

    self_tests = (
        BlockSelfTest(
            input={"items": [1, 2, 3, {"key1": "value1", "key2": "value2"}]},
            output=[
                ("item", 1),
                ("key", 0),
                ("item", 2),
                ("key", 1),
                ("item", 3),
                ("key", 2),
                ("item", {"key1": "value1", "key2": "value2"}),
                ("key", 3),
            ],
        ),
        BlockSelfTest(
            input={"items_object": {"a": 1, "b": 2}},
            output=[("item", 1), ("key", "a"), ("item", 2), ("key", "b")],
        ),
        BlockSelfTest(
            input={"items_str": '["x", "y"]'}, output=[("item", "x"), ("key", 0), ("item", "y"), ("key", 1)]
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        for source in (input.items, input.items_object, input.items_str):
            if not source:
                continue
            if isinstance(source, str):
                if len(source) > MAX_ITEMS_STR_SIZE:
                    raise ValueError(f"Input too large: {len(source)} bytes > {MAX_ITEMS_STR_SIZE} bytes")
                try:
                    items = json.loads(source)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"items_str is not valid JSON: {exc}") from exc
                if not isinstance(items, list | dict):
                    raise ValueError(f"items_str must hold a JSON list or object, not {type(items).__name__}")
            else:
                items = source
            if len(items) > MAX_ITEMS:
                raise ValueError(f"Too many items: {len(items)} > {MAX_ITEMS}")
            pairs = items.items() if isinstance(items, dict) else enumerate(items)
            for key, item in pairs:
                yield "item", item
                yield "key", key
