"""Maths blocks: Calculator and CountItems (AutoGPT blocks/maths.py)."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from enum import StrEnum
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


class Operation(StrEnum):
    ADD = "Add"
    SUBTRACT = "Subtract"
    MULTIPLY = "Multiply"
    DIVIDE = "Divide"
    POWER = "Power"


_OPERATIONS = {
    Operation.ADD: operator.add,
    Operation.SUBTRACT: operator.sub,
    Operation.MULTIPLY: operator.mul,
    Operation.DIVIDE: operator.truediv,
    Operation.POWER: operator.pow,
}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


class CalculatorBlock(Block):
    id = "b1ab9b19-67a6-406d-abf5-2dba76d00c79"
    repeated_output_pins = frozenset()
    description = (
        "Performs Add, Subtract, Multiply, Divide or Power on two numbers. Division by zero gives "
        "infinity; any other failure gives NaN."
    )
    categories = frozenset({BlockCategory.LOGIC})

    class Input(BlockInput):
        operation: Operation = Field(description="The math operation to perform")
        a: float = Field(description="The first number (A)")
        b: float = Field(description="The second number (B)")
        round_result: bool = Field(default=False, description="Whether to round the result to a whole number")

    class Output(BlockOutput):
        result: float = Field(description="The result of the calculation")

    self_tests = (
        BlockSelfTest(
            input={"operation": "Add", "a": 10.0, "b": 5.0, "round_result": False}, output=[("result", 15.0)]
        ),
        BlockSelfTest(input={"operation": "Divide", "a": 1, "b": 0}, output=[("result", float("inf"))]),
        BlockSelfTest(input={"operation": "Power", "a": 10, "b": 1000}, output=[("result", _is_nan)]),
        BlockSelfTest(
            input={"operation": "Divide", "a": 7, "b": 2, "round_result": True}, output=[("result", 4.0)]
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            if input.operation is Operation.DIVIDE and input.b == 0:
                raise ZeroDivisionError("Cannot divide by zero")
            result = _OPERATIONS[input.operation](input.a, input.b)
            if isinstance(result, complex):  # e.g. a negative base to a fractional power
                raise ValueError("the result is not a real number")
            if input.round_result:
                result = round(result)
        except ZeroDivisionError:
            result = float("inf")
        except Exception:
            result = float("nan")
        yield "result", result


class CountItemsBlock(Block):
    id = "3c9c2f42-b0c3-435f-ba35-05f7a25c772a"
    repeated_output_pins = frozenset()
    description = (
        "Counts the items of a collection (list, dictionary, string or other iterable); -1 when the "
        "input cannot be counted."
    )
    categories = frozenset({BlockCategory.LOGIC})

    class Input(BlockInput):
        collection: Any = Field(description="The collection to count: a list, dictionary, string or iterable")

    class Output(BlockOutput):
        count: int = Field(description="The number of items in the collection")

    self_tests = (
        BlockSelfTest(input={"collection": [1, 2, 3, 4, 5]}, output=[("count", 5)]),
        BlockSelfTest(input={"collection": {"a": 1, "b": 2}}, output=[("count", 2)]),
        BlockSelfTest(input={"collection": "hello"}, output=[("count", 5)]),
        BlockSelfTest(input={"collection": 42}, output=[("count", -1)]),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        collection = input.collection
        try:
            if isinstance(collection, str | list | tuple | set | dict):
                count = len(collection)
            elif hasattr(collection, "__iter__"):
                count = sum(1 for _ in collection)
            else:
                raise ValueError("Input is not a countable collection")
        except Exception:
            count = -1
        yield "count", count
