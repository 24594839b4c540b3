"""SmartDecisionMakerBlock (AutoGPT blocks/smart_decision_maker.py): tool calling over the graph.

Every link out of the node whose source pin is `tools_^_<tool>_~_<arg>` makes its sink node a tool:
`<tool>` is the sink block's name (for a sub-agent, the sub-graph's name) and `<arg>` the sink pin,
both lower-cased with anything but letters, digits, `_` and `-` turned into `_` (AutoGPT's `cleanup`).
The model sees one function per sink node; when it calls one, the block yields one value per
argument on exactly those pin names, so the engine's ordinary exact-name routing delivers them. The
tool's result comes back on `last_tool_output` and the conversation on `conversation_history`.

The block asks the engine for its outgoing links (`needs_outgoing_links`: `RunContext.outgoing_links`,
with each sink's block and defaults, and a sub-agent's name) and, like AutoGPT, starts without its
feedback pins: `conversation_history` and `last_tool_output` are `optional_link_pins`, and
`missing_inputs` holds an execution back while a tool call waits for its output, or while a tool
output waits for the conversation it answers.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from pydantic import Field

from blocks.library.llm import (
    DEFAULT_LLM_MODEL,
    TEST_CREDENTIALS,
    LlmBlock,
    LlmError,
    LlmResponse,
    ToolCall,
    as_messages,
    format_prompt,
    record_stats,
)
from blocks.sdk import (
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    BlockType,
    OutgoingLink,
    RunContext,
)

TOOL_PREFIX = "tools_^_"
TOOL_ARG_SPLIT = "_~_"
MAIN_OBJECTIVE_PREFIX = "[Main Objective Prompt]: "
DEFAULT_SYS_PROMPT = (
    "Thinking carefully step by step decide which function to call. "
    "Always choose a function call from the list of function signatures, "
    "and always provide the complete argument provided with the type "
    "matching the required jsonschema signature, no missing argument is allowed. "
    "If you have already completed the task objective, you can end the task "
    "by providing the end result of your work as a finish message. "
    "Function parameters that has no default value and not optional typed has to be provided. "
)


def cleanup(s: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", s).lower()


def is_tool_pin(name: str) -> bool:
    return name.startswith(TOOL_PREFIX) and TOOL_ARG_SPLIT in name[len(TOOL_PREFIX) :]


class _ToolPins(Mapping[str, str | None]):
    """The static output pins, plus every `tools_^_<tool>_~_<arg>` name (any type)."""

    def __init__(self, static: Mapping[str, str | None]) -> None:
        self._static = static

    def __getitem__(self, key: str) -> str | None:
        if key in self._static:
            return self._static[key]
        if is_tool_pin(key):
            return None
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._static or is_tool_pin(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._static)

    def __len__(self) -> int:
        return len(self._static)


# --- what the block knows of the graph ------------------------------------------------------------------
def tool_links(ctx: RunContext) -> list[OutgoingLink]:
    """The node's `tools_^_` links, as the engine hands them over (`needs_outgoing_links`)."""
    return [link for link in ctx.outgoing_links if link.source_pin.startswith(TOOL_PREFIX)]


def function_signatures(tools: list[OutgoingLink]) -> list[dict[str, Any]]:
    grouped: dict[str, list[OutgoingLink]] = {}
    for tool in tools:
        grouped.setdefault(tool.sink_node_id, []).append(tool)
    functions = []
    for links in grouped.values():
        first = links[0]
        mapping: dict[str, str] = {}
        properties: dict[str, Any] = {}
        required: set[str] = set()
        if first.sink_graph_name:
            schema = first.sink_input_default.get("input_schema") or {}
            props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
            for link in links:
                clean = cleanup(link.sink_pin)
                mapping[clean] = link.sink_pin
                spec = props.get(link.sink_pin, {}) if isinstance(props, Mapping) else {}
                properties[clean] = {
                    "type": "string",
                    "description": spec.get("description") or f"The {link.sink_pin} of the tool",
                    "default": json.dumps(spec.get("default")),
                }
            function = {
                "name": cleanup(first.sink_graph_name),
                "description": first.sink_graph_description or first.sink_graph_name,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "additionalProperties": False,
                    "strict": True,
                },
            }
        else:
            schema = first.sink_block.Input.model_json_schema()
            props = schema.get("properties", {})
            base_required = set(schema.get("required", []))
            for link in links:
                clean = cleanup(link.sink_pin)
                mapping[clean] = link.sink_pin
                spec = props.get(link.sink_pin)
                if spec is None:
                    spec = {"type": "string", "description": f"Value for {link.sink_pin}"}
                properties[clean] = {k: v for k, v in spec.items() if k != "title"}
                if link.sink_pin in base_required:
                    required.add(clean)
            function = {
                "name": cleanup(first.sink_block.name),
                "description": first.sink_block.description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "additionalProperties": False,
                    "required": sorted(required),
                },
            }
        function["_field_mapping"] = mapping
        functions.append({"type": "function", "function": function})
    return functions


# --- conversation bookkeeping (OpenAI format) --------------------------------------------------------------
def pending_tool_calls(history: list[dict[str, Any]]) -> dict[str, int]:
    pending: Counter[str] = Counter()
    for entry in history:
        if entry.get("role") == "assistant":
            for call in entry.get("tool_calls") or []:
                if isinstance(call, Mapping) and call.get("id"):
                    pending[str(call["id"])] += 1
        if entry.get("role") == "tool" and entry.get("tool_call_id"):
            pending[str(entry["tool_call_id"])] -= 1
    return {k: v for k, v in pending.items() if v > 0}


def tool_response(call_id: str, output: Any) -> dict[str, Any]:
    content = output if isinstance(output, str) else json.dumps(output, default=str)
    return {"role": "tool", "tool_call_id": call_id, "content": content}


class SmartDecisionMakerBlock(LlmBlock):
    id = "3b191d9f-356f-482d-8238-ba04b6d18381"
    description = "Uses AI to intelligently decide what tool to use."
    categories = frozenset({BlockCategory.AI})
    block_type = BlockType.AI
    repeated_output_pins = None  # with multiple_tool_calls a tool pin may fire more than once
    optional_link_pins = frozenset({"conversation_history", "last_tool_output"})
    needs_outgoing_links = True

    class Input(BlockInput):
        prompt: str = Field(description="The prompt to send to the language model.")
        model: str = Field(default=DEFAULT_LLM_MODEL, description="The language model to use.")
        credentials: Any = Field(default=None, description="An LLM credential reference")
        multiple_tool_calls: bool = Field(
            default=False, description="Allow several tool calls in one answer."
        )
        sys_prompt: str = Field(default=DEFAULT_SYS_PROMPT, description="The system prompt.")
        conversation_history: list[Any] = Field(default_factory=list, description="The conversation so far.")
        last_tool_output: Any = Field(
            default=None, description="The output of the last tool that was called."
        )
        retry: int = Field(
            default=3, description="Attempts to get tool calls that fit the tools' signatures."
        )
        prompt_values: dict[str, Any] = Field(default_factory=dict, description="Values for {{ name }}.")
        max_tokens: int | None = Field(default=None, description="The maximum number of tokens to generate.")
        ollama_host: str = Field(default="localhost:11434", description="Accepted for AutoGPT compatibility.")

    class Output(BlockOutput):
        tools: Any = Field(description="The tools that are available to use.")
        tool_functions: str = Field(description="The function signatures offered to the model (JSON).")
        finished: str = Field(description="The finished message to display to the user.")
        conversations: list[Any] = Field(
            description="The conversation history to provide context for the prompt."
        )

    self_tests = (
        BlockSelfTest(
            input={"prompt": "Add 2 and 3"},
            output=[
                ("tool_functions", lambda s: json.loads(s)[0]["function"]["name"] == "calculatorblock"),
                ("tools_^_calculatorblock_~_a", 2),
                ("tools_^_calculatorblock_~_b", 3),
                ("conversations", lambda c: c[-1]["tool_calls"][0]["id"] == "call_1"),
            ],
            mocks={
                "_tools": lambda ctx: _self_test_tools(),
                "_llm_call": lambda *a, **k: _self_test_answer(),
                "_endpoint": lambda ctx: _self_test_endpoint(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    def output_pins(self, input_default: Mapping[str, Any]) -> Mapping[str, str | None]:
        return _ToolPins(self._static_output_pins)

    def validate_output(self, pin: str, value: Any) -> Any:
        if is_tool_pin(pin):
            return value
        return super().validate_output(pin, value)

    def link_problems(self, static_by_pin: Mapping[str, bool]) -> Sequence[tuple[str, str]]:
        # A static tool output would satisfy every later execution at once (AutoGPT refuses it too).
        if "conversation_history" in static_by_pin and static_by_pin.get("last_tool_output"):
            return [
                (
                    "last_tool_output",
                    "cannot be fed by a static link (such as StoreValue's or AgentInput's output) while "
                    "conversation_history is linked",
                )
            ]
        return ()

    def missing_inputs(self, data: Mapping[str, Any]) -> frozenset[str]:
        history = data.get("conversation_history")
        if isinstance(history, str):  # a stored default such as "[]"
            try:
                history = json.loads(history)
            except ValueError:
                history = None
        pending = pending_tool_calls(as_messages(history)) if isinstance(history, list) else {}
        has_output = data.get("last_tool_output") is not None
        if pending and not has_output:
            return frozenset({"last_tool_output"})  # a tool call waits for its output
        if has_output and not pending:
            return frozenset({"conversation_history"})  # a tool output waits for its conversation
        return frozenset()

    def _tools(self, ctx: RunContext) -> list[OutgoingLink]:
        return tool_links(ctx)

    async def _attempt(
        self,
        ctx: RunContext,
        endpoint: Any,
        input: Input,
        prompt: list[dict[str, Any]],
        functions: list[dict[str, Any]],
    ) -> LlmResponse:
        answer = await self._llm_call(
            endpoint,
            input.model,
            prompt,
            input.max_tokens,
            tools=functions,
            parallel_tool_calls=input.multiple_tool_calls,
        )
        record_stats(
            ctx,
            llm_call_count=1,
            input_token_count=answer.prompt_tokens,
            output_token_count=answer.completion_tokens,
        )
        problems = []
        for call in answer.tool_calls:
            try:
                args = json.loads(call.arguments)
                if not isinstance(args, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                problems.append(f"Tool call '{call.name}' has invalid JSON arguments: {exc}")
                continue
            tool = _find(functions, call.name)
            if tool is None:
                problems.append(f"Tool call '{call.name}' names no available tool")
                continue
            params = tool["function"]["parameters"]
            expected = set(params.get("properties", {}))
            required = set(params.get("required", []))
            unexpected, missing = set(args) - expected, required - set(args)
            if unexpected or missing:
                msg = f"Tool call '{call.name}' has parameter errors:"
                if unexpected:
                    msg += f" Unknown parameters: {sorted(unexpected)}."
                if missing:
                    msg += f" Missing required parameters: {sorted(missing)}."
                problems.append(msg + f" Expected parameters: {sorted(expected)}.")
        if problems:
            raise ValueError("; ".join(problems))
        return answer

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            functions = function_signatures(self._tools(ctx))
            if not functions:
                raise LlmError(
                    "There is no next node to execute: no tools_^_ link leaves this node", retryable=False
                )
            endpoint = await self._endpoint(ctx)
        except (LlmError, ValueError) as exc:
            yield "error", str(exc)
            return
        yield (
            "tool_functions",
            json.dumps(
                [
                    {
                        "type": f["type"],
                        "function": {k: v for k, v in f["function"].items() if not k.startswith("_")},
                    }
                    for f in functions
                ]
            ),
        )

        prompt = as_messages(input.conversation_history)
        pending = pending_tool_calls(prompt)
        if pending and input.last_tool_output is None:
            yield "error", f"Tool call requires an output for {pending}"
            return
        if pending:
            prompt.append(tool_response(next(iter(pending)), input.last_tool_output))
            if pending_tool_calls(prompt):
                yield "conversations", prompt
                return
        elif input.last_tool_output:
            prompt.append(
                {
                    "role": "user",
                    "content": f"Last tool output: {json.dumps(input.last_tool_output, default=str)}",
                }
            )

        sys_prompt, user_prompt = input.sys_prompt, input.prompt
        if input.prompt_values:
            try:
                user_prompt = format_prompt(user_prompt, input.prompt_values)
                sys_prompt = format_prompt(sys_prompt, input.prompt_values)
            except ValueError as exc:
                yield "error", str(exc)
                return
        if sys_prompt and not any(
            p.get("role") == "system" and str(p.get("content", "")).startswith(MAIN_OBJECTIVE_PREFIX)
            for p in prompt
        ):
            prompt.append({"role": "system", "content": MAIN_OBJECTIVE_PREFIX + sys_prompt})
        if user_prompt and not any(
            p.get("role") == "user" and str(p.get("content", "")).startswith(MAIN_OBJECTIVE_PREFIX)
            for p in prompt
        ):
            prompt.append({"role": "user", "content": MAIN_OBJECTIVE_PREFIX + user_prompt})

        current = list(prompt)
        answer: LlmResponse | None = None
        last_error = ""
        for attempt in range(max(1, int(input.retry))):
            if attempt:
                record_stats(ctx, llm_retry_count=1)
            try:
                answer = await self._attempt(ctx, endpoint, input, current, functions)
                break
            except LlmError as exc:
                last_error = f"Error calling LLM: {exc}"
                if not exc.retryable:
                    break
            except ValueError as exc:
                last_error = str(exc)
                current = [
                    *current,
                    {
                        "role": "user",
                        "content": "Your tool call had parameter errors. Please fix the following issues and try "
                        f"again:\n- {exc}\n\nPlease make sure to use the exact parameter names as specified in the "
                        "function schema.",
                    },
                ]
        if answer is None:
            yield (
                "error",
                endpoint.scrub(last_error or "Failed to get a valid response after all retry attempts"),
            )
            return

        if not answer.tool_calls:
            yield "finished", answer.response
            return
        for call in answer.tool_calls:
            args = json.loads(call.arguments)
            tool = _find(functions, call.name)
            assert tool is not None
            mapping = tool["function"].get("_field_mapping", {})
            for clean_arg in tool["function"]["parameters"].get("properties", {}):
                original = mapping.get(clean_arg, clean_arg)
                yield (
                    f"{TOOL_PREFIX}{cleanup(call.name)}{TOOL_ARG_SPLIT}{cleanup(original)}",
                    args.get(clean_arg),
                )
        if answer.reasoning:
            prompt.append({"role": "assistant", "content": f"[Reasoning]: {answer.reasoning}"})
        prompt.append(answer.raw_response)
        yield "conversations", prompt


def _find(functions: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    found = next((f for f in functions if f["function"]["name"] == name), None)
    if found is None and len(functions) == 1:
        return functions[0]
    return found


def _self_test_tools() -> list[OutgoingLink]:
    from blocks.library.maths import CalculatorBlock

    block = CalculatorBlock()
    return [
        OutgoingLink(f"{TOOL_PREFIX}calculatorblock{TOOL_ARG_SPLIT}{pin}", "calc", pin, block, {})
        for pin in ("a", "b")
    ]


async def _self_test_answer() -> LlmResponse:
    call = ToolCall(id="call_1", name="calculatorblock", arguments='{"a": 2, "b": 3}')
    raw = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        ],
    }
    return LlmResponse(response="", raw_response=raw, tool_calls=[call])


async def _self_test_endpoint(ctx: RunContext) -> Any:
    from blocks.library.llm import resolve_endpoint

    return resolve_endpoint(ctx)
