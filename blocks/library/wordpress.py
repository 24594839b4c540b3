"""WordPressCreatePostBlock (AutoGPT blocks/wordpress/blog.py and _api.py): publish a post on a
WordPress.com (or Jetpack) site through the WordPress.com REST API v1.1.

Like AutoGPT's create_post: POST `<base>/rest/v1.1/sites/<site>/posts/new`, header
`Authorization: Bearer <token>`, form-encoded (application/x-www-form-urlencoded) fields of its
CreatePostRequest without the None ones: title, content, excerpt?, slug?, author?, status ("publish", or
"draft" with `publish_as_draft`), sticky=False, type=post, categories and tags joined with commas,
featured_image?, media_urls (repeated), publicize=True, sharing_enabled=True; booleans as Python
spells them, as aiohttp encodes them. A 2xx answer is the created post (`ID`, `URL`, `short_URL`, ...);
any other fails with "Failed to create post: <status> - <message>".

Token and endpoint, first match wins:

1. the node's credential (pin `credentials`, provider "wordpress", type oauth2), resolved by the
   engine: the access token, or JSON `{"access_token": ..., "base_url": ...}`;
2. the environment, read when the node runs: AGENTFLOW_WORDPRESS_BASE_URL;
3. https://public-api.wordpress.com.

Every request is address-checked (blocks/provider_http.py): private, loopback and other non-public
addresses are refused unless `ctx.settings["allow_private_addresses"]`.

One difference from AutoGPT: `post_data` is the API's answer as JSON (AutoGPT validates it into its
PostResponse model first, which fails on answers missing any of its fields).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

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

DEFAULT_BASE_URL = "https://public-api.wordpress.com"
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)


def resolve_wordpress(ctx: RunContext) -> ProviderEndpoint:
    """provider_http's resolution; an OAuth credential's JSON names its token `access_token`."""
    endpoint = resolve_endpoint(ctx, "wordpress", DEFAULT_BASE_URL)
    token = endpoint.api_key.get_secret_value() or str(endpoint.options.get("access_token") or "")
    if not token:
        raise ProviderError("the wordpress credential has no access token")
    return ProviderEndpoint(endpoint.provider, endpoint.base_url, SecretStr(token.strip()), {})


def post_form(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The form AutoGPT's create_post sends: None left out, categories and tags comma-joined, other
    lists repeated, every value as `str()` gives it (aiohttp's urlencode)."""
    form: list[tuple[str, str]] = []
    for key, value in fields.items():
        if value is None:
            continue
        if key in ("categories", "tags") and isinstance(value, list):
            form.append((key, ",".join(str(v) for v in value)))
        elif isinstance(value, list):
            form.extend((key, str(v)) for v in value)
        else:
            form.append((key, str(value)))
    return form


def _error_message(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])[:500]
    return response.text[:500]


TEST_CREDENTIALS = mock_credentials(
    "5b0a9c2e-7d41-4f6b-8e3a-1c9d2f4b6a70",
    "wordpress",
    "Mock WordPress.com token",
    {"access_token": "mock-wordpress-token", "base_url": DEFAULT_BASE_URL},
    type="oauth2",
)


def _fake_wordpress(request: httpx.Request) -> httpx.Response:
    """Self-test wire: WordPress.com's answer to posts/new, or its 401."""
    if request.headers.get("Authorization") != "Bearer mock-wordpress-token":
        return httpx.Response(401, json={"error": "invalid_token", "message": "The OAuth2 token is invalid."})
    form = dict(httpx.QueryParams(request.content.decode()))
    return httpx.Response(
        200,
        json={
            "ID": 42,
            "site_ID": 7,
            "title": form["title"],
            "status": form["status"],
            "URL": "https://myblog.wordpress.com/2024/07/19/hello/",
            "short_URL": "https://wp.me/p7-G",
        },
    )


class WordPressCreatePostBlock(ProviderCalls, Block):
    id = "ee4fe08c-18f9-442f-a985-235379b932e1"
    description = "Create a new post on WordPress.com or Jetpack sites"
    categories = frozenset({BlockCategory.SOCIAL})
    credentials = (CredentialsField("credentials", provider="wordpress", type="oauth2"),)
    repeated_output_pins = frozenset()
    # One attempt (a post is not idempotent); these failures are WordPress.com's (its circuit breaker).
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=("Failed to create post: 5", *TRANSPORT_FAILURES))

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A WordPress credential reference: {"id": ..., "provider": "wordpress", "type": "oauth2"}',
        )
        site: str = Field(description="Site ID or domain (e.g., 'myblog.wordpress.com' or '123456789')")
        title: str = Field(description="The post title")
        content: str = Field(description="The post content (HTML supported)")
        excerpt: str | None = Field(default=None, description="An optional post excerpt/summary")
        slug: str | None = Field(
            default=None, description="The URL slug for the post (auto-generated if not provided)"
        )
        author: str | None = Field(
            default=None, description="Username or ID of the author (defaults to authenticated user)"
        )
        categories: list[str] = Field(default_factory=list, description="List of category names or IDs")
        tags: list[str] = Field(default_factory=list, description="List of tag names or IDs")
        featured_image: str | None = Field(
            default=None, description="Post ID of an existing attachment to set as featured image"
        )
        media_urls: list[str] = Field(
            default_factory=list, description="URLs of images to sideload and attach to the post"
        )
        publish_as_draft: bool = Field(
            default=False,
            description="If True, publishes the post as a draft. If False, publishes it publicly.",
        )

    class Output(BlockOutput):
        site: str = Field(description="The site ID or domain (pass-through for chaining with other blocks)")
        post_id: int = Field(description="The ID of the created post")
        post_url: str = Field(description="The full URL of the created post")
        short_url: str = Field(description="The shortened wp.me URL")
        post_data: dict[str, Any] = Field(description="Complete post data returned by API")

    self_tests = (
        BlockSelfTest(
            input={"site": "myblog.wordpress.com", "title": "Hello", "content": "<p>Hi</p>"},
            output=[
                ("site", "myblog.wordpress.com"),
                ("post_id", 42),
                ("post_url", "https://myblog.wordpress.com/2024/07/19/hello/"),
                ("short_url", "https://wp.me/p7-G"),
                ("post_data", lambda d: d["status"] == "publish" and d["title"] == "Hello"),
            ],
            mocks=mock_wire(lambda: _fake_wordpress),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"site": "myblog.wordpress.com", "title": "Hello", "content": "x"},
            output=[("error", "Failed to create post: 401 - The OAuth2 token is invalid.")],
            mocks=mock_wire(lambda: _fake_wordpress),
            credentials={
                "credentials": Credentials(
                    "c",
                    "wordpress",
                    "oauth2",
                    SecretStr(json.dumps({"access_token": "wrong-token-1234", "base_url": DEFAULT_BASE_URL})),
                    "local",
                )
            },
        ),
        private_address_self_test(
            {"site": "myblog.wordpress.com", "title": "Hello", "content": "x"},
            {"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_wordpress(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        fields: dict[str, Any] = {
            "title": input.title,
            "content": input.content,
            "excerpt": input.excerpt,
            "slug": input.slug,
            "author": input.author,
            "status": "draft" if input.publish_as_draft else "publish",
            "sticky": False,
            "type": "post",
            "categories": input.categories,
            "tags": input.tags,
            "featured_image": input.featured_image,
            "media_urls": input.media_urls,
            "publicize": True,
            "sharing_enabled": True,
        }
        try:
            post = await self.create_post(ctx, endpoint, input.site, post_form(fields))
        except (ProviderError, RequestRefused) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        yield "site", input.site
        yield "post_id", post["ID"]
        yield "post_url", post["URL"]
        yield "short_url", post["short_URL"]
        yield "post_data", post

    async def create_post(
        self, ctx: RunContext, endpoint: ProviderEndpoint, site: str, form: list[tuple[str, str]]
    ) -> dict[str, Any]:
        # A site may be a domain or an ID; anything else must not change the path.
        url = endpoint.url(f"/rest/v1.1/sites/{quote(site.strip(), safe='.:-_')}/posts/new")
        headers = {
            "Authorization": f"Bearer {endpoint.api_key.get_secret_value()}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                response = await client.post(url, headers=headers, content=str(httpx.QueryParams(form)))
        except RequestRefused:
            raise
        except httpx.HTTPError as exc:
            raise ProviderError(f"Failed to create post: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise ProviderError(f"Failed to create post: {response.status_code} - {_error_message(response)}")
        try:
            post = response.json()
        except ValueError:
            raise ProviderError(
                f"Failed to create post: the answer is not JSON: {response.text[:200]!r}"
            ) from None
        missing = [key for key in ("ID", "URL", "short_URL") if not isinstance(post, dict) or key not in post]
        if missing:
            raise ProviderError(f"Failed to create post: the answer has no {', '.join(missing)}")
        return dict(post)
