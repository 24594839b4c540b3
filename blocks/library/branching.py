"""Branching blocks: ConditionBlock and IfInputMatchesBlock (AutoGPT blocks/branching.py)."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Callable
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


class ComparisonOperator(StrEnum):
    EQUAL = "=="
    NOT_EQUAL = "!="
    GREATER_THAN = ">"
    LESS_THAN = "<"
    GREATER_THAN_OR_EQUAL = ">="
    LESS_THAN_OR_EQUAL = "<="


_COMPARE: dict[ComparisonOperator, Callable[[Any, Any], Any]] = {
    ComparisonOperator.EQUAL: operator.eq,
    ComparisonOperator.NOT_EQUAL: operator.ne,
    ComparisonOperator.GREATER_THAN: operator.gt,
    ComparisonOperator.LESS_THAN: operator.lt,
    ComparisonOperator.GREATER_THAN_OR_EQUAL: operator.ge,
    ComparisonOperator.LESS_THAN_OR_EQUAL: operator.le,
}


def _coerce(value: Any) -> Any:
    """A string that reads as a number becomes a float; any other string is stripped."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    try:
        return float(stripped)
    except ValueError:
        return stripped


class ConditionBlock(Block):
    id = "715696a0-e1da-45c8-b209-c2fa9c3b0be6"
    repeated_output_pins = frozenset()
    description = "Handles conditional logic based on comparison operators"
    categories = frozenset({BlockCategory.LOGIC})

    class Input(BlockInput):
        value1: Any = Field(description="The first value for comparison")
        operator: ComparisonOperator = Field(description="The comparison operator")
        value2: Any = Field(description="The second value for comparison")
        yes_value: Any = Field(
            default=None, description="Output if the condition is true; value1 when not set"
        )
        no_value: Any = Field(
            default=None, description="Output if the condition is false; value2 when not set"
        )

    class Output(BlockOutput):
        result: bool = Field(description="The result of the condition evaluation")
        yes_output: Any = Field(description="The output value if the condition is true")
        no_output: Any = Field(description="The output value if the condition is false")

    self_tests = (
        BlockSelfTest(
            input={
                "value1": 10,
                "operator": ">",
                "value2": 5,
                "yes_value": "Greater",
                "no_value": "Not greater",
            },
            output=[("result", True), ("yes_output", "Greater")],
        ),
        BlockSelfTest(
            input={"value1": " 3 ", "operator": ">=", "value2": "12"},
            output=[("result", False), ("no_output", 12.0)],
        ),
        BlockSelfTest(
            input={"value1": "abc", "operator": "<", "value2": 5},
            output=[("error", lambda e: "cannot compare" in e)],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        value1 = _coerce(input.value1)
        value2 = _coerce(input.value2)
        try:
            result = bool(_COMPARE[input.operator](value1, value2))
        except TypeError:
            yield (
                "error",
                (
                    f"cannot compare {value1!r} ({type(value1).__name__}) {input.operator.value} "
                    f"{value2!r} ({type(value2).__name__})"
                ),
            )
            return
        yield "result", result
        if result:
            yield "yes_output", value1 if input.yes_value is None else input.yes_value
        else:
            yield "no_output", value2 if input.no_value is None else input.no_value


class IfInputMatchesBlock(Block):
    id = "6dbbc4b3-ca6c-42b6-b508-da52d23e13f2"
    repeated_output_pins = frozenset()
    description = "Routes to yes_output when the input equals the given value, else to no_output"
    categories = frozenset({BlockCategory.LOGIC})

    class Input(BlockInput):
        input: Any = Field(description="The input to match against")
        value: Any = Field(description="The value to compare the input with")
        yes_value: Any = Field(default=None, description="The value to output if the input matches")
        no_value: Any = Field(default=None, description="The value to output if the input does not match")

    class Output(BlockOutput):
        result: bool = Field(description="Whether the input matched the value")
        yes_output: Any = Field(description="The output value if the input matches")
        no_output: Any = Field(description="The output value if the input does not match")

    self_tests = (
        BlockSelfTest(
            input={"input": 10, "value": 10, "yes_value": "Greater", "no_value": "Not greater"},
            output=[("result", True), ("yes_output", "Greater")],
        ),
        BlockSelfTest(
            input={"input": 10, "value": 20, "yes_value": "Greater", "no_value": "Not greater"},
            output=[("result", False), ("no_output", "Not greater")],
        ),
        BlockSelfTest(
            input={"input": 10, "value": None, "yes_value": "Yes", "no_value": "No"},
            output=[("result", False), ("no_output", "No")],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        if input.input is input.value or input.input == input.value:
            yield "result", True
            yield "yes_output", input.yes_value
        else:
            yield "result", False
            yield "no_output", input.no_value
