"""SendWebRequestBlock (AutoGPT blocks/http.py): one HTTP request, with server-side request forgery guards.

Every hop (the first request and each redirect) follows the outbound policy (blocks/outbound): the
host is resolved once and private, loopback, link-local and other non-global addresses are refused
unless the operator sets `ctx.settings["allow_private_addresses"]`; the request is sent to the checked
IP itself (Host header and TLS server name keep the original host). A redirect to another origin
drops Authorization, Proxy-Authorization, Cookie and every header taken from a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
from pydantic import Field, SecretStr

from blocks.outbound import (
    ConnectsOut,
    RequestRefused,
    fixed_resolve,
    headers_for_next_hop,
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
    RetryPolicy,
    RunContext,
)

MAX_REDIRECTS = 10
MAX_JSON_BODY = 10_000_000
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# One attempt by default (a request need not be idempotent; a node may ask for retries in its
# metadata); 5xx answers and transport failures are what is transient, and what trips a host's breaker.
HTTP_RETRY_POLICY = RetryPolicy(
    attempts=1,
    retry_on_pins=frozenset({"server_error"}),
    retry_on_errors=(
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
    ),
)


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"
    PATCH = "PATCH"
    OPTIONS = "OPTIONS"
    HEAD = "HEAD"


@dataclass(slots=True)
class OutgoingRequest:
    """What `_send` puts on the wire: `url` already points at the checked IP."""

    method: str
    url: httpx.URL
    headers: dict[str, str]
    sni_hostname: str | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    content: bytes | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)


def decode_data_uri(uri: str, index: int) -> tuple[str, bytes, str]:
    """A `data:` URI file as (filename, bytes, mime type); other file references are refused."""
    if not uri.startswith("data:") or "," not in uri:
        raise ValueError(
            f"file {index} must be a data: URI; file paths and URLs are not supported by this engine"
        )
    header, payload = uri[5:].split(",", 1)
    parts = header.split(";")
    mime = parts[0] or "application/octet-stream"
    try:
        raw = base64.b64decode(payload, validate=True) if "base64" in parts[1:] else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"file {index} is not valid base64: {exc}") from exc
    extension = mime.rsplit("/", 1)[-1] if "/" in mime else "bin"
    return f"file{index}.{extension}", raw, mime


class SendWebRequestBlock(ConnectsOut, Block):
    id = "6595ae1f-b924-42cb-9a41-551a0611c4b4"
    repeated_output_pins = frozenset()
    description = "Make an HTTP request (JSON / form / multipart)."
    categories = frozenset({BlockCategory.OUTPUT})
    retry_policy = HTTP_RETRY_POLICY

    class Input(BlockInput):
        url: str = Field(description="The URL to send the request to")
        method: HttpMethod = Field(default=HttpMethod.POST, description="The HTTP method to use")
        headers: dict[str, str] = Field(default_factory=dict, description="The headers to include")
        json_format: bool = Field(
            default=True, description="If true, send the body as JSON (unless files are also present)."
        )
        body: Any = Field(
            default=None, description="Form/JSON body payload; a mapping of form fields with files"
        )
        files_name: str = Field(default="file", description="The name of the file field in the form data.")
        files: list[str] = Field(default_factory=list, description="Files to upload, as data: URIs")

    class Output(BlockOutput):
        response: object = Field(description="The response from the server")
        client_error: object = Field(description="Errors on 4xx status codes")
        server_error: object = Field(description="Errors on 5xx status codes")

    self_tests = (
        BlockSelfTest(
            input={"url": "https://api.example.com/items", "method": "POST", "body": '{"name": "x"}'},
            output=[("response", {"ok": True, "echo": {"name": "x"}})],
            mocks={
                "_resolve": fixed_resolve(),
                "_send": lambda out: _fake_send(out, 200),
            },
        ),
        BlockSelfTest(
            input={"url": "https://api.example.com/missing", "method": "GET"},
            output=[("client_error", {"ok": False, "echo": None})],
            mocks={
                "_resolve": fixed_resolve(),
                "_send": lambda out: _fake_send(out, 404),
            },
        ),
        BlockSelfTest(
            input={"url": "http://intranet.example/", "method": "GET"},
            output=[("error", lambda e: "intranet.example" in e and "10.1.2.3" in e)],
            mocks={"_resolve": fixed_resolve("10.1.2.3")},
        ),
        BlockSelfTest(
            input={"url": "http://127.0.0.1:9/", "method": "GET"},
            output=[("error", lambda e: "127.0.0.1" in e and "allow_private_addresses" in e)],
        ),
        BlockSelfTest(
            input={"url": "file:///etc/passwd", "method": "GET"},
            output=[("error", lambda e: "scheme 'file'" in e)],
        ),
    )

    def breaker_key(self, input: Any) -> str | None:
        """One circuit breaker per host ("http:<host>"): one failing site must not stop calls to others."""
        try:
            host = normalise_url(str(getattr(input, "url", ""))).host
        except RequestRefused:
            return None
        return f"http:{host.lower()}"

    # --- I/O helpers: self-tests replace these ---------------------------------------------------------
    async def _send(self, out: OutgoingRequest) -> httpx.Response:
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False
        ) as client:
            response = await client.request(
                out.method,
                out.url,
                headers=out.headers,
                json=out.json,
                data=out.data,
                content=out.content,
                files=out.files or None,
                extensions={"sni_hostname": out.sni_hostname} if out.sni_hostname else None,
            )
            await response.aread()
            return response

    # --- logic -----------------------------------------------------------------------------------------
    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        async for pin, value in self.request(input, ctx, credential_headers=()):
            yield pin, value

    async def request(
        self, input: Input, ctx: RunContext, credential_headers: Collection[str]
    ) -> AsyncIterator[tuple[str, Any]]:
        """The request and its redirects; `credential_headers` name the headers that came from a
        credential: like Authorization and Cookie, they do not follow a redirect to another origin."""
        policy = self.outbound_policy(ctx.settings)
        body = input.body
        json_format = input.json_format
        if isinstance(body, str):
            try:
                if len(body) > MAX_JSON_BODY:
                    raise ValueError("JSON body too large")
                body = json.loads(body)
            except ValueError:
                json_format = False  # plain text (or too large to parse): sent as-is
        try:
            files = [decode_data_uri(uri, i) for i, uri in enumerate(input.files)]
        except ValueError as exc:
            yield "error", str(exc)
            return
        if files and json_format:
            yield (
                "error",
                (
                    "json_format=True cannot be combined with file uploads; set json_format=False "
                    "and put form fields in `body`."
                ),
            )
            return

        method = input.method.value
        headers = {k: v for k, v in input.headers.items() if k.lower() != "host"}
        try:
            url = normalise_url(input.url)
            response: httpx.Response | None = None
            for _ in range(MAX_REDIRECTS + 1):
                target, sni = await policy.pin(url)
                out = OutgoingRequest(
                    method=method,
                    url=target,
                    headers={**headers, "Host": url.netloc.decode("ascii")},
                    sni_hostname=sni,
                    files=[(input.files_name, f) for f in files],
                )
                if body is not None:
                    if json_format:
                        out.json = body
                    elif isinstance(body, dict):
                        out.data = body
                    elif isinstance(body, bytes):
                        out.content = body
                    else:
                        text = body if isinstance(body, str) else json.dumps(body)
                        out.content = text.encode()
                response = await self._send(out)
                location = response.headers.get("location")
                if response.status_code not in _REDIRECT_STATUSES or not location:
                    break
                next_url = normalise_url(str(url.join(location)))
                headers = headers_for_next_hop(headers, url, next_url, credential_headers)
                url = next_url
                if response.status_code in (301, 302, 303) and method != "HEAD":
                    method, body, files = "GET", None, []
            else:
                yield "error", f"too many redirects (more than {MAX_REDIRECTS}) from {input.url!r}"
                return
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        except httpx.HTTPError as exc:
            yield "error", f"request to {input.url!r} failed: {type(exc).__name__}: {exc}"
            return

        assert response is not None
        result: Any
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                result = None if response.status_code == 204 or not response.content else response.json()
            except ValueError:
                result = response.text
        else:
            result = response.text
        if 200 <= response.status_code < 300:
            yield "response", result
        elif 400 <= response.status_code < 500:
            yield "client_error", result
        else:
            yield "server_error", result


async def _fake_send(out: OutgoingRequest, status: int) -> httpx.Response:
    """Self-test stand-in for the network: echoes the JSON body it was given."""
    if out.headers.get("Host") != "api.example.com" or out.url.host != "93.184.215.14":
        raise AssertionError(f"request not pinned to the checked address: {out}")
    return httpx.Response(status, json={"ok": status < 400, "echo": out.json})


class SendAuthenticatedWebRequestBlock(SendWebRequestBlock):
    """SendWebRequest with secret headers from the user's host-scoped credential.

    The credential's title is the host it may be sent to (required: a credential with an empty host
    scope is refused, never sent anywhere); its secret is a JSON object of headers (e.g.
    {"Authorization": "Bearer ..."}). They are added only for that host, dropped by a redirect to
    another origin whatever their names, and the engine scrubs the values from everything the node
    outputs.
    """

    id = "fff86bcd-e001-4bad-a7f6-2eae4720c8dc"
    repeated_output_pins = frozenset()
    description = "Make an HTTP request with secret headers from a host-scoped credential."
    credentials = (CredentialsField("credentials", provider="http", type="host_scoped"),)

    class Input(SendWebRequestBlock.Input):
        credentials: dict[str, Any] = Field(
            description='A host-scoped credential reference: {"id": ..., "provider": "http", "type": "host_scoped"}'
        )

    self_tests = (
        BlockSelfTest(
            input={"url": "https://api.example.com/me", "method": "GET", "credentials": {"id": "c1"}},
            output=[("response", {"ok": True, "echo": None})],
            mocks={
                "_resolve": fixed_resolve(),
                "_send": lambda out: _fake_send(
                    out, 200 if out.headers.get("Authorization") == "Bearer t0k3n" else 401
                ),
            },
            credentials={
                "credentials": Credentials(
                    id="c1",
                    provider="http",
                    type="host_scoped",
                    secret=SecretStr('{"Authorization": "Bearer t0k3n"}'),
                    owner_user_id="local",
                    title="api.example.com",
                )
            },
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        credential = ctx.credentials.get("credentials")
        if credential is None:
            yield "error", "no credential was resolved for pin 'credentials'"
            return
        try:
            secret_headers = json.loads(credential.secret.get_secret_value())
            if not isinstance(secret_headers, dict):
                raise ValueError
        except ValueError:
            yield "error", f"credential {credential.id} is not a JSON object of headers"
            return
        try:
            host = normalise_url(input.url).host
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        scope = credential.title.strip()
        if not scope:
            # An empty host scope would send the secret headers to any host: refuse it.
            yield (
                "error",
                f"credential {credential.id} (pin 'credentials') has no host scope: a host-scoped "
                "credential must name the host its headers may be sent to",
            )
            return
        if scope.lower() != host.lower():
            yield "error", f"credential {credential.id} is for host {scope!r}, not {host!r}"
            return
        with_secrets = input.model_copy(update={"headers": {**input.headers, **secret_headers}})
        async for pin, value in self.request(with_secrets, ctx, credential_headers=secret_headers.keys()):
            yield pin, value
