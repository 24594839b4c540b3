"""Firecrawl blocks (AutoGPT blocks/firecrawl/crawl.py, extract.py, map.py) on Firecrawl's v2 REST API.

Like AutoGPT they use the `firecrawl-py` package (its AsyncFirecrawl client, v2 by default):

- FirecrawlCrawlBlock: POST `<api>/v2/crawl` {url, limit, scrapeOptions {formats, onlyMainContent, maxAge,
  waitFor}} starts a job; GET `<api>/v2/crawl/<id>` is polled until the job is completed, failed or
  cancelled (the client follows the answer's `next` pages). The block yields `data` (every page) and
  then, page by page, one pin per requested format.
- FirecrawlExtractBlock: POST `<api>/v2/extract` {urls, prompt, schema, enableWebSearch}, then GET
  `<api>/v2/extract/<id>` until completed; yields `data`.
- FirecrawlMapWebsiteBlock: POST `<api>/v2/map` {url}; yields `links` and `results`.

Header `Authorization: Bearer <key>`. Endpoint, first match wins: the node's `firecrawl` credential (the
key, or JSON `{"api_key", "base_url"}`), AGENTFLOW_FIRECRAWL_API_URL read at run time (the provider_http
convention AGENTFLOW_FIRECRAWL_BASE_URL is honoured too, before it), https://api.firecrawl.dev. The
client's own httpx client is swapped for one on blocks/provider_http.py's address-checking transport
(firecrawl-py takes no transport argument), so every request, `next` pages included, is checked.
AGENTFLOW_FIRECRAWL_POLL_INTERVAL: seconds between status polls (default 2, the client's default).

Differences from AutoGPT, all where AutoGPT's block would fail or hang: a crawl or extract job that
ends failed or cancelled is an error (AutoGPT yields empty data, or None); a page without the requested
format is skipped (AutoGPT fails on the None); the JSON format goes to the declared `json_data` pin
(AutoGPT yields an undeclared `json`); a job still running after MAX_WAIT_SECONDS is an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import Field, SecretStr

from blocks.provider_http import (
    TRANSPORT_FAILURES,
    ProviderCalls,
    ProviderEndpoint,
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

if TYPE_CHECKING:
    from firecrawl import AsyncFirecrawl

DEFAULT_API_URL = "https://api.firecrawl.dev"
API_URL_VAR = "AGENTFLOW_FIRECRAWL_API_URL"
POLL_INTERVAL_VAR = "AGENTFLOW_FIRECRAWL_POLL_INTERVAL"
DEFAULT_POLL_INTERVAL = 2.0
# AutoGPT waits for a job without limit; a run should not.
MAX_WAIT_SECONDS = 900
REQUEST_TIMEOUT_SECONDS = 120.0
# firecrawl-py warns on every extract call (the endpoint is "in maintenance mode"); AutoGPT still uses it.
_EXTRACT_DEPRECATION = "The extract endpoint is in maintenance mode"

TEST_CREDENTIALS = mock_credentials(
    "f12ec7a0-0000-4000-8000-0000000000fc",
    "firecrawl",
    "Mock Firecrawl API key",
    {"api_key": "fc-mock-firecrawl-key", "base_url": DEFAULT_API_URL},
)


class ScrapeFormat(StrEnum):
    MARKDOWN = "markdown"
    HTML = "html"
    RAW_HTML = "rawHtml"
    LINKS = "links"
    SCREENSHOT = "screenshot"
    SCREENSHOT_FULL_PAGE = "screenshot@fullPage"
    JSON = "json"
    CHANGE_TRACKING = "changeTracking"


# Output pin and Document attribute for each format (as AutoGPT's crawl block maps them).
_FORMAT_OUTPUTS: dict[ScrapeFormat, tuple[str, str]] = {
    ScrapeFormat.MARKDOWN: ("markdown", "markdown"),
    ScrapeFormat.HTML: ("html", "html"),
    ScrapeFormat.RAW_HTML: ("raw_html", "raw_html"),
    ScrapeFormat.LINKS: ("links", "links"),
    ScrapeFormat.SCREENSHOT: ("screenshot", "screenshot"),
    ScrapeFormat.SCREENSHOT_FULL_PAGE: ("screenshot_full_page", "screenshot"),
    ScrapeFormat.JSON: ("json_data", "json"),
    ScrapeFormat.CHANGE_TRACKING: ("change_tracking", "change_tracking"),
}


def _poll_interval() -> float:
    try:
        return max(0.0, float(os.environ.get(POLL_INTERVAL_VAR, "")))
    except ValueError:
        return DEFAULT_POLL_INTERVAL


def _extract_error(status: int | None, message: str) -> str:
    """AutoGPT's prefixes for a failed extract (it matches the status in the error text)."""
    text = f"HTTP {status}: {message}" if status else message
    if status == 504:
        return f"Service timeout: {text}"
    if status == 503:
        return f"Service unavailable: {text}"
    if status is not None and status >= 500:
        return f"Server error: {text}"
    return f"Extract failed: {text}"


class _FakeFirecrawl:
    """Self-test wire: answers v2 crawl, extract and map like Firecrawl, every job done on its first poll."""

    def __init__(self, status: int = 200) -> None:
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer fc-mock-firecrawl-key":
            return httpx.Response(401, json={"success": False, "error": "Unauthorized: Invalid token"})
        if self.status != 200:
            return httpx.Response(self.status, json={"success": False, "error": "boom fc-mock-firecrawl-key"})
        path = request.url.path
        if request.method == "POST" and path == "/v2/crawl":
            return httpx.Response(200, json={"success": True, "id": "crawl-1", "url": str(request.url)})
        if path == "/v2/crawl/crawl-1":
            page = {"markdown": "# Docs", "html": "<h1>Docs</h1>", "metadata": {"sourceURL": "https://x.dev"}}
            return httpx.Response(
                200, json={"success": True, "status": "completed", "completed": 1, "total": 1, "data": [page]}
            )
        if request.method == "POST" and path == "/v2/extract":
            return httpx.Response(200, json={"success": True, "id": "extract-1"})
        if path == "/v2/extract/extract-1":
            return httpx.Response(
                200, json={"success": True, "status": "completed", "data": {"company": "Example Inc."}}
            )
        if request.method == "POST" and path == "/v2/map":
            links = [{"url": "https://x.dev/docs", "title": "Docs", "description": "The docs"}]
            return httpx.Response(200, json={"success": True, "links": links})
        return httpx.Response(404, json={"success": False, "error": "Not found"})


class _FirecrawlBlock(ProviderCalls, Block):
    """Shared by the Firecrawl blocks: endpoint resolution and an address-checked firecrawl-py client."""

    categories = frozenset({BlockCategory.SEARCH})
    credentials = (CredentialsField("credentials", provider="firecrawl", type="api_key"),)
    # One attempt, as AutoGPT; these failures are Firecrawl's and count towards its circuit breaker.
    retry_policy = RetryPolicy(
        attempts=1,
        retry_on_errors=(
            "Internal Server Error",
            "Rate Limit Exceeded",
            "Status code 5",
            "Server error",
            "Service unavailable",
            "Service timeout",
            *TRANSPORT_FAILURES,
        ),
    )

    @staticmethod
    def endpoint(ctx: RunContext) -> ProviderEndpoint:
        return resolve_endpoint(ctx, "firecrawl", os.environ.get(API_URL_VAR) or DEFAULT_API_URL)

    @asynccontextmanager
    async def firecrawl(
        self, ctx: RunContext, endpoint: ProviderEndpoint, statuses: list[int] | None = None
    ) -> AsyncIterator[AsyncFirecrawl]:
        """An AsyncFirecrawl whose requests go through the checked transport; `statuses` collects the
        HTTP status of every answer (the extract methods do not raise on an error answer)."""
        from firecrawl import AsyncFirecrawl

        key = endpoint.api_key.get_secret_value()
        app = AsyncFirecrawl(api_key=key, api_url=endpoint.base_url, timeout=REQUEST_TIMEOUT_SECONDS)
        http = app._v2_client.async_http_client  # firecrawl-py has no public transport hook

        async def record(response: httpx.Response) -> None:
            if statuses is not None:
                statuses.append(response.status_code)

        await http._client.aclose()
        http._client = httpx.AsyncClient(
            base_url=endpoint.base_url,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            transport=self.checked_transport(ctx),
            timeout=REQUEST_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
            event_hooks={"response": [record]},
        )
        try:
            yield app
        finally:
            await http._client.aclose()

    @staticmethod
    def describe_failure(exc: BaseException, endpoint: ProviderEndpoint) -> str:
        if isinstance(exc, httpx.HTTPError):
            return endpoint.scrub(f"{type(exc).__name__}: {exc}")
        return endpoint.scrub(str(exc) or type(exc).__name__)


def _failures() -> tuple[type[BaseException], ...]:
    """What a Firecrawl call may raise that is the call's failure, not a bug (imported on first use)."""
    from firecrawl.v2.utils.error_handler import CrawlJobTimeoutError, FirecrawlError
    from pydantic import ValidationError

    return (
        FirecrawlError,
        CrawlJobTimeoutError,
        ProviderError,
        RequestRefused,
        httpx.HTTPError,
        ValidationError,
        ValueError,
    )


class FirecrawlCrawlBlock(_FirecrawlBlock):
    id = "bdbbaba0-03b7-4971-970e-699e2de6015e"
    description = "Firecrawl crawls websites to extract comprehensive data while bypassing blockers."
    repeated_output_pins = frozenset(pin for pin, _ in _FORMAT_OUTPUTS.values())

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A Firecrawl credential reference: {"id": ..., "provider": "firecrawl", "type": "api_key"}',
        )
        url: str = Field(description="The URL to crawl")
        limit: int = Field(default=10, description="The number of pages to crawl")
        only_main_content: bool = Field(
            default=True,
            description="Only return the main content of the page excluding headers, navs, footers, etc.",
        )
        max_age: int = Field(
            default=3600000, description="The maximum age of the page in milliseconds - default is 1 hour"
        )
        wait_for: int = Field(
            default=0,
            description=(
                "Specify a delay in milliseconds before fetching the content, allowing the page "
                "sufficient time to load."
            ),
        )
        formats: list[ScrapeFormat] = Field(
            default_factory=lambda: [ScrapeFormat.MARKDOWN], description="The format of the crawl"
        )

    class Output(BlockOutput):
        data: list[dict[str, Any]] = Field(description="The result of the crawl")
        markdown: str = Field(description="The markdown of the crawl")
        html: str = Field(description="The html of the crawl")
        raw_html: str = Field(description="The raw html of the crawl")
        links: list[str] = Field(description="The links of the crawl")
        screenshot: str = Field(description="The screenshot of the crawl")
        screenshot_full_page: str = Field(description="The screenshot full page of the crawl")
        json_data: dict[str, Any] = Field(description="The json data of the crawl")
        change_tracking: dict[str, Any] = Field(description="The change tracking of the crawl")

    self_tests = (
        BlockSelfTest(
            input={"url": "https://x.dev", "formats": ["markdown", "html"]},
            output=[
                ("data", lambda d: len(d) == 1 and d[0]["markdown"] == "# Docs"),
                ("markdown", "# Docs"),
                ("html", "<h1>Docs</h1>"),
            ],
            mocks=mock_wire(_FakeFirecrawl),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"url": "https://x.dev"},
            output=[("error", lambda e: "Internal Server Error" in e and "fc-mock" not in e)],
            mocks=mock_wire(lambda: _FakeFirecrawl(500)),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        private_address_self_test({"url": "https://x.dev"}, {"credentials": TEST_CREDENTIALS}),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        from firecrawl.v2.types import ScrapeOptions, ScreenshotFormat

        try:
            endpoint = self.endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        formats: list[Any] = [
            ScreenshotFormat(type="screenshot", full_page=True)
            if f is ScrapeFormat.SCREENSHOT_FULL_PAGE
            else f.value
            for f in input.formats
        ]
        try:
            async with self.firecrawl(ctx, endpoint) as app:
                job = await app.crawl(
                    url=input.url,
                    limit=input.limit,
                    scrape_options=ScrapeOptions(
                        formats=formats,
                        only_main_content=input.only_main_content,
                        max_age=input.max_age,
                        wait_for=input.wait_for,
                    ),
                    poll_interval=_poll_interval(),
                    timeout=MAX_WAIT_SECONDS,
                    request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
        except _failures() as exc:
            yield "error", self.describe_failure(exc, endpoint)
            return
        if job.status != "completed":
            yield "error", f"Firecrawl crawl job {job.id} ended with status {job.status!r}"
            return
        pages = job.data or []
        yield "data", [page.model_dump(mode="json") for page in pages]
        for page in pages:
            for f in input.formats:
                pin, attribute = _FORMAT_OUTPUTS[f]
                value = getattr(page, attribute, None)
                if value is not None:
                    yield pin, value


class FirecrawlExtractBlock(_FirecrawlBlock):
    id = "d1774756-4d9e-40e6-bab1-47ec0ccd81b2"
    description = "Firecrawl crawls websites to extract comprehensive data while bypassing blockers."
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A Firecrawl credential reference: {"id": ..., "provider": "firecrawl", "type": "api_key"}',
        )
        urls: list[str] = Field(
            description="The URLs to crawl - at least one is required. Wildcards are supported. (/*)"
        )
        prompt: str | None = Field(default=None, description="The prompt to use for the crawl")
        output_schema: dict[str, Any] | None = Field(
            default=None,
            description="A Json Schema describing the output structure if more rigid structure is desired.",
        )
        enable_web_search: bool = Field(
            default=False, description="When true, extraction can follow links outside the specified domain."
        )

    class Output(BlockOutput):
        data: dict[str, Any] = Field(description="The result of the crawl")
        error: str = Field(default="", description="Error message if the extraction failed")

    self_tests = (
        BlockSelfTest(
            input={"urls": ["https://x.dev/*"], "prompt": "Who runs this site?"},
            output=[("data", {"company": "Example Inc."})],
            mocks=mock_wire(_FakeFirecrawl),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"urls": ["https://x.dev"]},
            output=[
                ("error", lambda e: e.startswith("Service unavailable: HTTP 503") and "fc-mock" not in e)
            ],
            mocks=mock_wire(lambda: _FakeFirecrawl(503)),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self.endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        statuses: list[int] = []
        # The client's deprecation warning on each call (see _EXTRACT_DEPRECATION); narrowly silenced.
        warnings.filterwarnings("ignore", message=_EXTRACT_DEPRECATION, category=DeprecationWarning)
        try:
            async with self.firecrawl(ctx, endpoint, statuses) as app:
                job = await app.start_extract(
                    urls=input.urls,
                    prompt=input.prompt,
                    schema=input.output_schema,
                    enable_web_search=input.enable_web_search,
                )
                if not job.success or not job.id:
                    raise ProviderError(_extract_error(statuses[-1] if statuses else None, str(job.error)))
                job_id = job.id
                loop = asyncio.get_running_loop()
                deadline = loop.time() + MAX_WAIT_SECONDS
                while True:
                    job = await app.get_extract_status(job_id)
                    if not job.success and job.status is None:
                        raise ProviderError(
                            _extract_error(statuses[-1] if statuses else None, str(job.error))
                        )
                    if job.status in ("completed", "failed", "cancelled"):
                        break
                    if loop.time() > deadline:
                        raise ProviderError(
                            f"Extract failed: job {job_id} did not finish within {MAX_WAIT_SECONDS} s"
                        )
                    await asyncio.sleep(_poll_interval())
        except ProviderError as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        except _failures() as exc:
            status = statuses[-1] if statuses and statuses[-1] >= 400 else None
            yield "error", _extract_error(status, self.describe_failure(exc, endpoint))
            return
        if job.status != "completed":
            yield "error", _extract_error(None, f"job {job_id} ended {job.status}: {job.error or ''}".strip())
            return
        if not isinstance(job.data, dict):
            yield "error", _extract_error(None, f"job {job_id} returned no data object: {job.data!r}"[:300])
            return
        yield "data", job.data


class FirecrawlMapWebsiteBlock(_FirecrawlBlock):
    id = "f0f43e2b-c943-48a0-a7f1-40136ca4d3b9"
    description = "Firecrawl maps a website to extract all the links."
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A Firecrawl credential reference: {"id": ..., "provider": "firecrawl", "type": "api_key"}',
        )
        url: str = Field(description="The website url to map")

    class Output(BlockOutput):
        links: list[str] = Field(description="List of URLs found on the website")
        results: list[dict[str, Any]] = Field(
            description="List of search results with url, title, and description"
        )
        error: str = Field(default="", description="Error message if the map failed")

    self_tests = (
        BlockSelfTest(
            input={"url": "https://x.dev"},
            output=[
                ("links", ["https://x.dev/docs"]),
                ("results", [{"url": "https://x.dev/docs", "title": "Docs", "description": "The docs"}]),
            ],
            mocks=mock_wire(_FakeFirecrawl),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"url": "https://x.dev"},
            output=[("error", lambda e: "Unauthorized" in e)],
            mocks=mock_wire(_FakeFirecrawl),
            credentials={
                "credentials": Credentials(
                    "f12ec7a0-0000-4000-8000-0000000000fd",
                    "firecrawl",
                    "api_key",
                    SecretStr(json.dumps({"api_key": "fc-wrong-key", "base_url": DEFAULT_API_URL})),
                    "local",
                )
            },
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self.endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        try:
            async with self.firecrawl(ctx, endpoint) as app:
                mapped = await app.map(url=input.url)
        except _failures() as exc:
            yield "error", self.describe_failure(exc, endpoint)
            return
        yield "links", [link.url for link in mapped.links]
        yield (
            "results",
            [
                {"url": link.url, "title": link.title, "description": link.description}
                for link in mapped.links
            ],
        )
