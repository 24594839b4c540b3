"""Graph input and output blocks (AutoGPT blocks/io.py).

The engine delivers a graph input to its input node as the `value` pin and collects every `output` an
AgentOutput node yields into the run's outputs under the node's `name`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import AliasChoices, Field

from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    BlockType,
    RunContext,
)
from blocks.templating import TemplateStopped, render_template_async

# --- input blocks ---------------------------------------------------------------------------------


class _AgentInputFields(BlockInput):
    """The pins every graph-input block shares; variants narrow the type of `value`."""

    name: str = Field(description="The name of the input")
    value: Any = Field(default=None, description="The value to be passed as input")
    title: str | None = Field(default=None, description="The title of the input")
    description: str | None = Field(default=None, description="The description of the input")
    placeholder_values: list[Any] = Field(
        default_factory=list, description="Suggested values for the input (a dropdown's choices)"
    )
    advanced: bool = Field(
        default=False,
        description="Whether to show the input in the advanced section, if the field is not required",
    )
    secret: bool = Field(default=False, description="Whether the input should be treated as a secret")


class _AgentInputBase(Block):
    """Shared behaviour of the graph-input blocks: forward `value` unless it is None."""

    categories = frozenset({BlockCategory.INPUT, BlockCategory.BASIC})
    block_type = BlockType.INPUT
    static_output = True

    async def run(self, input: Any, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        if input.value is not None:
            yield "result", input.value


class AgentInputBlock(_AgentInputBase):
    id = "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b"
    repeated_output_pins = frozenset()
    description = "Provides a graph input: outputs the value passed in (nothing when it is None)."

    class Input(_AgentInputFields):
        pass

    class Output(BlockOutput):
        result: Any = Field(description="The value passed as input")

    self_tests = (
        BlockSelfTest(
            input={
                "value": "Hello, World!",
                "name": "input_1",
                "description": "Example test input.",
                "placeholder_values": [],
            },
            output=[("result", "Hello, World!")],
        ),
        BlockSelfTest(
            input={"value": "Hello, World!", "name": "input_2", "placeholder_values": ["Hello, World!"]},
            output=[("result", "Hello, World!")],
        ),
        BlockSelfTest(input={"value": 42, "name": "input_3"}, output=[("result", 42)]),
        BlockSelfTest(input={"name": "input_4"}, output=[]),
    )


class AgentShortTextInputBlock(_AgentInputBase):
    id = "7fcd3bcb-8e1b-4e69-903d-32d3d4a92158"
    repeated_output_pins = frozenset()
    description = "Graph input for short (single-line) text."

    class Input(_AgentInputFields):
        value: str | None = Field(
            default=None, description="Short text input", json_schema_extra={"format": "short-text"}
        )

    class Output(BlockOutput):
        result: str = Field(description="Short text result")

    self_tests = (
        BlockSelfTest(
            input={"value": "Hello", "name": "short_text_1", "placeholder_values": []},
            output=[("result", "Hello")],
        ),
        BlockSelfTest(
            input={
                "value": "Quick test",
                "name": "short_text_2",
                "placeholder_values": ["Quick test", "Another option"],
            },
            output=[("result", "Quick test")],
        ),
    )


class AgentLongTextInputBlock(_AgentInputBase):
    id = "90a56ffb-7024-4b2b-ab50-e26c5e5ab8ba"
    repeated_output_pins = frozenset()
    description = "Graph input for long (multi-line) text."

    class Input(_AgentInputFields):
        value: str | None = Field(
            default=None,
            description="Long text input (potentially multi-line)",
            json_schema_extra={"format": "long-text"},
        )

    class Output(BlockOutput):
        result: str = Field(description="Long text result")

    self_tests = (
        BlockSelfTest(
            input={"value": "Lorem ipsum dolor sit amet...", "name": "long_text_1"},
            output=[("result", "Lorem ipsum dolor sit amet...")],
        ),
        BlockSelfTest(
            input={"value": "Another multiline text input.", "name": "long_text_2"},
            output=[("result", "Another multiline text input.")],
        ),
    )


class AgentNumberInputBlock(_AgentInputBase):
    id = "96dae2bb-97a2-41c2-bd2f-13a3b5a8ea98"
    repeated_output_pins = frozenset()
    description = "Graph input for a whole number."

    class Input(_AgentInputFields):
        value: int | None = Field(default=None, description="Number input")

    class Output(BlockOutput):
        result: int = Field(description="Number result")

    self_tests = (
        BlockSelfTest(input={"value": 42, "name": "number_input_1"}, output=[("result", 42)]),
        BlockSelfTest(
            input={"value": 314, "name": "number_input_2", "placeholder_values": [314, 2718]},
            output=[("result", 314)],
        ),
    )


class AgentDropdownInputBlock(_AgentInputBase):
    id = "655d6fdf-a334-421c-b733-520549c07cd1"
    repeated_output_pins = frozenset()
    description = "Graph input chosen from a dropdown of `options` (older exports: `placeholder_values`)."

    class Input(_AgentInputFields):
        value: str | None = Field(default=None, description="Text selected from a dropdown")
        # Newer exports name the choices `options`; older ones `placeholder_values` (AutoGPT reads
        # either into `options`, with a validation alias).
        options: list[Any] = Field(
            default_factory=list,
            validation_alias=AliasChoices("options", "placeholder_values"),
            description="The dropdown's choices; empty for free text",
        )

    class Output(BlockOutput):
        result: str = Field(description="Selected dropdown value")

    self_tests = (
        BlockSelfTest(
            input={
                "value": "Option A",
                "name": "dropdown_1",
                "placeholder_values": ["Option A", "Option B", "Option C"],
            },
            output=[("result", "Option A")],
        ),
        BlockSelfTest(
            input={
                "value": "Option C",
                "name": "dropdown_2",
                "placeholder_values": ["Option A", "Option B", "Option C"],
            },
            output=[("result", "Option C")],
        ),
    )


class AgentToggleInputBlock(_AgentInputBase):
    id = "cbf36ab5-df4a-43b6-8a7f-f7ed8652116e"
    repeated_output_pins = frozenset()
    description = "Graph input for a boolean toggle."

    class Input(_AgentInputFields):
        value: bool = Field(default=False, description="Boolean toggle input")

    class Output(BlockOutput):
        result: bool = Field(description="Boolean toggle result")

    self_tests = (
        BlockSelfTest(input={"value": True, "name": "toggle_1"}, output=[("result", True)]),
        BlockSelfTest(input={"value": False, "name": "toggle_2"}, output=[("result", False)]),
    )


# --- output block ---------------------------------------------------------------------------------


class AgentOutputBlock(Block):
    id = "363ae599-353e-4804-937e-b2ee3cef3da4"
    repeated_output_pins = frozenset()
    description = (
        "Records a graph output. With `format`, outputs the Jinja template rendered with "
        "{name: value}; otherwise outputs the value and its name."
    )
    categories = frozenset({BlockCategory.OUTPUT, BlockCategory.BASIC})
    block_type = BlockType.OUTPUT
    static_output = True

    class Input(BlockInput):
        value: Any = Field(default=None, description="The value to be recorded as output")
        name: str = Field(description="The name of the output")
        title: str | None = Field(default=None, description="The title of the output")
        description: str | None = Field(default=None, description="The description of the output")
        format: str = Field(
            default="", description="Jinja2 template used to format the value; the value is named `name`"
        )
        escape_html: bool = Field(
            default=False, description="Whether to HTML-escape the values inserted by `format`"
        )
        advanced: bool = Field(default=False, description="Whether to treat the output as advanced")
        secret: bool = Field(default=False, description="Whether the output should be treated as a secret")

    class Output(BlockOutput):
        output: Any = Field(description="The value recorded as output")
        name: Any = Field(description="The name of the value recorded as output")

    self_tests = (
        BlockSelfTest(
            input={"value": "Hello, World!", "name": "output_1", "format": "{{ output_1 }}!!"},
            output=[("output", "Hello, World!!!")],
        ),
        BlockSelfTest(
            input={"value": "42", "name": "output_2", "format": "{{ output_2 }}"}, output=[("output", "42")]
        ),
        BlockSelfTest(
            input={"value": {"a": 1}, "name": "output_3"}, output=[("output", {"a": 1}), ("name", "output_3")]
        ),
        BlockSelfTest(
            input={"value": "<b>", "name": "html", "format": "{{ html }}", "escape_html": True},
            output=[("output", "&lt;b&gt;")],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        if input.format:
            try:
                values = {input.name: input.value}
                rendered = await render_template_async(input.format, values, input.escape_html)
            except TemplateStopped as exc:  # a runaway template fails the node (not AutoGPT's "Error:" text)
                yield "error", str(exc)
                return
            except Exception as exc:
                yield "output", f"Error: {exc}, {input.value}"
            else:
                yield "output", rendered
        else:
            yield "output", input.value
            yield "name", input.name
