"""Basic blocks: StoreValue and Note (AutoGPT blocks/basic.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

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
        BlockSelfTest(input={"input": "Hello, World!", "data": "Existing Data"},
                      output=[("output", "Existing Data")]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "output", input.data or input.input


class NoteBlock(Block):
    id = "cc10ff7b-7753-4ff2-9af6-9399b1a7eddc"
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
