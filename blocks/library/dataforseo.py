"""DataForSeoRelatedKeywordsBlock and DataForSeoKeywordSuggestionsBlock (AutoGPT blocks/dataforseo/):
keyword research on the DataForSEO Labs REST API.

Like AutoGPT's DataForSeoClient: POST `<base>/v3/dataforseo_labs/google/related_keywords/live` (or
`.../keyword_suggestions/live`) with HTTP basic auth (login:password) and a JSON array of one task
{keyword, location_code?, language_code?, include_seed_keyword, include_serp_info,
include_clickstream_data, limit, depth? (related keywords only)}; None values are left out. An HTTP
status other than 200 fails with the envelope's `status_message`; otherwise `tasks[0]` must have
status_code 20000 and its `result` list is used (no tasks: an empty result). The first result's
`items` become the block's keyword records; each is yielded on the per-item pin, then the whole list,
the count and the seed keyword. Any failure goes to `error` ("Failed to fetch related keywords: ...").

Login and endpoint, first match wins:

1. the node's credential (pin `credentials`, provider "dataforseo", type user_password), resolved by
   the engine: JSON `{"username": ..., "password": ..., "base_url": ...}` (or `login`), or `login:password`;
2. the environment, read when the node runs: AGENTFLOW_DATAFORSEO_BASE_URL;
3. https://api.dataforseo.com.

Every request is address-checked (blocks/provider_http.py): private, loopback and other non-public
addresses are refused unless `ctx.settings["allow_private_addresses"]`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from blocks.provider_http import (
    TRANSPORT_FAILURES,
    ProviderCalls,
    ProviderError,
    RequestRefused,
    mock_credentials,
    mock_wire,
    private_address_self_test,
    resolve_endpoint,
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

DEFAULT_BASE_URL = "https://api.dataforseo.com"
RELATED_KEYWORDS_PATH = "/v3/dataforseo_labs/google/related_keywords/live"
KEYWORD_SUGGESTIONS_PATH = "/v3/dataforseo_labs/google/keyword_suggestions/live"
REQUEST_TIMEOUT = httpx.Timeout(120.0, connect=15.0)
TASK_OK = 20000


@dataclass(frozen=True)
class DataForSeoLogin:
    base_url: str
    username: str
    password: SecretStr

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self._token()}", "Content-Type": "application/json"}

    def _token(self) -> str:
        pair = f"{self.username}:{self.password.get_secret_value()}"
        return base64.b64encode(pair.encode()).decode("ascii")

    def scrub(self, text: str) -> str:
        # The password and the header carrying it; the login name is not a secret.
        for secret in (self._token(), self.password.get_secret_value()):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


def resolve_login(ctx: RunContext) -> DataForSeoLogin:
    endpoint = resolve_endpoint(ctx, "dataforseo", DEFAULT_BASE_URL)
    options = endpoint.options
    username = str(options.get("username") or options.get("login") or "")
    password = str(options.get("password") or "")
    key = endpoint.api_key.get_secret_value()
    if not username and ":" in key:
        username, password = key.split(":", 1)
    if not username or not password:
        raise ProviderError(
            "the dataforseo credential has no login: store JSON "
            '{"username": ..., "password": ...} (or "login:password")'
        )
    return DataForSeoLogin(endpoint.base_url, username, SecretStr(password))


def _task_payload(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """AutoGPT sends only the fields that are not None, as a list of one task."""
    return [{key: value for key, value in values.items() if value is not None}]


def _answer_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(data, dict) and data.get("status_message"):
        return str(data["status_message"])[:300]
    return "Unknown error"


def _first_items(results: Any) -> list[Any]:
    """The first result's `items` (AutoGPT: results[0].get("items") or [])."""
    if not results:
        return []
    first = results[0] if isinstance(results, list) else results
    items = first.get("items") if isinstance(first, dict) else None
    return list(items) if isinstance(items, list) else []


def _section(record: Any, key: str) -> dict[str, Any]:
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, dict) else {}


class _DataForSeoBlock(ProviderCalls, Block):
    """The Labs call shared by both blocks (abstract: no id)."""

    categories = frozenset({BlockCategory.SEARCH, BlockCategory.DATA})
    credentials = (CredentialsField("credentials", provider="dataforseo", type="user_password"),)
    # One attempt, as AutoGPT; these failures are DataForSEO's (its circuit breaker), not a refused
    # login or a task DataForSEO rejected.
    retry_policy = RetryPolicy(
        attempts=1, retry_on_errors=("DataForSEO API error (5", "(429)", *TRANSPORT_FAILURES)
    )

    async def labs_call(self, ctx: RunContext, path: str, task: Mapping[str, Any]) -> list[Any]:
        """POST one task; the task's `result` list (AutoGPT's DataForSeoClient)."""
        login = resolve_login(ctx)
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                response = await client.post(
                    f"{login.base_url}{path}", headers=login.headers(), json=_task_payload(task)
                )
        except RequestRefused:
            raise
        except httpx.HTTPError as exc:
            raise ProviderError(
                login.scrub(f"cannot reach DataForSEO at {login.base_url}: {type(exc).__name__}: {exc}")
            ) from exc
        if response.status_code != 200:
            raise ProviderError(
                login.scrub(f"DataForSEO API error ({response.status_code}): {_answer_message(response)}")
            )
        try:
            data = response.json()
        except ValueError:
            raise ProviderError(
                f"DataForSEO answered no JSON: {login.scrub(response.text[:200])!r}"
            ) from None
        tasks = data.get("tasks") if isinstance(data, dict) else None
        if not tasks:
            return []
        first = tasks[0] if isinstance(tasks[0], dict) else {}
        if first.get("status_code") != TASK_OK:
            raise ProviderError(
                login.scrub(f"DataForSEO task error: {first.get('status_message') or 'Task failed'}")
            )
        result = first.get("result")
        return result if isinstance(result, list) else []


class KeywordRecord(BaseModel):
    """AutoGPT's RelatedKeyword / KeywordSuggestion: one keyword with its metrics."""

    keyword: str = Field(description="The keyword")
    search_volume: int | None = Field(default=None, description="Monthly search volume")
    competition: float | None = Field(default=None, description="Competition level (0-1)")
    cpc: float | None = Field(default=None, description="Cost per click in USD")
    keyword_difficulty: int | None = Field(default=None, description="Keyword difficulty score")
    serp_info: dict[str, Any] | None = Field(default=None, description="SERP data for the keyword")
    clickstream_data: dict[str, Any] | None = Field(default=None, description="Clickstream data metrics")


RelatedKeyword = KeywordRecord
KeywordSuggestion = KeywordRecord


def keyword_record(data: Any, include_serp_info: bool, include_clickstream_data: bool) -> KeywordRecord:
    """A keyword record from DataForSEO's keyword data (`keyword_info`, `keyword_properties`, ...)."""
    info = _section(data, "keyword_info")
    properties = _section(data, "keyword_properties")
    record = data if isinstance(data, dict) else {}
    return KeywordRecord(
        keyword=str(record.get("keyword") or ""),
        search_volume=info.get("search_volume"),
        competition=info.get("competition"),
        cpc=info.get("cpc"),
        keyword_difficulty=properties.get("keyword_difficulty"),
        serp_info=record.get("serp_info") if include_serp_info else None,
        clickstream_data=record.get("clickstream_keyword_info") if include_clickstream_data else None,
    )


# A record's fields when DataForSEO gives none of its metrics.
_EMPTY_RECORD: dict[str, Any] = KeywordRecord(keyword="").model_dump()


async def _async_value(value: Any) -> Any:
    """A self-test mock's answer for an async helper."""
    return value


TEST_CREDENTIALS = mock_credentials(
    "9f3d6a11-4c2b-4e8a-9b1d-0c5e7f2a8d31",
    "dataforseo",
    "Mock DataForSEO login",
    {"username": "mock-login", "password": "mock-dataforseo-pass", "base_url": DEFAULT_BASE_URL},
    type="user_password",
)


def _fake_labs(request: httpx.Request) -> httpx.Response:
    """Self-test wire: DataForSEO's envelope for one task, or its 401."""
    expected = base64.b64encode(b"mock-login:mock-dataforseo-pass").decode()
    if request.headers.get("Authorization") != f"Basic {expected}":
        return httpx.Response(401, json={"status_code": 40100, "status_message": "You are not authorized."})
    (task,) = json.loads(request.content)
    item = {"keyword": f"{task['keyword']} tools", "keyword_info": {"search_volume": 320}}
    if request.url.path == RELATED_KEYWORDS_PATH:
        item = {"keyword_data": item, "depth": 1}
    result = [{"seed_keyword": task["keyword"], "items_count": 1, "items": [item]}]
    return httpx.Response(
        200, json={"status_code": TASK_OK, "tasks": [{"status_code": TASK_OK, "result": result}]}
    )


def _labs_wire_self_test(one_pin: str, list_pin: str) -> BlockSelfTest:
    """A block's run against the fake Labs API: one keyword, "seo tools", with only a search volume."""
    record = {**_EMPTY_RECORD, "keyword": "seo tools", "search_volume": 320}
    return BlockSelfTest(
        input={"keyword": "seo"},
        output=[(one_pin, record), (list_pin, [record]), ("total_count", 1), ("seed_keyword", "seo")],
        mocks=mock_wire(lambda: _fake_labs),
        credentials={"credentials": TEST_CREDENTIALS},
    )


class KeywordQueryInput(BlockInput):
    """The inputs both blocks take; each block describes its own `keyword`, which keeps its place."""

    credentials: Any = Field(
        default=None,
        description='A DataForSEO credential reference: {"id": ..., "provider": "dataforseo", "type": "user_password"}',
    )
    keyword: str
    location_code: int | None = Field(
        default=2840, description="Location code for targeting (e.g., 2840 for USA)"
    )
    language_code: str | None = Field(default="en", description="Language code (e.g., 'en' for English)")
    include_seed_keyword: bool = Field(default=True, description="Include the seed keyword in results")
    include_serp_info: bool = Field(default=False, description="Include SERP information")
    include_clickstream_data: bool = Field(default=False, description="Include clickstream metrics")
    limit: int = Field(default=100, ge=1, le=3000, description="Maximum number of results (up to 3000)")


def _keyword_task(input: KeywordQueryInput) -> dict[str, Any]:
    """The Labs task fields both blocks send (AutoGPT's order)."""
    return {
        "keyword": input.keyword,
        "location_code": input.location_code,
        "language_code": input.language_code,
        "include_seed_keyword": input.include_seed_keyword,
        "include_serp_info": input.include_serp_info,
        "include_clickstream_data": input.include_clickstream_data,
        "limit": input.limit,
    }


class DataForSeoRelatedKeywordsBlock(_DataForSeoBlock):
    id = "8f2e4d6a-1b3c-4a5e-9d7f-2c8e6a4b3f1d"
    description = "Get related keywords from DataForSEO Labs Google API"
    repeated_output_pins = frozenset({"related_keyword"})

    class Input(KeywordQueryInput):
        keyword: str = Field(description="Seed keyword to find related keywords for")
        depth: int = Field(
            default=1,
            ge=0,
            le=4,
            description=(
                "Keyword search depth (0-4). Controls the number of returned keywords: 0=1 keyword, "
                "1=~8 keywords, 2=~72 keywords, 3=~584 keywords, 4=~4680 keywords"
            ),
        )

    class Output(BlockOutput):
        related_keywords: list[RelatedKeyword] = Field(description="List of related keywords with metrics")
        related_keyword: RelatedKeyword = Field(description="A related keyword with metrics")
        total_count: int = Field(description="Total number of related keywords returned")
        seed_keyword: str = Field(description="The seed keyword used for the query")

    self_tests = (
        BlockSelfTest(
            input={"keyword": "content marketing", "location_code": 2840, "language_code": "en", "limit": 1},
            output=[
                (
                    "related_keyword",
                    lambda x: x["keyword"] == "content strategy" and x["search_volume"] == 8000,
                ),
                ("related_keywords", lambda x: isinstance(x, list) and len(x) == 1),
                ("total_count", 1),
                ("seed_keyword", "content marketing"),
            ],
            mocks={
                "_fetch_related_keywords": lambda *args, **kwargs: _async_value(
                    [
                        {
                            "items": [
                                {
                                    "keyword_data": {
                                        "keyword": "content strategy",
                                        "keyword_info": {
                                            "search_volume": 8000,
                                            "competition": 0.4,
                                            "cpc": 3.0,
                                        },
                                        "keyword_properties": {"keyword_difficulty": 45},
                                    }
                                }
                            ]
                        }
                    ]
                )
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        _labs_wire_self_test("related_keyword", "related_keywords"),
        private_address_self_test({"keyword": "seo"}, {"credentials": TEST_CREDENTIALS}),
    )

    async def _fetch_related_keywords(self, ctx: RunContext, input: Input) -> list[Any]:
        task = {**_keyword_task(input), "depth": input.depth}
        return await self.labs_call(ctx, RELATED_KEYWORDS_PATH, task)

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            results = await self._fetch_related_keywords(ctx, input)
            # Related-keyword items wrap the keyword in `keyword_data`.
            keywords = [
                keyword_record(
                    _section(item, "keyword_data"), input.include_serp_info, input.include_clickstream_data
                )
                for item in _first_items(results)
            ]
        except (ProviderError, RequestRefused, ValueError, TypeError, AttributeError) as exc:
            yield "error", f"Failed to fetch related keywords: {exc}"
            return
        for keyword in keywords:
            yield "related_keyword", keyword
        yield "related_keywords", keywords
        yield "total_count", len(keywords)
        yield "seed_keyword", input.keyword


class DataForSeoKeywordSuggestionsBlock(_DataForSeoBlock):
    id = "73c3e7c4-2b3f-4e9f-9e3e-8f7a5c3e2d45"
    description = "Get keyword suggestions from DataForSEO Labs Google API"
    repeated_output_pins = frozenset({"suggestion"})

    class Input(KeywordQueryInput):
        keyword: str = Field(description="Seed keyword to get suggestions for")

    class Output(BlockOutput):
        suggestions: list[KeywordSuggestion] = Field(description="List of keyword suggestions with metrics")
        suggestion: KeywordSuggestion = Field(description="A single keyword suggestion with metrics")
        total_count: int = Field(description="Total number of suggestions returned")
        seed_keyword: str = Field(description="The seed keyword used for the query")

    self_tests = (
        BlockSelfTest(
            input={"keyword": "digital marketing", "location_code": 2840, "language_code": "en", "limit": 1},
            output=[
                ("suggestion", lambda x: x["keyword"] == "digital marketing strategy" and x["cpc"] == 2.5),
                ("suggestions", lambda x: isinstance(x, list) and len(x) == 1),
                ("total_count", 1),
                ("seed_keyword", "digital marketing"),
            ],
            mocks={
                "_fetch_keyword_suggestions": lambda *args, **kwargs: _async_value(
                    [
                        {
                            "items": [
                                {
                                    "keyword": "digital marketing strategy",
                                    "keyword_info": {"search_volume": 10000, "competition": 0.5, "cpc": 2.5},
                                    "keyword_properties": {"keyword_difficulty": 50},
                                }
                            ]
                        }
                    ]
                )
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        _labs_wire_self_test("suggestion", "suggestions"),
        BlockSelfTest(
            input={"keyword": "seo"},
            output=[
                ("error", lambda e: "DataForSEO API error (401)" in e and "mock-dataforseo-pass" not in e)
            ],
            mocks=mock_wire(lambda: _fake_labs),
            credentials={
                "credentials": Credentials(
                    "c",
                    "dataforseo",
                    "user_password",
                    SecretStr(
                        json.dumps(
                            {
                                "username": "mock-login",
                                "password": "wrong-pass-123",
                                "base_url": DEFAULT_BASE_URL,
                            }
                        )
                    ),
                    "local",
                )
            },
        ),
    )

    async def _fetch_keyword_suggestions(self, ctx: RunContext, input: Input) -> list[Any]:
        return await self.labs_call(ctx, KEYWORD_SUGGESTIONS_PATH, _keyword_task(input))

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            results = await self._fetch_keyword_suggestions(ctx, input)
            suggestions = [
                keyword_record(item, input.include_serp_info, input.include_clickstream_data)
                for item in _first_items(results)
            ]
        except (ProviderError, RequestRefused, ValueError, TypeError, AttributeError) as exc:
            yield "error", f"Failed to fetch keyword suggestions: {exc}"
            return
        for suggestion in suggestions:
            yield "suggestion", suggestion
        yield "suggestions", suggestions
        yield "total_count", len(suggestions)
        yield "seed_keyword", input.keyword
