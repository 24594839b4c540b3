"""LLM blocks (AutoGPT blocks/llm.py): text, structured (JSON) answers, lists, summaries, conversations.

They call any OpenAI-compatible chat-completions endpoint through the `openai` package (AsyncOpenAI).
Where the endpoint, the model mapping and the API key come from, first match wins:

1. the node's credential (pin `credentials`, provider "openai", type api_key), resolved by the engine:
   its secret is the API key, or a JSON object
   `{"api_key": ..., "base_url": ..., "models": {"gpt-4o": "served-name", "*": "fallback"}, "timeout": 30}`;
2. the environment, read when the node runs: AGENTFLOW_LLM_BASE_URL, AGENTFLOW_LLM_API_KEY,
   AGENTFLOW_LLM_MODEL_MAP (the same JSON mapping), AGENTFLOW_LLM_TIMEOUT (seconds);
3. OpenAI's public endpoint (https://api.openai.com/v1) for the base URL.

Never from the graph. The openai client is given an httpx client on the outbound policy's transport
(blocks/outbound): the endpoint's host is resolved once and the call goes to that checked address (TLS
server name kept), so a second DNS answer cannot move it. A base URL taken from a user's credential
must resolve to public addresses (no private or loopback address unless
`ctx.settings["allow_private_addresses"]`); the operator's environment is trusted with private
addresses (a local model server), and is pinned all the same.

Token counts and retries: each LLM block records AutoGPT's NodeExecutionStats fields (llm_call_count,
llm_retry_count, input_token_count, output_token_count) in `RunContext.stats`, which the engine records
with the node execution; the node's cost is computed from those tokens (`llm_pricing.py`).

A provider error, a timeout and a malformed answer each end in an `error` output with a clear message;
the API key is scrubbed from every message this module produces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Field, SecretStr

from blocks.library.llm_pricing import LLM_COSTS
from blocks.library.text import render_template
from blocks.outbound import (
    ConnectsOut,
    OutboundPolicy,
    RequestRefused,
    checked_async_client,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    Credentials,
    CredentialsField,
    RetryPolicy,
    RunContext,
)

DEFAULT_LLM_MODEL = "gpt-4o"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 120.0
BASE_URL_VAR = "AGENTFLOW_LLM_BASE_URL"
API_KEY_VAR = "AGENTFLOW_LLM_API_KEY"
MODEL_MAP_VAR = "AGENTFLOW_LLM_MODEL_MAP"
TIMEOUT_VAR = "AGENTFLOW_LLM_TIMEOUT"
# AutoGPT does not retry these: the user has to fix something first.
USER_ERROR_STATUS_CODES = (401, 403, 429)

LLM_CREDENTIALS = (
    CredentialsField(
        "credentials", provider="openai", type="api_key", optional=True, env_fallback=API_KEY_VAR
    ),
)


def credentials_pin() -> Any:
    return Field(
        default=None,
        description='An LLM credential reference: {"id": ..., "provider": "openai", "type": "api_key"}',
    )


class LlmError(Exception):
    """A failed LLM call, with a message that is safe to show (no API key)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# --- stats ------------------------------------------------------------------------------------------
def record_stats(ctx: RunContext, **counts: int) -> None:
    """Add to the node execution's stats (AutoGPT NodeExecutionStats field names); the engine records
    them with the node execution, so they reach its metadata in Dagster."""
    for name, value in counts.items():
        ctx.stats[name] = ctx.stats.get(name, 0) + int(value)


# --- endpoint ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LlmEndpoint:
    base_url: str
    api_key: SecretStr
    models: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    from_credential: bool = False
    # How the call connects: the operator's own endpoint may be private; a user's may not (unless the
    # operator allows private addresses).
    policy: OutboundPolicy = field(default_factory=lambda: OutboundPolicy(allow_private=True))

    def model_name(self, model: str) -> str:
        return self.models.get(model) or self.models.get("*") or model

    def scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        return text.replace(key, "***") if len(key) >= 4 else text


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _models(value: Any, where: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        value = _json_object(value)
    if not isinstance(value, dict):
        raise LlmError(f"{where}: the model mapping must be a JSON object", retryable=False)
    return {str(k): str(v) for k, v in value.items()}


def _timeout(value: Any, where: str) -> float:
    if value in (None, ""):
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise LlmError(f"{where}: timeout {value!r} is not a number of seconds", retryable=False) from None
    if seconds <= 0:
        raise LlmError(f"{where}: timeout must be positive", retryable=False)
    return seconds


def resolve_endpoint(ctx: RunContext, pin: str = "credentials") -> LlmEndpoint:
    """The endpoint for this node: its credential if the engine resolved one, else the environment."""
    credential: Credentials | None = ctx.credentials.get(pin)
    env = os.environ
    if credential is not None:
        secret = credential.secret.get_secret_value()
        data = _json_object(secret)
        where = f"credential {credential.id}"
        if data is None:
            return LlmEndpoint(
                base_url=env.get(BASE_URL_VAR) or DEFAULT_BASE_URL,
                api_key=SecretStr(secret),
                models=_models(env.get(MODEL_MAP_VAR), MODEL_MAP_VAR),
                timeout=_timeout(env.get(TIMEOUT_VAR), TIMEOUT_VAR),
            )
        api_key = data.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            raise LlmError(f"{where}: its JSON secret has no api_key", retryable=False)
        own_url = data.get("base_url")
        return LlmEndpoint(
            base_url=str(own_url or env.get(BASE_URL_VAR) or DEFAULT_BASE_URL),
            api_key=SecretStr(api_key),
            models=_models(data.get("models"), where) or _models(env.get(MODEL_MAP_VAR), MODEL_MAP_VAR),
            timeout=_timeout(data.get("timeout", env.get(TIMEOUT_VAR)), where),
            from_credential=bool(own_url),
            policy=OutboundPolicy.for_settings(ctx.settings)
            if own_url
            else OutboundPolicy(allow_private=True),
        )
    api_key = env.get(API_KEY_VAR, "")
    base_url = env.get(BASE_URL_VAR, "")
    if not api_key and not base_url:
        raise LlmError(
            f"no LLM endpoint configured: give the node an openai credential, or set {BASE_URL_VAR} "
            f"and {API_KEY_VAR}",
            retryable=False,
        )
    return LlmEndpoint(
        base_url=base_url or DEFAULT_BASE_URL,
        # Local OpenAI-compatible servers often need no key, but the client insists on one.
        api_key=SecretStr(api_key or "no-key"),
        models=_models(env.get(MODEL_MAP_VAR), MODEL_MAP_VAR),
        timeout=_timeout(env.get(TIMEOUT_VAR), TIMEOUT_VAR),
    )


# --- the call ---------------------------------------------------------------------------------------
@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class LlmResponse:
    response: str
    raw_response: dict[str, Any]
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning: str | None = None


def _error_text(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message if len(message) <= 500 else message[:497] + "..."


async def llm_call(
    endpoint: LlmEndpoint,
    model: str,
    prompt: list[dict[str, Any]],
    max_tokens: int | None = None,
    json_format: bool = False,
    tools: list[dict[str, Any]] | None = None,
    parallel_tool_calls: bool | None = None,
) -> LlmResponse:
    """One chat-completions call. Raises LlmError with a key-free message on any failure."""
    served = endpoint.model_name(model)
    kwargs: dict[str, Any] = {"model": served, "messages": prompt}
    if max_tokens:
        kwargs["max_tokens"] = max_tokens
    if json_format:
        kwargs["response_format"] = {"type": "json_object"}
    if tools:
        kwargs["tools"] = [
            {"type": t["type"], "function": {k: v for k, v in t["function"].items() if not k.startswith("_")}}
            for t in tools
        ]
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
    # Imported on first use: the package takes about 0.6 s to import, which every process that loads
    # the block library (CLI, code server, run workers) would otherwise pay.
    import openai

    try:
        async with openai.AsyncOpenAI(
            api_key=endpoint.api_key.get_secret_value(),
            base_url=endpoint.base_url,
            timeout=endpoint.timeout,
            max_retries=0,  # the blocks retry as AutoGPT does, and count it
            http_client=checked_async_client(endpoint.policy, timeout=endpoint.timeout),
        ) as client:
            completion = await client.chat.completions.create(**kwargs)
    except openai.APITimeoutError:
        raise LlmError(
            f"LLM request to {endpoint.base_url} timed out after {endpoint.timeout:g}s (model {served!r})"
        ) from None
    except openai.APIStatusError as exc:
        raise LlmError(
            endpoint.scrub(
                f"LLM provider returned HTTP {exc.status_code} for model {served!r}: {_error_text(exc)}"
            ),
            retryable=exc.status_code not in USER_ERROR_STATUS_CODES,
        ) from None
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, RequestRefused):  # the outbound policy's refusal: no retry can change it
            raise LlmError(
                endpoint.scrub(f"LLM endpoint {endpoint.base_url}: {cause}"), retryable=False
            ) from None
        raise LlmError(
            endpoint.scrub(f"cannot reach LLM endpoint {endpoint.base_url}: {_error_text(cause)}")
        ) from None
    except (openai.OpenAIError, httpx.HTTPError, ValueError, TypeError) as exc:
        raise LlmError(endpoint.scrub(f"LLM call failed: {type(exc).__name__}: {_error_text(exc)}")) from None
    if not completion.choices:
        raise LlmError(f"LLM provider returned no choices for model {served!r}")
    message = completion.choices[0].message
    calls = [
        ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
        for c in (message.tool_calls or [])
        if getattr(c, "function", None) is not None
    ]
    raw: dict[str, Any] = {"role": "assistant", "content": message.content}
    if calls:
        raw["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    usage = completion.usage
    return LlmResponse(
        response=message.content or "",
        raw_response=raw,
        tool_calls=calls,
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        reasoning=getattr(message, "reasoning", None) or None,
    )


def trim_prompt(s: str) -> str:
    """Removes indentation up to and including `|` from a multi-line prompt."""
    return "\n".join(line.strip().lstrip("|") for line in s.strip().split("\n"))


def format_prompt(text: str, values: Mapping[str, Any]) -> str:
    return render_template(text, dict(values)) if values else text


def as_messages(history: list[Any] | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in history or []:
        if not item:
            continue
        if isinstance(item, str):
            item = _json_object(item) or {"role": "user", "content": item}
        if isinstance(item, Mapping):
            messages.append(dict(item))
    return messages


class LlmBlock(ConnectsOut, Block):
    """Shared plumbing of the LLM blocks (abstract: no id). `_llm_call` is what self-tests mock."""

    categories = frozenset({BlockCategory.AI})
    credentials = LLM_CREDENTIALS
    costs = LLM_COSTS  # per token, by model (llm_pricing.py)
    # The blocks retry calls themselves (AutoGPT's loop); the engine makes one attempt unless a node
    # asks for more. These are the provider's failures, which count towards its circuit breaker.
    retry_policy = RetryPolicy(
        attempts=1,
        retry_on_errors=("timed out", "returned HTTP 5", "returned HTTP 429", "cannot reach LLM endpoint"),
    )
    # Reusing an identical call's answer only when the node opts in (`agentflow.cache: true`).
    cacheable = True
    cache_requires_opt_in = True

    async def _endpoint(self, ctx: RunContext) -> LlmEndpoint:
        endpoint = resolve_endpoint(ctx)
        return dataclasses.replace(
            endpoint,
            policy=dataclasses.replace(endpoint.policy, resolve=self._resolve, is_blocked=self._is_blocked),
        )

    async def _llm_call(
        self,
        endpoint: LlmEndpoint,
        model: str,
        prompt: list[dict[str, Any]],
        max_tokens: int | None,
        json_format: bool = False,
        tools: list[dict[str, Any]] | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> LlmResponse:
        return await llm_call(endpoint, model, prompt, max_tokens, json_format, tools, parallel_tool_calls)

    def _tag_id(self) -> str:
        return secrets.token_hex(8)

    async def structured(
        self,
        ctx: RunContext,
        *,
        prompt: str,
        model: str,
        expected_format: Mapping[str, str],
        sys_prompt: str = "",
        conversation_history: list[Any] | None = None,
        list_result: bool = False,
        force_json_output: bool = False,
        retry: int = 3,
        prompt_values: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> tuple[Any, list[dict[str, Any]]]:
        """AIStructuredResponseGenerator's loop: call, parse, validate, feed errors back, retry.

        Returns (response object, prompt sent); raises LlmError after the last attempt.
        """
        try:
            endpoint = await self._endpoint(ctx)
        except RequestRefused as exc:
            raise LlmError(str(exc), retryable=False) from None
        messages = as_messages(conversation_history)
        if prompt_values:
            prompt = format_prompt(prompt, prompt_values)
            sys_prompt = format_prompt(sys_prompt, prompt_values)
        if sys_prompt:
            messages.append({"role": "system", "content": sys_prompt})
        tag = f'<json_output id="{self._tag_id()}">'
        if expected_format:
            messages.append(
                {
                    "role": "system",
                    "content": format_instructions(
                        expected_format, list_mode=list_result, pure_json=force_json_output, tag=tag
                    ),
                }
            )
        if prompt:
            messages.append({"role": "user", "content": prompt})

        feedback = ""
        attempts = max(1, int(retry))
        for attempt in range(attempts):
            sent = list(messages)
            try:
                answer = await self._llm_call(
                    endpoint,
                    model,
                    sent,
                    max_tokens,
                    json_format=force_json_output and bool(expected_format),
                )
            except LlmError as exc:
                record_stats(ctx, llm_call_count=1, llm_retry_count=1 if attempt else 0)
                feedback = f"Error calling LLM: {exc}"
                if not exc.retryable:
                    break
                continue
            record_stats(
                ctx,
                llm_call_count=1,
                llm_retry_count=1 if attempt else 0,
                input_token_count=answer.prompt_tokens,
                output_token_count=answer.completion_tokens,
            )
            text = answer.response
            if not expected_format:
                return {"response": text}, sent
            try:
                parsed = parse_json_answer(text, pure_json=force_json_output, tag=tag)
            except ValueError as exc:
                messages.append({"role": "assistant", "content": text})
                feedback = invalid_response_feedback(
                    exc, parseable=False, list_mode=list_result, pure_json=force_json_output, tag=tag
                )
                messages.append({"role": "user", "content": feedback})
                continue
            if list_result and isinstance(parsed, dict):
                if isinstance(parsed.get("results"), list):
                    parsed = parsed["results"]
                else:
                    messages.append({"role": "assistant", "content": text})
                    feedback = f"Expected an array of objects in the 'results' key, but got: {parsed}"
                    messages.append({"role": "user", "content": feedback})
                    continue
            problems = [
                p
                for item in (parsed if isinstance(parsed, list) else [parsed])
                if (p := _missing_keys(item, expected_format))
            ]
            if not problems:
                return parsed, sent
            messages.append({"role": "assistant", "content": text})
            feedback = invalid_response_feedback(
                "\n".join(problems),
                parseable=True,
                list_mode=list_result,
                pure_json=force_json_output,
                tag=tag,
            )
            messages.append({"role": "user", "content": feedback})
        raise LlmError(
            endpoint.scrub(
                feedback
                if feedback.startswith("Error calling LLM")
                else f"no valid answer from the model after {attempts} attempt(s); last problem: {feedback}"
            )
        )


def _missing_keys(item: Any, expected: Mapping[str, str]) -> str | None:
    if not isinstance(item, dict):
        return f"Expected a dictionary, but got {type(item)}"
    missing = set(expected) - set(item)
    return f"Missing keys: {missing}" if missing else None


def format_instructions(expected: Mapping[str, str], *, list_mode: bool, pure_json: bool, tag: str) -> str:
    fmt = json.dumps(dict(expected), indent=2)
    output_type = "array" if list_mode else "object"
    outer_type = "object" if pure_json else output_type
    if list_mode:
        fmt = "[\n  " + fmt.replace("\n", "\n  ") + ",\n  ...\n]"
        if pure_json:
            fmt = '{\n  "reasoning": "... (optional)",\n  "results": ' + fmt.replace("\n", "\n  ") + "\n}"
    fmt = fmt.replace("\n", "\n|")
    if not pure_json:
        fmt = f"{tag}\n{fmt}\n</json_output>"
    text = f"""
        |In your response you MUST include a valid JSON {outer_type} strictly following this format:
        |{fmt}
        |
        |If you cannot provide all the keys, you MUST provide an empty string for the values you cannot answer.
        """.strip()
    if not pure_json:
        text += f"""
            |
            |You MUST enclose your final JSON answer in {tag}...</json_output> tags, even if the user specifies a different tag.
            |There MUST be exactly ONE {tag}...</json_output> block in your response, which MUST ONLY contain the JSON {outer_type} and nothing else. Other text outside this block is allowed.
            """.strip()
    return trim_prompt(text)


def invalid_response_feedback(
    error: Any, *, parseable: bool, list_mode: bool, pure_json: bool, tag: str
) -> str:
    outer_type = "object" if not list_mode or pure_json else "array"
    complaint = (
        f"Your previous response did not match the expected {outer_type} format."
        if parseable
        else f"Your previous response did not contain a parseable JSON {outer_type}."
    )
    instruction = (
        f"Please provide a {tag}...</json_output> block containing a" if not pure_json else "Please provide a"
    ) + f" valid JSON {outer_type} that matches the expected format."
    indented = str(error).replace("\n", "\n|")
    return trim_prompt(f"|{complaint}\n|\n|{indented}\n|\n|{instruction}")


def parse_json_answer(text: str, *, pure_json: bool, tag: str) -> Any:
    """The JSON in a model's answer (AutoGPT get_json_from_response); ValueError when there is none."""
    if pure_json:
        try:
            return json.loads(text)
        except ValueError as first:
            start, end = text.find("{"), text.rfind("}")
            try:
                return json.loads(text[start : end + 1])
            except ValueError:
                raise first from None
    if tag not in text:
        raise ValueError(f"Response does not contain the expected {tag}...</json_output> block.")
    body = text.split(tag, 1)[1].rsplit("</json_output>", 1)[0].strip()
    return json.loads(body)


# --- self-test helpers --------------------------------------------------------------------------------
TEST_CREDENTIALS = Credentials(
    id="769f6af7-820b-4d5d-9b7a-ab82bbc165f0",
    provider="openai",
    type="api_key",
    secret=SecretStr('{"api_key": "sk-mock-key", "base_url": "https://llm.example.com/v1"}'),
    owner_user_id="local",
    title="Mock OpenAI API key",
)
TEST_CREDENTIALS_INPUT = {"id": TEST_CREDENTIALS.id, "provider": "openai", "type": "api_key"}


def _fake_answers(*texts: str) -> Any:
    """A mock `_llm_call` that answers each call with the next text (the last one repeats)."""
    queue = list(texts)

    async def fake(
        endpoint: LlmEndpoint, model: str, prompt: list[dict[str, Any]], *args: Any, **kw: Any
    ) -> Any:
        text = queue.pop(0) if len(queue) > 1 else queue[0]
        return LlmResponse(response=text, raw_response={"role": "assistant", "content": text})

    return fake


# --- blocks -------------------------------------------------------------------------------------------
class AIStructuredResponseGeneratorBlock(LlmBlock):
    id = "ed55ac19-356e-4243-a6cb-bc599e9b716f"
    description = (
        "A block that generates structured JSON responses using a Large Language Model (LLM), with schema "
        "validation and format enforcement."
    )
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        prompt: str = Field(description="The prompt to send to the language model.")
        expected_format: dict[str, str] = Field(
            description="Expected format of the response: the keys expected in it, each with a description."
        )
        list_result: bool = Field(default=False, description="Whether the response is a list of objects.")
        model: str = Field(default=DEFAULT_LLM_MODEL, description="The language model to use.")
        force_json_output: bool = Field(default=False, description="Ask for a JSON-only response.")
        credentials: Any = credentials_pin()
        sys_prompt: str = Field(default="", description="The system prompt.")
        conversation_history: list[Any] | None = Field(default_factory=list, description="Earlier messages.")
        retry: int = Field(default=3, description="How many times to call the model for a valid answer.")
        prompt_values: dict[str, Any] = Field(
            default_factory=dict, description="Values for {{ name }} in the prompt."
        )
        max_tokens: int | None = Field(default=None, description="The maximum number of tokens to generate.")
        compress_prompt_to_fit: bool = Field(default=True, description="Accepted for AutoGPT compatibility.")
        ollama_host: str = Field(default="localhost:11434", description="Accepted for AutoGPT compatibility.")

    class Output(BlockOutput):
        response: dict[str, Any] | list[dict[str, Any]] = Field(description="The response object.")
        prompt: list[Any] = Field(description="The prompt sent to the language model.")

    self_tests = (
        BlockSelfTest(
            input={"prompt": "User prompt", "expected_format": {"key1": "value1", "key2": "value2"}},
            output=[("response", {"key1": "key1Value", "key2": "key2Value"}), ("prompt", list)],
            mocks={
                "_llm_call": _fake_answers(
                    "no json here",
                    '<json_output id="test123456">{"key1": "key1Value", "key2": "key2Value"}</json_output>',
                ),
                "_tag_id": lambda: "test123456",
                "_endpoint": lambda ctx: _endpoint_for_tests(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "User prompt", "expected_format": {"key1": "v"}, "retry": 2},
            output=[("error", lambda e: "after 2 attempt(s)" in e and "sk-mock-key" not in e)],
            mocks={
                "_llm_call": _fake_answers("still no json"),
                "_endpoint": lambda ctx: _endpoint_for_tests(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            response, sent = await self.structured(
                ctx,
                prompt=input.prompt,
                model=input.model,
                expected_format=input.expected_format,
                sys_prompt=input.sys_prompt,
                conversation_history=input.conversation_history,
                list_result=input.list_result,
                force_json_output=input.force_json_output,
                retry=input.retry,
                prompt_values=input.prompt_values,
                max_tokens=input.max_tokens,
            )
        except LlmError as exc:
            yield "error", str(exc)
            return
        yield "response", response
        yield "prompt", sent


async def _endpoint_for_tests(ctx: RunContext) -> LlmEndpoint:
    return resolve_endpoint(ctx)


class AITextGeneratorBlock(LlmBlock):
    id = "1f292d4a-41a4-4977-9684-7c8d560b9f91"
    description = (
        "A block that produces text responses using a Large Language Model (LLM) based on customizable "
        "prompts and system instructions."
    )
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        prompt: str = Field(
            description="The prompt to send to the language model ({{ name }} from prompt_values)."
        )
        model: str = Field(default=DEFAULT_LLM_MODEL, description="The language model to use.")
        credentials: Any = credentials_pin()
        sys_prompt: str = Field(default="", description="The system prompt.")
        retry: int = Field(default=3, description="How many times to call the model before giving up.")
        prompt_values: dict[str, Any] = Field(
            default_factory=dict, description="Values for {{ name }} in the prompt."
        )
        ollama_host: str = Field(default="localhost:11434", description="Accepted for AutoGPT compatibility.")
        max_tokens: int | None = Field(default=None, description="The maximum number of tokens to generate.")

    class Output(BlockOutput):
        response: str = Field(description="The response generated by the language model.")
        prompt: list[Any] = Field(description="The prompt sent to the language model.")

    self_tests = (
        BlockSelfTest(
            input={"prompt": "Hello {{ who }}", "prompt_values": {"who": "world"}},
            output=[("response", "Response text"), ("prompt", [{"role": "user", "content": "Hello world"}])],
            mocks={
                "_llm_call": _fake_answers("Response text"),
                "_endpoint": lambda ctx: _endpoint_for_tests(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "Hello"},
            output=[("error", lambda e: "AGENTFLOW_LLM_BASE_URL" in e)],
            mocks={"_endpoint": lambda ctx: _no_env_endpoint(ctx)},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            response, sent = await self.structured(
                ctx,
                prompt=input.prompt,
                model=input.model,
                expected_format={},
                sys_prompt=input.sys_prompt,
                retry=input.retry,
                prompt_values=input.prompt_values,
                max_tokens=input.max_tokens,
            )
        except LlmError as exc:
            yield "error", str(exc)
            return
        yield "response", response["response"]
        yield "prompt", sent


async def _no_env_endpoint(ctx: RunContext) -> LlmEndpoint:
    """resolve_endpoint as if no environment variable were set (self-tests must not depend on the shell)."""
    saved = {k: os.environ.pop(k) for k in (BASE_URL_VAR, API_KEY_VAR) if k in os.environ}
    try:
        return resolve_endpoint(ctx)
    finally:
        os.environ.update(saved)


class SummaryStyle(StrEnum):
    CONCISE = "concise"
    DETAILED = "detailed"
    BULLET_POINTS = "bullet points"
    NUMBERED_LIST = "numbered list"


class AITextSummarizerBlock(LlmBlock):
    id = "a0a69be1-4528-491c-a85a-a4ab6873e3f0"
    description = (
        "A block that summarizes long texts using a Large Language Model (LLM), with configurable focus "
        "topics and summary styles."
    )
    categories = frozenset({BlockCategory.AI, BlockCategory.TEXT})
    repeated_output_pins = frozenset()
    MAX_TEXT_LENGTH = 1_000_000
    MAX_CHUNKS = 100

    class Input(BlockInput):
        text: str = Field(description="The text to summarize.")
        model: str = Field(default=DEFAULT_LLM_MODEL, description="The language model to use.")
        focus: str = Field(default="general information", description="The topic to focus on in the summary")
        style: SummaryStyle = Field(default=SummaryStyle.CONCISE, description="The style of the summary.")
        credentials: Any = credentials_pin()
        max_tokens: int = Field(
            default=4096, ge=1, description="Words per chunk (AutoGPT calls them tokens)."
        )
        chunk_overlap: int = Field(default=100, ge=0, description="Overlapping words between chunks.")
        ollama_host: str = Field(default="localhost:11434", description="Accepted for AutoGPT compatibility.")

    class Output(BlockOutput):
        summary: str = Field(description="The final summary of the text.")
        prompt: list[Any] = Field(description="The prompt sent to the language model.")

    self_tests = (
        BlockSelfTest(
            input={"text": "Lorem ipsum " * 100, "max_tokens": 150, "chunk_overlap": 10},
            output=[("summary", "Final summary of a long text"), ("prompt", list)],
            mocks={
                "_llm_call": lambda endpoint, model, prompt, *a, **k: _summary_answer(prompt),
                "_tag_id": lambda: "t1",
                "_endpoint": lambda ctx: _endpoint_for_tests(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    @classmethod
    def split_text(cls, text: str, max_tokens: int, overlap: int) -> list[str]:
        text = text[: cls.MAX_TEXT_LENGTH]
        if overlap >= max_tokens:
            overlap = max(0, max_tokens - 1)
        step = max(1, max_tokens - overlap)
        words = text.split()
        return [" ".join(words[i : i + max_tokens]) for i in range(0, len(words), step)][: cls.MAX_CHUNKS]

    async def _summarize(
        self, input: Input, ctx: RunContext, text: str, depth: int = 0
    ) -> tuple[str, list[Any]]:
        summaries: list[str] = []
        sent: list[Any] = []
        for chunk in self.split_text(text, input.max_tokens, input.chunk_overlap) or [""]:
            prompt = (
                f"Summarize the following text in a {input.style.value} form. Focus your summary on the topic "
                f"of `{input.focus}` if present, otherwise just provide a general summary:\n\n```{chunk}```"
            )
            answer, sent = await self.structured(
                ctx,
                prompt=prompt,
                model=input.model,
                expected_format={"summary": "The summary of the given text."},
            )
            summaries.append(_text_field(answer, "summary"))
        combined = "\n\n".join(summaries)
        if len(combined.split()) > input.max_tokens and depth < 5:
            return await self._summarize(input, ctx, combined, depth + 1)
        prompt = (
            f"Provide a final summary of the following section summaries in a {input.style.value} form, focus "
            f"your summary on the topic of `{input.focus}` if present:\n\n ```{combined}```\n\n Just respond "
            "with the final_summary in the format specified."
        )
        answer, sent = await self.structured(
            ctx,
            prompt=prompt,
            model=input.model,
            expected_format={"final_summary": "The final summary of all provided summaries."},
        )
        return _text_field(answer, "final_summary"), sent

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            summary, sent = await self._summarize(input, ctx, input.text)
        except (LlmError, ValueError) as exc:
            yield "error", str(exc)
            return
        yield "summary", summary
        yield "prompt", sent


def _text_field(answer: Any, key: str) -> str:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, str):
        raise ValueError(
            f"LLM generation failed: expected a string {key}, but received {type(value).__name__}: "
            f"{json.dumps(value, default=str)[:500]}"
        )
    return value


async def _summary_answer(prompt: list[dict[str, Any]]) -> LlmResponse:
    key = "final_summary" if "final_summary" in prompt[-2]["content"] else "summary"
    value = "Final summary of a long text" if key == "final_summary" else "Summary of a chunk"
    text = f'<json_output id="t1">{json.dumps({key: value})}</json_output>'
    return LlmResponse(response=text, raw_response={"role": "assistant", "content": text})


class AIConversationBlock(LlmBlock):
    id = "32a87eab-381e-4dd4-bdb8-4c47151be35a"
    description = (
        "A block that facilitates multi-turn conversations with a Large Language Model (LLM), maintaining "
        "context across message exchanges."
    )
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        prompt: str = Field(default="", description="The prompt to send to the language model.")
        messages: list[Any] = Field(description="List of messages in the conversation.")
        model: str = Field(default=DEFAULT_LLM_MODEL, description="The language model to use.")
        credentials: Any = credentials_pin()
        max_tokens: int | None = Field(default=None, description="The maximum number of tokens to generate.")
        ollama_host: str = Field(default="localhost:11434", description="Accepted for AutoGPT compatibility.")

    class Output(BlockOutput):
        response: str = Field(description="The model's response to the conversation.")
        prompt: list[Any] = Field(description="The prompt sent to the language model.")

    self_tests = (
        BlockSelfTest(
            input={
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Who won the world series in 2020?"},
                    {"role": "assistant", "content": "The Los Angeles Dodgers won the World Series in 2020."},
                    {"role": "user", "content": "Where was it played?"},
                ]
            },
            output=[
                ("response", "The 2020 World Series was played at Globe Life Field in Arlington, Texas."),
                ("prompt", lambda p: len(p) == 4),
            ],
            mocks={
                "_llm_call": _fake_answers(
                    "The 2020 World Series was played at Globe Life Field in Arlington, Texas."
                ),
                "_endpoint": lambda ctx: _endpoint_for_tests(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"messages": []},
            output=[("error", lambda e: "no messages and no prompt" in e)],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        has_messages = any(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"].strip()
            for m in input.messages or []
        )
        if not has_messages and not input.prompt.strip():
            yield (
                "error",
                "Cannot call LLM with no messages and no prompt. Provide at least one message or a non-empty prompt.",
            )
            return
        try:
            response, sent = await self.structured(
                ctx,
                prompt=input.prompt,
                model=input.model,
                expected_format={},
                conversation_history=input.messages,
                max_tokens=input.max_tokens,
            )
        except LlmError as exc:
            yield "error", str(exc)
            return
        yield "response", response["response"]
        yield "prompt", sent


class AIListGeneratorBlock(LlmBlock):
    id = "9c0b0450-d199-458b-a731-072189dd6593"
    description = (
        "A block that creates lists of items based on prompts using a Large Language Model (LLM), with "
        "optional source data for context."
    )
    categories = frozenset({BlockCategory.AI, BlockCategory.TEXT})
    repeated_output_pins = frozenset({"list_item"})

    SYSTEM_PROMPT = trim_prompt("""
        |You are a JSON array generator. Your task is to generate a JSON array of string values based on the user's prompt.
        |
        |The 'list' field should contain a JSON array with the generated string values.
        |The array can contain ONLY strings.
        |
        |Valid JSON array formats include:
        |• ["string1", "string2", "string3"]
        |
        |Ensure you provide a proper JSON array with only string values in the 'list' field.
        """)

    class Input(BlockInput):
        focus: str | None = Field(default=None, description="The focus of the list to generate.")
        source_data: str | None = Field(default=None, description="The data to generate the list from.")
        model: str = Field(default=DEFAULT_LLM_MODEL, description="The language model to use.")
        credentials: Any = credentials_pin()
        max_retries: int = Field(default=3, ge=1, le=5, description="Maximum attempts for a valid list.")
        force_json_output: bool = Field(default=False, description="Ask for a JSON-only response.")
        max_tokens: int | None = Field(default=None, description="The maximum number of tokens to generate.")
        ollama_host: str = Field(default="localhost:11434", description="Accepted for AutoGPT compatibility.")

    class Output(BlockOutput):
        generated_list: list[Any] = Field(description="The generated list.")
        list_item: Any = Field(description="Each individual item in the list.")
        prompt: list[Any] = Field(description="The prompt sent to the language model.")

    self_tests = (
        BlockSelfTest(
            input={"focus": "planets", "source_data": "Zylora Prime and Kharon-9 are planets."},
            output=[
                ("generated_list", ["Zylora Prime", "Kharon-9"]),
                ("prompt", list),
                ("list_item", "Zylora Prime"),
                ("list_item", "Kharon-9"),
            ],
            mocks={
                "_llm_call": _fake_answers(
                    '<json_output id="t2">{"list": ["Zylora Prime", "Kharon-9"]}</json_output>'
                ),
                "_tag_id": lambda: "t2",
                "_endpoint": lambda ctx: _endpoint_for_tests(ctx),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        expected = {"list": "A JSON array containing the generated string values"}
        if input.force_json_output:
            expected = {"reasoning": "... (optional)", **expected}
        if input.focus:
            prompt = f"Generate a list with the following focus:\n<focus>\n\n{input.focus}</focus>"
        elif input.source_data:
            prompt = (
                "Extract the main focus of the source data to a list.\ni.e if the source data is a news website, "
                "the focus would be the news stories rather than the social links in the footer."
            )
        else:
            prompt = "Generate a random list."
        if input.source_data:
            prompt += (
                "\n\nUse the following source data to generate the list from:\n\n<source_data>\n\n"
                f"{input.source_data}</source_data>\n\nDo not invent fictional data that is not present in the "
                "source data."
            )
        else:
            prompt += "\n\nInvent the data to generate the list from."
        try:
            answer, sent = await self.structured(
                ctx,
                prompt=prompt,
                model=input.model,
                expected_format=expected,
                sys_prompt=self.SYSTEM_PROMPT,
                force_json_output=input.force_json_output,
                retry=input.max_retries,
                max_tokens=input.max_tokens,
            )
        except LlmError as exc:
            yield "error", str(exc)
            return
        items = answer["list"] if isinstance(answer, dict) and "list" in answer else answer
        if not isinstance(items, list):
            yield "error", f"Expected a list, but got {type(items).__name__}: {str(items)[:500]}"
            return
        yield "generated_list", items
        yield "prompt", sent
        for item in items:
            yield "list_item", item


__all__ = [
    "AIConversationBlock",
    "AIListGeneratorBlock",
    "AIStructuredResponseGeneratorBlock",
    "AITextGeneratorBlock",
    "AITextSummarizerBlock",
    "LlmEndpoint",
    "LlmError",
    "llm_call",
    "resolve_endpoint",
]
