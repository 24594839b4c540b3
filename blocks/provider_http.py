"""Calls to a hosted provider's REST API (Ideogram, Replicate, Medium): where the base URL and the API
key come from, and an httpx transport that checks the address of every request it sends.

Endpoint, first match wins:

1. the node's credential (pin `credentials`), resolved by the engine: its secret is the API key, or a
   JSON object `{"api_key": ..., "base_url": ..., ...}` (other keys are provider options, e.g. Medium's
   `author_id`);
2. the environment, read when the node runs: `AGENTFLOW_<PROVIDER>_BASE_URL`;
3. the provider's public API.

Every request (to the base URL, and to any URL a provider's answer names, such as a generated image to
upscale) follows the outbound policy (blocks/outbound): its host is resolved once, private, loopback,
link-local and other non-public addresses are refused unless `ctx.settings["allow_private_addresses"]`,
and the request goes to the checked address (the Host header and the TLS server name keep the original
host). Redirects are not followed and proxy settings from the environment are not used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from blocks.outbound import (
    PRIVATE_TEST_ADDRESS,
    PUBLIC_TEST_ADDRESS,
    CheckedAsyncTransport,
    ConnectsOut,
    RequestRefused,
    fixed_resolve,
)
from blocks.sdk import BlockSelfTest, Credentials, RunContext

__all__ = [
    "TRANSPORT_FAILURES",
    "ProviderCalls",
    "ProviderEndpoint",
    "ProviderError",
    "RequestRefused",
    "answer_detail",
    "fixed_resolve",
    "mock_credentials",
    "mock_wire",
    "private_address_self_test",
    "refused_private_address",
    "resolve_endpoint",
]


# httpx's names for a request that never got an answer: in an error text, the provider's failure
# (what a block's RetryPolicy counts towards its circuit breaker), never the user's.
TRANSPORT_FAILURES = (
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
)


class ProviderError(Exception):
    """A provider call failed; the message is safe to show once scrubbed of the key. `retryable`:
    whether another attempt could succeed (False for a refused key or invalid input)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ProviderEndpoint:
    provider: str
    base_url: str
    api_key: SecretStr
    # Other keys of a JSON credential (provider options); never logged.
    options: Mapping[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        return text.replace(key, "***") if len(key) >= 4 else text


def base_url_var(provider: str) -> str:
    return f"AGENTFLOW_{provider.upper()}_BASE_URL"


def resolve_endpoint(
    ctx: RunContext, provider: str, default_base_url: str, pin: str = "credentials"
) -> ProviderEndpoint:
    """The node's credential (plain key or JSON), then the environment, then the public API."""
    credential: Credentials | None = ctx.credentials.get(pin)
    if credential is None:
        raise ProviderError(
            f'no {provider} credential was resolved for pin {pin!r} (give the node a reference {{"id": ...}} '
            f"to a stored {provider} api_key credential)"
        )
    secret = credential.secret.get_secret_value()
    try:
        parsed = json.loads(secret)
    except ValueError:
        parsed = None
    data: dict[str, Any] = parsed if isinstance(parsed, dict) else {"api_key": secret}
    base = str(data.get("base_url") or os.environ.get(base_url_var(provider)) or default_base_url)
    options = {k: v for k, v in data.items() if k not in ("api_key", "base_url")}
    return ProviderEndpoint(provider, base.rstrip("/"), SecretStr(str(data.get("api_key") or "")), options)


class ProviderCalls(ConnectsOut):
    """Mixin for provider blocks: an httpx client whose every request is address-checked.

    Self-tests replace `_resolve` (name resolution) and `_transport` (the wire, e.g. an
    httpx.MockTransport)."""

    def _transport(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport()

    def checked_transport(self, ctx: RunContext) -> CheckedAsyncTransport:
        """The outbound policy's transport (blocks/outbound) over this block's wire."""
        return CheckedAsyncTransport(self.outbound_policy(ctx.settings), self._transport())

    def client(self, ctx: RunContext, timeout: httpx.Timeout) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self.checked_transport(ctx), timeout=timeout, follow_redirects=False, trust_env=False
        )


def answer_detail(response: httpx.Response, limit: int = 300) -> str:
    """The most telling part of an error answer: a JSON message or detail, else the start of the text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("message"):
            return str(errors[0]["message"])[:limit]
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:limit]
        for key in ("detail", "message", "error", "title"):
            if data.get(key):
                value = data[key]
                return (value if isinstance(value, str) else json.dumps(value))[:limit]
    return response.text[:limit].strip() or response.reason_phrase


# --- self-test wiring: what the provider blocks' self-tests put in place of DNS and the wire ----------


def mock_wire(
    new_handler: Callable[[], Callable[[httpx.Request], httpx.Response]], address: str = PUBLIC_TEST_ADDRESS
) -> dict[str, Callable[..., Any]]:
    """Self-test mocks for a ProviderCalls block: every host resolves to `address`, and the requests of
    each client the block opens are answered by a fresh `new_handler()` (a stateful fake starts afresh)."""
    return {"_resolve": fixed_resolve(address), "_transport": lambda: httpx.MockTransport(new_handler())}


def mock_credentials(
    id: str, provider: str, title: str, secret: Mapping[str, Any], type: str = "api_key"
) -> Credentials:
    """A self-test credential whose secret is the JSON `secret`; it should name the provider's public
    `base_url`, so that self-tests do not depend on the environment."""
    return Credentials(
        id=id,
        provider=provider,
        type=type,
        secret=SecretStr(json.dumps(dict(secret))),
        owner_user_id="local",
        title=title,
    )


def refused_private_address(error: str) -> bool:
    """Whether an error text is the refusal of PRIVATE_TEST_ADDRESS."""
    return PRIVATE_TEST_ADDRESS in error and "allow_private_addresses" in error


def private_address_self_test(
    input: Mapping[str, Any], credentials: Mapping[str, Credentials]
) -> BlockSelfTest:
    """The self-test every address-checked block carries: a host that resolves to a private address is
    refused before any request is sent."""
    return BlockSelfTest(
        input=input,
        output=[("error", refused_private_address)],
        mocks={"_resolve": fixed_resolve(PRIVATE_TEST_ADDRESS)},
        credentials=credentials,
    )
