"""The Block SDK: the generic self-test over every block, and malformed blocks failing loudly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from blocks import (
    REGISTRY,
    Block,
    BlockDefinitionError,
    BlockInput,
    BlockOutput,
    BlockRegistry,
    BlockSelfTest,
)
from blocks.library.basic import StoreValueBlock
from blocks.sdk import RunContext
from blocks.testing import self_test_failures


@pytest.mark.parametrize("block", list(REGISTRY), ids=lambda b: b.name)
def test_every_block_passes_its_own_self_tests(block: Block) -> None:
    assert block.self_tests, f"{block.name} declares no self-test"
    assert self_test_failures(block) == []


@pytest.mark.parametrize("block", list(REGISTRY), ids=lambda b: b.name)
def test_repeated_output_declarations_match_the_self_tests(block: Block) -> None:
    """The compiler trusts `repeated_output_pins`: a pin a self-test yields twice must be declared."""
    if block.repeated_output_pins is None:
        return  # any pin may repeat: nothing to contradict
    for case in block.self_tests:
        pins = [pin for pin, _ in case.output]
        repeated = {pin for pin in pins if pins.count(pin) > 1} - {"error"}
        assert repeated <= block.repeated_output_pins, f"{block.name} repeats {repeated}"


def test_self_test_reports_a_block_whose_output_differs() -> None:
    class Drifted(StoreValueBlock):
        id = "00000000-0000-4000-8000-0000000000d1"
        self_tests = (BlockSelfTest(input={"input": "x"}, output=[("output", "y")]),)

    class TooMany(StoreValueBlock):
        id = "00000000-0000-4000-8000-0000000000d2"
        self_tests = (BlockSelfTest(input={"input": "x"}, output=[("output", "x"), ("output", "x")]),)

    class Predicate(StoreValueBlock):
        id = "00000000-0000-4000-8000-0000000000d3"
        self_tests = (BlockSelfTest(input={"input": "x"}, output=[("output", lambda v: v == "z")]),)

    assert "expected ('output', 'y'), got ('output', 'x')" in self_test_failures(Drifted())[0]
    assert "expected 2 outputs, got 1" in self_test_failures(TooMany())[0]
    assert self_test_failures(Predicate())


def test_malformed_blocks_fail_at_definition() -> None:
    with pytest.raises(BlockDefinitionError, match="is not a UUID"):

        class BadId(Block):
            id = "not-a-uuid"
            description = "x"

            class Input(BlockInput):
                pass

            class Output(BlockOutput):
                pass

            async def run(self, input: Any, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
                yield "error", "x"

    with pytest.raises(BlockDefinitionError, match="run is not an async generator"):

        class NotAsync(Block):
            id = "00000000-0000-4000-8000-0000000000e1"
            description = "x"

            class Input(BlockInput):
                pass

            class Output(BlockOutput):
                pass

            def run(self, input: Any, ctx: RunContext) -> Any:  # type: ignore[override]
                return []

    with pytest.raises(BlockDefinitionError, match="undeclared output pin 'nope'"):

        class WrongTest(StoreValueBlock):
            id = "00000000-0000-4000-8000-0000000000e2"
            self_tests = (BlockSelfTest(input={"input": 1}, output=[("nope", 1)]),)


def test_duplicate_block_ids_fail_when_the_registry_is_built() -> None:
    class Twin(StoreValueBlock):
        id = StoreValueBlock.id

    with pytest.raises(BlockDefinitionError, match=f"duplicate block id {StoreValueBlock.id}"):
        BlockRegistry([StoreValueBlock, Twin])
