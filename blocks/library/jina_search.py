"""SearchTheWebBlock and ExtractWebsiteContentBlock (AutoGPT blocks/jina/search.py): Jina-style GETs.

Search: GET `<search base>/<url-encoded query>`; read: GET `<reader base>/<url>`; both answer text.
Base URLs and the API key, first match wins:

1. the node's credential (pin `credentials`, provider "jina", type api_key), resolved by the engine:
   the secret is the API key, or JSON `{"api_key": ..., "search_url": ..., "reader_url": ..., "base_url": ...}`
   (`base_url` B means search at B/s and reader at B/r);
2. the environment at run time: AGENTFLOW_JINA_SEARCH_URL, AGENTFLOW_JINA_READER_URL,
   AGENTFLOW_JINA_BASE_URL (same meaning as base_url), AGENTFLOW_JINA_API_KEY;
3. https://s.jina.ai and https://r.jina.ai.

Under the outbound policy (blocks/outbound), every request resolves its host once and refuses
private, loopback and other non-public addresses unless `ctx.settings["allow_private_addresses"]`;
the request then goes to the checked address. Redirects are not followed.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from blocks.outbound import (
    PRIVATE_TEST_ADDRESS,
    ConnectsOut,
    RequestRefused,
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

DEFAULT_SEARCH_URL = "https://s.jina.ai"
DEFAULT_READER_URL = "https://r.jina.ai"
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
MAX_ANSWER_BYTES = 5_000_000


@dataclass(frozen=True)
class JinaEndpoint:
    search_url: str
    reader_url: str
    api_key: SecretStr

    def headers(self) -> dict[str, str]:
        key = self.api_key.get_secret_value()
        return {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

    def scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        return text.replace(key, "***") if len(key) >= 4 else text


def resolve_jina(ctx: RunContext) -> JinaEndpoint:
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
    base = str(data.get("base_url") or env.get("AGENTFLOW_JINA_BASE_URL") or "").rstrip("/")
    search = data.get("search_url") or (base + "/s" if data.get("base_url") else "")
    reader = data.get("reader_url") or (base + "/r" if data.get("base_url") else "")
    search = search or env.get("AGENTFLOW_JINA_SEARCH_URL") or (base + "/s" if base else DEFAULT_SEARCH_URL)
    reader = reader or env.get("AGENTFLOW_JINA_READER_URL") or (base + "/r" if base else DEFAULT_READER_URL)
    key = str(data.get("api_key") or (env.get("AGENTFLOW_JINA_API_KEY", "") if credential is None else ""))
    return JinaEndpoint(str(search).rstrip("/"), str(reader).rstrip("/"), SecretStr(key))


class _JinaBlock(ConnectsOut, Block):
    """Shared GET with the address check (abstract: no id). Self-tests replace `_resolve` and `_send`."""

    categories = frozenset({BlockCategory.SEARCH})
    credentials = (
        CredentialsField(
            "credentials",
            provider="jina",
            type="api_key",
            optional=True,
            env_fallback="AGENTFLOW_JINA_API_KEY",
        ),
    )
    repeated_output_pins = frozenset()

    async def _send(self, url: httpx.URL, headers: dict[str, str], sni: str | None) -> httpx.Response:
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False
        ) as client:
            response = await client.get(
                url, headers=headers, extensions={"sni_hostname": sni} if sni else None
            )
            await response.aread()
            return response

    async def get_text(self, url: str, headers: dict[str, str], ctx: RunContext) -> httpx.Response:
        parsed = normalise_url(url)
        target, sni = await self.outbound_policy(ctx.settings).pin(parsed)
        return await self._send(target, {**headers, "Host": parsed.netloc.decode("ascii")}, sni)


def _fake_send(text: str, status: int = 200) -> Any:
    async def send(url: httpx.URL, headers: dict[str, str], sni: str | None) -> httpx.Response:
        if headers.get("Authorization") != "Bearer jina-test-key":
            return httpx.Response(401, text="no key")
        return httpx.Response(status, text=f"{text} {url.raw_path.decode()}")

    return send


TEST_CREDENTIALS = Credentials(
    id="01234567-0000-4000-8000-00000000a11a",
    provider="jina",
    type="api_key",
    secret=SecretStr("jina-test-key"),
    owner_user_id="local",
    title="Mock Jina key",
)


class SearchTheWebBlock(_JinaBlock):
    id = "87840993-2053-44b7-8da4-187ad4ee518c"
    description = "This block searches the internet for the given search query."

    class Input(BlockInput):
        credentials: Any = Field(default=None, description='A Jina credential reference: {"id": ...}')
        query: str = Field(description="The search query to search the web for")

    class Output(BlockOutput):
        results: str = Field(description="The search results including content from top 5 URLs")

    self_tests = (
        BlockSelfTest(
            input={"query": "Artificial Intelligence"},
            output=[("results", "search content /Artificial%20Intelligence")],
            mocks={"_resolve": fixed_resolve(), "_send": _fake_send("search content")},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"query": "x"},
            output=[("error", lambda e: "Search service unavailable" in e and "jina-test-key" not in e)],
            mocks={"_resolve": fixed_resolve(), "_send": _fake_send("boom", 503)},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"query": "x"},
            output=[("error", lambda e: "10.0.0.7" in e and "allow_private_addresses" in e)],
            mocks={"_resolve": fixed_resolve(PRIVATE_TEST_ADDRESS)},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        endpoint = resolve_jina(ctx)
        url = f"{endpoint.search_url}/{quote(input.query)}"
        try:
            response = await self.get_text(url, endpoint.headers(), ctx)
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        except httpx.HTTPError as exc:
            yield "error", endpoint.scrub(f"Unexpected error during search: {type(exc).__name__}: {exc}")
            return
        if 400 <= response.status_code < 500:
            yield (
                "error",
                endpoint.scrub(f"Search request failed: HTTP {response.status_code}: {response.text[:500]}"),
            )
        elif response.status_code >= 300:
            yield (
                "error",
                endpoint.scrub(
                    f"Search service unavailable: HTTP {response.status_code}: {response.text[:500]}"
                ),
            )
        else:
            yield "results", response.text[:MAX_ANSWER_BYTES]


class ExtractWebsiteContentBlock(_JinaBlock):
    id = "436c3984-57fd-4b85-8e9a-459b356883bd"
    description = "This block scrapes the content from the given web URL."

    class Input(BlockInput):
        credentials: Any = Field(default=None, description='A Jina credential reference: {"id": ...}')
        url: str = Field(description="The URL to scrape the content from")
        raw_content: bool = Field(
            default=False, description="Fetch the page itself instead of through the Jina-style reader"
        )

    class Output(BlockOutput):
        content: str = Field(description="The scraped content from the given URL")

    self_tests = (
        BlockSelfTest(
            input={"url": "https://en.wikipedia.org/wiki/Artificial_intelligence"},
            output=[("content", "scraped content /https://en.wikipedia.org/wiki/Artificial_intelligence")],
            mocks={"_resolve": fixed_resolve(), "_send": _fake_send("scraped content")},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"url": "http://127.0.0.1:8080/admin", "raw_content": True},
            output=[("error", lambda e: "127.0.0.1" in e and "allow_private_addresses" in e)],
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        endpoint = resolve_jina(ctx)
        if input.raw_content:
            url, headers = input.url, {}
        else:
            url, headers = f"{endpoint.reader_url}/{input.url}", endpoint.headers()
        try:
            response = await self.get_text(url, headers, ctx)
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        except httpx.HTTPError as exc:
            yield "error", endpoint.scrub(f"request to {url!r} failed: {type(exc).__name__}: {exc}")
            return
        if response.status_code >= 300:
            yield (
                "error",
                endpoint.scrub(
                    f"could not retrieve {input.url!r}: HTTP {response.status_code}: {response.text[:500]}"
                ),
            )
            return
        yield "content", response.text[:MAX_ANSWER_BYTES]
