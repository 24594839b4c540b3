"""ExecuteCodeBlock (AutoGPT blocks/code_executor): runs code in an E2B code-interpreter sandbox.

Like AutoGPT, through the `e2b-code-interpreter` SDK: create a sandbox (template `template_id`, or the
SDK's default code-interpreter template; lifetime `timeout` seconds), run each setup command with `sh`
in the foreground, run the code in the sandbox's Jupyter kernel for `language`, and kill the sandbox
afterwards when `dispose_sandbox` (also when the code raised: AutoGPT kills it on an execution error).
The code's exception, or any failure on the way, goes to `error` and nothing else is yielded.

Endpoints and the API key, first match wins:

1. the node's credential (pin `credentials`, provider "e2b", type api_key), resolved by the engine: the
   secret is the API key, or JSON `{"api_key": ..., "api_url": ..., "sandbox_url": ..., "domain": ...}`;
2. the environment, read when the node runs: AGENTFLOW_E2B_API_URL, AGENTFLOW_E2B_SANDBOX_URL,
   AGENTFLOW_E2B_API_KEY (the key only when the node has no credential);
3. E2B's public API (https://api.e2b.app) and the sandbox URLs the SDK derives from domain e2b.app.

A sandbox URL, when given, is where every sandbox call goes (E2B's sandbox proxy tells sandboxes and
ports apart by headers); it is how a local stand-in serves both the envd and the Jupyter port.

The SDK makes its own connections (a Rust HTTP client with its own resolver), so it cannot be handed
a checked transport: it is given, as its proxy, the process's checked forward proxy with this
execution's policy (blocks/outbound/proxy.py). Every connection it opens (the API, the sandbox hosts
it derives from the domain, including the domain in the API's answer) is resolved once there, refused
if any address is private, loopback or otherwise non-public (unless
`ctx.settings["allow_private_addresses"]`), and opened to that checked address; TLS runs end to end
with the original host name. A `domain` that is not a host name is refused. The SDK's own E2B_*
environment variables are overridden (api_url, domain, debug and proxy are always passed explicitly).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field, SecretStr

from blocks.outbound import (
    PRIVATE_TEST_ADDRESS,
    ConnectsOut,
    OutboundPolicy,
    RequestRefused,
    checked_proxy,
    fixed_resolve,
    normalise_url,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    Credentials,
    CredentialsField,
    RunContext,
)

DEFAULT_API_URL = "https://api.e2b.app"
DEFAULT_DOMAIN = "e2b.app"
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
)


class ProgrammingLanguage(StrEnum):
    PYTHON = "python"
    JAVASCRIPT = "js"
    BASH = "bash"
    R = "r"
    JAVA = "java"


@dataclass(frozen=True)
class E2BEndpoint:
    api_url: str
    sandbox_url: str | None
    domain: str
    api_key: SecretStr

    def scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        return text.replace(key, "***") if len(key) >= 4 else text


def resolve_e2b(ctx: RunContext) -> E2BEndpoint:
    """The endpoint (RequestRefused for a URL or domain that cannot be one, naming where it came from)."""
    env = os.environ
    data: dict[str, Any] = {}
    credential: Credentials | None = ctx.credentials.get("credentials")
    if credential is not None:
        secret = credential.secret.get_secret_value()
        try:
            parsed = json.loads(secret)
        except ValueError:
            parsed = None
        data = parsed if isinstance(parsed, dict) else {"api_key": secret}
    api_url = str(data.get("api_url") or env.get("AGENTFLOW_E2B_API_URL") or DEFAULT_API_URL)
    sandbox_url = str(data.get("sandbox_url") or env.get("AGENTFLOW_E2B_SANDBOX_URL") or "") or None
    key = str(data.get("api_key") or (env.get("AGENTFLOW_E2B_API_KEY", "") if credential is None else ""))
    where = f"credential {credential.id} (pin 'credentials')" if credential is not None else "the environment"
    domain = str(data.get("domain") or DEFAULT_DOMAIN).strip().lower()
    if not _HOST_NAME.match(domain):
        raise RequestRefused(f"{where}: E2B domain {domain!r} is not a host name")
    for url in (api_url, sandbox_url):
        if url:
            try:
                normalise_url(url)
            except RequestRefused as exc:
                raise RequestRefused(f"{where}: {exc}") from None
    return E2BEndpoint(
        api_url.rstrip("/"),
        sandbox_url.rstrip("/") if sandbox_url else None,
        domain,
        SecretStr(key),
    )


@dataclass(frozen=True)
class CodeRun:
    """What one execution produced (the parts of e2b's `Execution` the block reports)."""

    results: list[dict[str, Any]]
    text: str | None
    stdout: str
    stderr: str


class CodeExecutionFailed(Exception):
    """A step failed; the message names the step and is shown (after scrubbing) on `error`."""


def result_data(result: Any) -> dict[str, Any]:
    """An e2b `Result` as AutoGPT reports it: its present formats, `extra` and `is_main_result`."""
    data: dict[str, Any] = {}
    for name in [*result.formats(), "extra", "is_main_result"]:
        value = getattr(result, name, None)
        if value is None:
            continue
        # Charts are SDK objects; their raw JSON is what can travel on a link.
        data[name] = value.to_dict() if hasattr(value, "to_dict") else value
    return data


def _execution_error_text(error: Any) -> str:
    traceback = str(getattr(error, "traceback", "") or "").strip()
    head = f"{error.name}: {error.value}"
    return f"code raised {head}" + (f"\n{traceback}" if traceback and traceback != head else "")


# --- self-test data -------------------------------------------------------------------------------------
TEST_CREDENTIALS = Credentials(
    id="01234567-89ab-cdef-0123-456789abcdef",
    provider="e2b",
    type="api_key",
    # The URLs travel in the credential so the self-tests do not depend on the environment's.
    secret=SecretStr(
        '{"api_key": "mock-e2b-api-key", "api_url": "https://api.e2b.app", '
        '"sandbox_url": "https://sandbox.e2b.app"}'
    ),
    owner_user_id="local",
    title="Mock E2B API key",
)


async def _hello_world(endpoint: E2BEndpoint, *args: Any) -> CodeRun:
    if endpoint.api_key.get_secret_value() != "mock-e2b-api-key":
        raise CodeExecutionFailed("the credential's key did not reach the sandbox call")
    return CodeRun(
        results=[{"text": "Hello World", "is_main_result": True}],
        text="Hello World",
        stdout="Hello World\n",
        stderr="",
    )


async def _raises(endpoint: E2BEndpoint, *args: Any) -> CodeRun:
    raise CodeExecutionFailed(
        f"could not create an E2B sandbox at {endpoint.api_url}: AuthenticationException: "
        f"key {endpoint.api_key.get_secret_value()} refused"
    )


class ExecuteCodeBlock(ConnectsOut, Block):
    id = "0b02b072-abe7-11ef-8372-fb5d162dd712"
    description = "Executes code in a sandbox environment with internet access."
    categories = frozenset({BlockCategory.DEVELOPER_TOOLS})
    credentials = (
        CredentialsField(
            "credentials", provider="e2b", type="api_key", optional=True, env_fallback="AGENTFLOW_E2B_API_KEY"
        ),
    )
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        credentials: Any = Field(default=None, description='An E2B credential reference: {"id": ...}')
        setup_commands: list[str] = Field(
            default_factory=list,
            description="Shell commands to set up the sandbox before running the code (run with sh, "
            "in the foreground)",
        )
        code: str = Field(default="", description="Code to execute in the sandbox")
        language: ProgrammingLanguage = Field(
            default=ProgrammingLanguage.PYTHON, description="Programming language to execute"
        )
        timeout: int = Field(default=300, description="Sandbox lifetime in seconds from creation")
        dispose_sandbox: bool = Field(
            default=True,
            description="Whether to dispose of the sandbox immediately after execution; otherwise it "
            "runs until its timeout expires",
        )
        template_id: str = Field(default="", description="An E2B sandbox template ID (empty: the default)")

    class Output(BlockOutput):
        main_result: dict[str, Any] = Field(description="The main result from the code execution")
        results: list[dict[str, Any]] = Field(description="List of results from the code execution")
        response: str = Field(description="Text output (if any) of the main execution result")
        stdout_logs: str = Field(description="Standard output logs from execution")
        stderr_logs: str = Field(description="Standard error logs from execution")

    self_tests = (
        BlockSelfTest(
            input={
                "code": "print('Hello World')",
                "language": "python",
                "setup_commands": [],
                "timeout": 300,
            },
            output=[
                ("main_result", {"text": "Hello World"}),
                ("results", [{"text": "Hello World", "is_main_result": True}]),
                ("response", "Hello World"),
                ("stdout_logs", "Hello World\n"),
            ],
            mocks={"_resolve": fixed_resolve(), "execute_code": _hello_world},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"code": "print(1)"},
            output=[("error", lambda e: "AuthenticationException" in e and "mock-e2b-api-key" not in e)],
            mocks={"_resolve": fixed_resolve(), "execute_code": _raises},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"code": "print(1)"},
            output=[("error", lambda e: "10.0.0.7" in e and "allow_private_addresses" in e)],
            mocks={"_resolve": fixed_resolve(PRIVATE_TEST_ADDRESS)},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    # --- I/O helpers (self-tests replace them) ----------------------------------------------------
    async def execute_code(
        self,
        endpoint: E2BEndpoint,
        policy: OutboundPolicy,
        code: str,
        language: ProgrammingLanguage,
        setup_commands: list[str],
        timeout: int,
        template_id: str,
        dispose_sandbox: bool,
    ) -> CodeRun:
        """The whole sandbox session, every connection through the checked proxy (module docstring)."""
        proxy = checked_proxy()
        mark = proxy.refusal_mark()
        try:
            return await self._session(
                endpoint,
                proxy.url_for(policy),
                code,
                language,
                setup_commands,
                timeout,
                template_id,
                dispose_sandbox,
            )
        except CodeExecutionFailed as exc:
            refusals = proxy.refusals_since(policy, mark)
            if refusals:  # the SDK's error may not say why: the policy's reason does
                raise RequestRefused(refusals[0]) from exc
            raise

    async def _session(
        self,
        endpoint: E2BEndpoint,
        proxy_url: str,
        code: str,
        language: ProgrammingLanguage,
        setup_commands: list[str],
        timeout: int,
        template_id: str,
        dispose_sandbox: bool,
    ) -> CodeRun:
        # Imported here: the SDK is heavy and only this block needs it.
        from e2b_code_interpreter import AsyncSandbox

        options: dict[str, Any] = {
            "api_key": endpoint.api_key.get_secret_value(),
            "api_url": endpoint.api_url,
            "domain": endpoint.domain,
            "debug": False,  # debug mode would skip creating a sandbox and talk to localhost
            "proxy": proxy_url,
        }
        if endpoint.sandbox_url:
            options["sandbox_url"] = endpoint.sandbox_url
        try:
            sandbox = await AsyncSandbox.create(template=template_id or None, timeout=timeout, **options)
        except Exception as exc:
            raise CodeExecutionFailed(
                f"could not create an E2B sandbox at {endpoint.api_url}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            for command in setup_commands:
                try:
                    await sandbox.commands.run(command)
                except Exception as exc:
                    raise CodeExecutionFailed(
                        f"setup command {command!r} failed: {type(exc).__name__}: {exc}"
                    ) from exc
            try:
                # Like AutoGPT: a sandbox whose code raised is killed at once.
                execution = await sandbox.run_code(
                    code, language=language.value, on_error=lambda _error: sandbox.kill()
                )
            except Exception as exc:
                raise CodeExecutionFailed(f"running the code failed: {type(exc).__name__}: {exc}") from exc
            if execution.error:
                raise CodeExecutionFailed(_execution_error_text(execution.error))
            return CodeRun(
                results=[result_data(r) for r in execution.results],
                text=execution.text,
                stdout="".join(execution.logs.stdout),
                stderr="".join(execution.logs.stderr),
            )
        finally:
            if dispose_sandbox:
                # A failed kill leaves the sandbox to expire by itself; the run's outcome stands.
                with contextlib.suppress(Exception):
                    await sandbox.kill()

    # --- run ----------------------------------------------------------------------------------------
    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_e2b(ctx)
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        if not endpoint.api_key.get_secret_value():
            yield (
                "error",
                "no E2B API key: give the node a reference to a stored e2b api_key credential, "
                "or set AGENTFLOW_E2B_API_KEY",
            )
            return
        try:
            run = await self.execute_code(
                endpoint,
                self.outbound_policy(ctx.settings),
                input.code,
                input.language,
                input.setup_commands,
                input.timeout,
                input.template_id,
                input.dispose_sandbox,
            )
        except (RequestRefused, CodeExecutionFailed) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        main_result = next((dict(r) for r in run.results if r.get("is_main_result")), None)
        if main_result is not None:
            main_result.pop("is_main_result", None)
            yield "main_result", main_result
        yield "results", run.results
        if run.text:
            yield "response", run.text
        if run.stdout:
            yield "stdout_logs", run.stdout
        if run.stderr:
            yield "stderr_logs", run.stderr
