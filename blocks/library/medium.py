"""PublishToMediumBlock (AutoGPT blocks/medium.py): creates a post with Medium's REST API.

POST `<base>/v1/users/<author_id>/posts` with `Authorization: Bearer <token>` and JSON {title, content,
contentFormat, tags, canonicalUrl, publishStatus, license, notifyFollowers}; Medium answers
{"data": {"id", "url", "publishedAt", ...}} or {"errors": [{"message", "code"}]}.

Base URL and token: blocks/provider_http.py (credential JSON `base_url`, AGENTFLOW_MEDIUM_BASE_URL,
https://api.medium.com); the request is address-checked. `author_id` is a secret in AutoGPT whose
default is the operator's `medium_author_id`; here an empty pin falls back to the credential JSON's
`author_id`, then to AGENTFLOW_MEDIUM_AUTHOR_ID (read at run time). Old exports also carry an `api_key`
pin: it is ignored, the token comes from the credential only.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field

from blocks.provider_http import (
    ProviderCalls,
    ProviderError,
    RequestRefused,
    answer_detail,
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
    CredentialsField,
    RetryPolicy,
    RunContext,
)

DEFAULT_BASE_URL = "https://api.medium.com"
AUTHOR_ID_VAR = "AGENTFLOW_MEDIUM_AUTHOR_ID"
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)


class PublishToMediumStatus(StrEnum):
    PUBLIC = "public"
    DRAFT = "draft"
    UNLISTED = "unlisted"


TEST_CREDENTIALS = mock_credentials(
    "01234567-89ab-cdef-0123-456789abcdef",
    "medium",
    "Mock Medium API key",
    {"api_key": "mock-medium-api-key", "base_url": DEFAULT_BASE_URL},
)


def _fake_medium(request: httpx.Request) -> httpx.Response:
    if request.headers.get("Authorization") != "Bearer mock-medium-api-key":
        return httpx.Response(401, json={"errors": [{"message": "Token was invalid.", "code": 6003}]})
    if request.url.path != "/v1/users/1234567890abcdef/posts":
        return httpx.Response(404, json={"errors": [{"message": "Not found", "code": 6000}]})
    data = {"id": "e6f36a", "url": "https://medium.com/@username/test-post-e6f36a", "publishedAt": 1626282600}
    return httpx.Response(201, json={"data": {**data, "authorId": "1234567890abcdef"}})


_TEST_INPUT = {
    "author_id": "1234567890abcdef",
    "title": "Test Post",
    "content": "<h1>Test Content</h1><p>This is a test post.</p>",
    "content_format": "html",
    "tags": ["test", "automation"],
    "license": "all-rights-reserved",
    "notify_followers": False,
    "publish_status": "draft",
}


class PublishToMediumBlock(ProviderCalls, Block):
    id = "3f7b2dcb-4a78-4e3f-b0f1-88132e1b89df"
    description = "Publishes a post to Medium."
    categories = frozenset({BlockCategory.SOCIAL})
    credentials = (CredentialsField("credentials", provider="medium", type="api_key"),)
    repeated_output_pins = frozenset()
    # One attempt (a post is not idempotent); these failures are Medium's (its circuit breaker).
    retry_policy = RetryPolicy(
        attempts=1, retry_on_errors=("Medium post: HTTP 5", "Medium post: HTTP 429", "cannot reach")
    )

    class Input(BlockInput):
        author_id: str = Field(
            default="",
            description=(
                "The Medium AuthorID of the user. You can get this by calling the /me endpoint of the "
                "Medium API. Empty: the credential's author_id, else the operator's AGENTFLOW_MEDIUM_AUTHOR_ID."
            ),
        )
        title: str = Field(description="The title of your Medium post")
        content: str = Field(description="The main content of your Medium post")
        content_format: str = Field(description="The format of the content: 'html' or 'markdown'")
        tags: list[str] = Field(description="List of tags for your Medium post (up to 5)")
        canonical_url: str | None = Field(
            default=None,
            description="The original home of this content, if it was originally published elsewhere",
        )
        publish_status: PublishToMediumStatus = Field(description="The publish status")
        license: str = Field(
            default="all-rights-reserved",
            description=(
                "The license of the post: 'all-rights-reserved', 'cc-40-by', 'cc-40-by-sa', 'cc-40-by-nd', "
                "'cc-40-by-nc', 'cc-40-by-nc-nd', 'cc-40-by-nc-sa', 'cc-40-zero', 'public-domain'"
            ),
        )
        notify_followers: bool = Field(
            default=False, description="Whether to notify followers that the user has published"
        )
        credentials: Any = Field(
            default=None,
            description='A Medium credential reference: {"id": ..., "provider": "medium", "type": "api_key"}',
        )

    class Output(BlockOutput):
        post_id: str = Field(description="The ID of the created Medium post")
        post_url: str = Field(description="The URL of the created Medium post")
        published_at: int = Field(description="The timestamp when the post was published")

    self_tests = (
        BlockSelfTest(
            input=_TEST_INPUT,
            output=[
                ("post_id", "e6f36a"),
                ("post_url", "https://medium.com/@username/test-post-e6f36a"),
                ("published_at", 1626282600),
            ],
            mocks=mock_wire(lambda: _fake_medium),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={**_TEST_INPUT, "author_id": "someone-else"},
            output=[("error", lambda e: "HTTP 404" in e and "mock-medium" not in e)],
            mocks=mock_wire(lambda: _fake_medium),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        private_address_self_test(_TEST_INPUT, {"credentials": TEST_CREDENTIALS}),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_endpoint(ctx, "medium", DEFAULT_BASE_URL)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        author_id = (
            input.author_id.strip()
            or str(endpoint.options.get("author_id") or "").strip()
            or os.environ.get(AUTHOR_ID_VAR, "").strip()
        )
        if not author_id:
            yield (
                "error",
                f"Failed to create Medium post: no author_id (set the pin, the credential's author_id "
                f"or {AUTHOR_ID_VAR})",
            )
            return
        body = {
            "title": input.title,
            "content": input.content,
            "contentFormat": input.content_format,
            "tags": input.tags,
            "canonicalUrl": input.canonical_url,
            "publishStatus": input.publish_status.value,
            "license": input.license,
            "notifyFollowers": input.notify_followers,
        }
        headers = {
            "Authorization": f"Bearer {endpoint.api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        url = endpoint.url(f"/v1/users/{quote(author_id, safe='')}/posts")
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                response = await client.post(url, headers=headers, json=body)
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        except httpx.HTTPError as exc:
            yield (
                "error",
                endpoint.scrub(f"Failed to create Medium post: cannot reach {endpoint.base_url}: {exc!r}"),
            )
            return
        try:
            answer = response.json()
        except ValueError:
            answer = None
        data = answer.get("data") if isinstance(answer, dict) else None
        if response.status_code < 300 and isinstance(data, dict) and "id" in data:
            yield "post_id", str(data["id"])
            yield "post_url", str(data.get("url") or "")
            yield "published_at", int(data.get("publishedAt") or 0)
            return
        detail = answer_detail(response) if answer is not None else response.text[:300]
        message = detail if response.status_code < 300 else f"HTTP {response.status_code}: {detail}"
        yield "error", endpoint.scrub(f"Failed to create Medium post: {message or 'Unknown error occurred'}")
