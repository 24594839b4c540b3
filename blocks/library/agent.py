"""AgentExecutorBlock: runs another stored graph as a sub-agent (AutoGPT blocks/agent.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import Field

from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockInputError,
    BlockOutput,
    BlockSelfTest,
    BlockType,
    RunContext,
    schema_json_type,
)


def _schema_pins(schema: Any) -> dict[str, str | None]:
    if not isinstance(schema, Mapping):
        return {}
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return {}
    defs = schema.get("$defs") or {}
    return {
        str(name): schema_json_type(prop, defs) if isinstance(prop, Mapping) else None
        for name, prop in props.items()
    }


class AgentExecutorBlock(Block):
    """Its input pins are the child graph's input names and its output pins the child's outputs,
    both taken from the node's `input_schema` / `output_schema`, as in AutoGPT."""

    id = "e189baac-8c20-45a1-94a7-55177ea42565"
    description = "Runs another agent graph (pinned by version) and yields each of its outputs."
    categories = frozenset({BlockCategory.AGENT})
    block_type = BlockType.AGENT

    class Input(BlockInput):
        user_id: str = Field(default="", description="Ignored: a sub-agent runs as the parent run's user")
        graph_id: str = Field(description="Graph id of the sub-agent")
        graph_version: int = Field(description="Graph version of the sub-agent")
        inputs: dict[str, Any] = Field(default_factory=dict, description="Inputs for the sub-agent")
        input_schema: dict[str, Any] = Field(default_factory=dict, description="The sub-agent's input schema")
        output_schema: dict[str, Any] = Field(
            default_factory=dict, description="The sub-agent's output schema"
        )

    class Output(BlockOutput):
        pass

    _OWN_PINS = frozenset(Input.model_fields)

    def input_pins(self, input_default: Mapping[str, Any]) -> Mapping[str, str | None]:
        return {**self._static_input_pins, **_schema_pins(input_default.get("input_schema"))}

    def output_pins(self, input_default: Mapping[str, Any]) -> Mapping[str, str | None]:
        return {"error": "string", **_schema_pins(input_default.get("output_schema"))}

    def required_inputs(self, input_default: Mapping[str, Any]) -> frozenset[str]:
        schema = input_default.get("input_schema")
        required = schema.get("required", []) if isinstance(schema, Mapping) else []
        given = input_default.get("inputs")
        given = given if isinstance(given, Mapping) else {}
        own = super().required_inputs(input_default)
        return own | frozenset(str(r) for r in required if r not in given)

    def make_input(self, data: Mapping[str, Any]) -> BlockInput:
        """Linked pins are the child's inputs: fold them into `inputs` over its defaults."""
        child_inputs = dict(data.get("inputs") or {})
        child_inputs.update({k: v for k, v in data.items() if k not in self._OWN_PINS})
        own = {k: v for k, v in data.items() if k in self._OWN_PINS}
        own["inputs"] = child_inputs
        model = super().make_input(own)
        schema = own.get("input_schema") or {}
        missing = [r for r in schema.get("required", []) if r not in child_inputs]
        if missing:
            raise BlockInputError([(str(m), "sub-agent input is required") for m in missing])
        return model

    def validate_output(self, pin: str, value: Any) -> Any:
        return value  # pins are the child's output names; their values were validated in the child

    self_tests = (
        BlockSelfTest(
            input={"graph_id": "g", "graph_version": 1, "inputs": {"q": "x"}},
            output=[("answer", "x!"), ("answer", "x!!")],
            mocks={"_run_child": lambda input, ctx: _fake_child(input.inputs["q"])},
        ),
    )

    def _run_child(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        return ctx.run_subgraph(input.graph_id, input.graph_version, input.inputs, ctx)

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        async for name, value in self._run_child(input, ctx):
            yield name, value


async def _fake_child(question: str) -> AsyncIterator[tuple[str, Any]]:
    yield "answer", question + "!"
    yield "answer", question + "!!"
