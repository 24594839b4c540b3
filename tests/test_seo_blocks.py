"""DataForSEO, WordPress and AI image generator blocks against the local servers (tests/support_seo.py,
tests/support_media.py), and the Automated SEO Blog Writer export that uses them all."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any
from urllib.parse import parse_qsl

import pytest
from pydantic import SecretStr
from support_blocks import credential, run_block, secret_free
from support_media import REPLICATE_KEY, ReplicateServer
from support_seo import (
    DATAFORSEO_LOGIN,
    DATAFORSEO_PASSWORD,
    RELATED_PER_LEVEL,
    SEO_WRITER_BLOG,
    SEO_WRITER_EXPORT,
    SEO_WRITER_KEYWORD,
    SUGGESTIONS,
    WORDPRESS_TOKEN,
    DataForSeoServer,
    WordPressServer,
    with_local_wordpress,
)
from test_llm_blocks import (
    EXPORTS_DIR,
    EngineWithCredentials,
    Resolver,
    _inputs,
    script_export_llm,
    servers,  # noqa: F401 - the fixture
    with_credential_references,
)

from agent_defs.engine import RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from blocks import REGISTRY, Credentials, RunContext
from blocks.library.ai_image_generator import AIImageGeneratorBlock
from blocks.library.dataforseo import DataForSeoKeywordSuggestionsBlock, DataForSeoRelatedKeywordsBlock
from blocks.library.wordpress import WordPressCreatePostBlock

SECRETS = (DATAFORSEO_PASSWORD, WORDPRESS_TOKEN, REPLICATE_KEY)


def dataforseo_cred(password: str = DATAFORSEO_PASSWORD, **extra: str) -> dict[str, Credentials]:
    secret = json.dumps({"username": DATAFORSEO_LOGIN, "password": password, **extra})
    return credential("dataforseo", secret, "user_password", cred_id="dfs")


def wordpress_cred(token: str = WORDPRESS_TOKEN) -> dict[str, Credentials]:
    return credential("wordpress", token, "oauth2", cred_id="wp")


def replicate_cred(token: str = REPLICATE_KEY) -> dict[str, Credentials]:
    return credential("replicate", token, cred_id="r8")


def no_secret(value: Any) -> bool:
    basic = base64.b64encode(f"{DATAFORSEO_LOGIN}:{DATAFORSEO_PASSWORD}".encode()).decode()
    return secret_free(value, *SECRETS, basic)


@pytest.fixture
def seo(
    servers: Any,  # noqa: F811 - the fixture imported above
    dataforseo_server: DataForSeoServer,
    wordpress_server: WordPressServer,
    replicate_server: ReplicateServer,
) -> tuple[DataForSeoServer, WordPressServer, ReplicateServer]:
    """The servers, reset, with the environment pointing the blocks at them."""
    return dataforseo_server, wordpress_server, replicate_server


# --- DataForSEO ---------------------------------------------------------------------------------------
def test_related_keywords_yield_each_keyword_then_the_list(seo: Any) -> None:
    dataforseo, _, _ = seo
    outputs = run_block(
        DataForSeoRelatedKeywordsBlock(), {"keyword": "home espresso", "depth": 2}, dataforseo_cred()
    )
    (request,) = dataforseo.requests
    assert request["path"] == "/v3/dataforseo_labs/google/related_keywords/live"
    login = base64.b64encode(f"{DATAFORSEO_LOGIN}:{DATAFORSEO_PASSWORD}".encode()).decode()
    assert request["headers"]["authorization"] == f"Basic {login}"
    assert json.loads(request["body"]) == [
        {
            "keyword": "home espresso",
            "location_code": 2840,
            "language_code": "en",
            "include_seed_keyword": True,
            "include_serp_info": False,
            "include_clickstream_data": False,
            "limit": 100,
            "depth": 2,
        }
    ]
    count = 1 + 2 * RELATED_PER_LEVEL  # the seed, then each depth level's keywords
    pins = [pin for pin, _ in outputs]
    assert pins == ["related_keyword"] * count + ["related_keywords", "total_count", "seed_keyword"]
    singles = [value for pin, value in outputs if pin == "related_keyword"]
    assert dict(outputs)["related_keywords"] == singles
    assert dict(outputs)["total_count"] == count
    assert dict(outputs)["seed_keyword"] == "home espresso"
    assert singles[0]["keyword"] == "home espresso"
    assert singles[1]["keyword"] == "home espresso tools"
    # The metrics come from the answer's keyword_info and keyword_properties; the rest only on request.
    assert set(singles[1]) == {
        "keyword",
        "search_volume",
        "competition",
        "cpc",
        "keyword_difficulty",
        "serp_info",
        "clickstream_data",
    }
    assert all(
        isinstance(k["search_volume"], int) and isinstance(k["keyword_difficulty"], int) for k in singles
    )
    assert all(k["serp_info"] is None and k["clickstream_data"] is None for k in singles)


def test_keyword_suggestions_with_serp_and_clickstream_data(seo: Any) -> None:
    dataforseo, _, _ = seo
    data = {
        "keyword": "latte art",
        "include_serp_info": True,
        "include_clickstream_data": True,
        "limit": 4,
        "location_code": 2826,
        "language_code": None,
    }
    outputs = run_block(DataForSeoKeywordSuggestionsBlock(), data, dataforseo_cred())
    (request,) = dataforseo.requests
    assert request["path"] == "/v3/dataforseo_labs/google/keyword_suggestions/live"
    (task,) = json.loads(request["body"])
    assert "depth" not in task  # None values are not sent
    assert task["language_code"] == "en"  # a None input takes the pin's default, as in AutoGPT
    assert task["limit"] == 4 and task["location_code"] == 2826
    suggestions = dict(outputs)["suggestions"]
    assert len(suggestions) == 4 == dict(outputs)["total_count"] < SUGGESTIONS
    assert [v for p, v in outputs if p == "suggestion"] == suggestions
    assert suggestions[0]["keyword"] == "latte art tools"
    assert suggestions[0]["serp_info"]["check_url"].endswith("q=latte+art+tools")
    assert set(suggestions[0]["clickstream_data"]) >= {"search_volume", "gender_distribution"}


def test_dataforseo_refused_login_is_an_error_without_the_password(seo: Any) -> None:
    outputs = run_block(
        DataForSeoRelatedKeywordsBlock(), {"keyword": "seo"}, dataforseo_cred(password="wrong-password-42")
    )
    [(pin, message)] = outputs
    assert pin == "error"
    assert message.startswith(
        "Failed to fetch related keywords: DataForSEO API error (401): You are not authorized"
    )
    assert "wrong-password-42" not in message and no_secret(outputs)


def test_dataforseo_task_error_and_empty_result(seo: Any) -> None:
    outputs = run_block(
        DataForSeoKeywordSuggestionsBlock(), {"keyword": "task-error here"}, dataforseo_cred()
    )
    assert outputs == [
        ("error", "Failed to fetch keyword suggestions: DataForSEO task error: Invalid Field: 'keyword'.")
    ]
    outputs = run_block(DataForSeoKeywordSuggestionsBlock(), {"keyword": "no-results"}, dataforseo_cred())
    assert outputs == [("suggestions", []), ("total_count", 0), ("seed_keyword", "no-results")]


def test_dataforseo_base_url_from_the_credential_and_the_private_address_rule(
    seo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataforseo, _, _ = seo
    monkeypatch.setenv("AGENTFLOW_DATAFORSEO_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    credential = dataforseo_cred(base_url=dataforseo.url)
    outputs = run_block(DataForSeoRelatedKeywordsBlock(), {"keyword": "espresso", "depth": 0}, credential)
    assert dict(outputs)["total_count"] == 1 and len(dataforseo.requests) == 1

    async def without_private() -> list[tuple[str, Any]]:
        block = DataForSeoRelatedKeywordsBlock()
        ctx = RunContext(credentials=credential)  # no allow_private_addresses
        return [(p, v) async for p, v in block.run(block.make_input({"keyword": "espresso"}), ctx)]

    [(pin, message)] = asyncio.run(without_private())
    assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    assert len(dataforseo.requests) == 1 and no_secret(message)


def test_dataforseo_without_a_credential_or_login(seo: Any) -> None:
    [(pin, message)] = run_block(DataForSeoRelatedKeywordsBlock(), {"keyword": "x"}, {})
    assert pin == "error" and "no dataforseo credential" in message
    bare = {"credentials": Credentials("d", "dataforseo", "user_password", SecretStr("justakey"), "local")}
    [(pin, message)] = run_block(DataForSeoRelatedKeywordsBlock(), {"keyword": "x"}, bare)
    assert pin == "error" and "no login" in message and "justakey" not in message


# --- WordPress ----------------------------------------------------------------------------------------
def test_wordpress_creates_a_post_like_autogpt(seo: Any) -> None:
    _, wordpress, _ = seo
    data = {
        "site": "coffee-notes.wordpress.com",
        "title": "Dialing in espresso",
        "content": "<p>Grind finer & taste.</p>",
        "tags": ["coffee", "espresso"],
        "categories": ["Guides"],
        "featured_image": "https://replicate.delivery/x/out-0.jpg",
        "media_urls": ["https://example.com/a.png", "https://example.com/b.png"],
    }
    outputs = run_block(WordPressCreatePostBlock(), data, wordpress_cred())
    (request,) = wordpress.requests
    assert request["method"] == "POST"
    assert request["path"] == "/rest/v1.1/sites/coffee-notes.wordpress.com/posts/new"
    assert request["headers"]["authorization"] == f"Bearer {WORDPRESS_TOKEN}"
    assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(request["body"].decode(), keep_blank_values=True) == [
        ("title", "Dialing in espresso"),
        ("content", "<p>Grind finer & taste.</p>"),
        ("status", "publish"),
        ("sticky", "False"),
        ("type", "post"),
        ("categories", "Guides"),
        ("tags", "coffee,espresso"),
        ("featured_image", "https://replicate.delivery/x/out-0.jpg"),
        ("media_urls", "https://example.com/a.png"),
        ("media_urls", "https://example.com/b.png"),
        ("publicize", "True"),
        ("sharing_enabled", "True"),
    ]
    (post,) = [
        p for p in wordpress.posts["coffee-notes.wordpress.com"] if p["title"] == "Dialing in espresso"
    ]
    assert outputs == [
        ("site", "coffee-notes.wordpress.com"),
        ("post_id", post["ID"]),
        ("post_url", "https://coffee-notes.wordpress.com/2024/07/19/dialing-in-espresso/"),
        ("short_url", post["short_URL"]),
        ("post_data", post),
    ]
    assert post["post_thumbnail"]["URL"] == data["featured_image"] and post["attachment_count"] == 3


def test_wordpress_draft_and_the_post_appears_only_once_published(seo: Any) -> None:
    _, wordpress, _ = seo
    data = {"site": "123456", "title": "Draft idea", "content": "x", "publish_as_draft": True}
    outputs = run_block(WordPressCreatePostBlock(), data, wordpress_cred())
    assert dict(outputs)["post_data"]["status"] == "draft"
    assert ("status", "draft") in parse_qsl(wordpress.requests[0]["body"].decode())
    listed = run_block(
        REGISTRY.get("6595ae1f-b924-42cb-9a41-551a0611c4b4"),  # SendWebRequest, as the export lists posts
        {"url": f"{wordpress.url}/rest/v1.1/sites/123456/posts/", "method": "GET"},
    )
    titles = [p["title"] for p in dict(listed)["response"]["posts"]]
    assert "Draft idea" not in titles and titles == [
        "Ten automation ideas for small teams",
        "Welcome to the blog",
    ]


@pytest.mark.parametrize(
    ("token", "data", "expected"),
    [
        ("wrong-token-1234", {}, "Failed to create post: 401 - The OAuth2 token is invalid."),
        (WORDPRESS_TOKEN, {"site": "not a site"}, "Failed to create post: 404 - Unknown blog"),
        (
            WORDPRESS_TOKEN,
            {"title": "", "content": ""},
            "Failed to create post: 400 - A post needs a title or content.",
        ),
        (WORDPRESS_TOKEN, {"title": "server-fail"}, "Failed to create post: 500 - failed for Bearer ***"),
    ],
)
def test_wordpress_errors_name_the_failure_without_the_token(
    seo: Any, token: str, data: dict[str, Any], expected: str
) -> None:
    _, wordpress, _ = seo
    inputs = {"site": "blog.wordpress.com", "title": "T", "content": "C", **data}
    outputs = run_block(WordPressCreatePostBlock(), inputs, wordpress_cred(token))
    assert outputs == [("error", expected)]
    assert len(wordpress.requests) == 1 and no_secret(outputs)


# --- AI image generator (Replicate) ----------------------------------------------------------------------
def test_image_generator_flux_ultra_with_a_style_prefix(seo: Any) -> None:
    _, _, replicate = seo
    data = {
        "prompt": "a latte",
        "model": "Flux 1.1 Pro Ultra",
        "size": "landscape",
        "style": "digital_illustration/pixel_art",
    }
    outputs = run_block(AIImageGeneratorBlock(), data, replicate_cred())
    create = replicate.requests[0]
    assert create["path"] == "/v1/models/black-forest-labs/flux-1.1-pro-ultra/predictions"
    assert create["headers"]["authorization"] == f"Bearer {REPLICATE_KEY}"
    assert create["body"]["input"] == {
        "prompt": "pixel art of a latte",
        "width": 1365,
        "height": 1024,
        "aspect_ratio": "4:3",
        "output_format": "jpg",
        "output_quality": 90,
    }
    [(pin, url)] = outputs
    prediction = next(iter(replicate.predictions.values()))
    assert pin == "image_url" and url == prediction["output"] and url.endswith(".jpg")


@pytest.mark.parametrize(
    ("model", "replicate_model", "expected_input"),
    [
        (
            "Recraft v3",
            "recraft-ai/recraft-v3",
            {"prompt": "a latte", "size": "1536x1024", "style": "realistic_image/hdr"},
        ),
        (
            "Stable Diffusion 3.5 Medium",
            "stability-ai/stable-diffusion-3.5-medium",
            {
                "prompt": "HDR photograph of a latte",
                "aspect_ratio": "16:9",
                "output_format": "webp",
                "output_quality": 90,
                "steps": 40,
                "cfg_scale": 7.0,
            },
        ),
        (
            "Nano Banana Pro",
            "google/nano-banana-pro",
            {
                "prompt": "HDR photograph of a latte",
                "aspect_ratio": "16:9",
                "resolution": "2K",
                "output_format": "jpg",
                "safety_filter_level": "block_only_high",
            },
        ),
    ],
)
def test_image_generator_models(
    seo: Any, model: str, replicate_model: str, expected_input: dict[str, Any]
) -> None:
    _, _, replicate = seo
    data = {"prompt": "a latte", "model": model, "size": "wide", "style": "realistic_image/hdr"}
    outputs = run_block(AIImageGeneratorBlock(), data, replicate_cred())
    create = replicate.requests[0]
    assert create["path"] == f"/v1/models/{replicate_model}/predictions"
    assert create["body"]["input"] == expected_input
    assert outputs[0][0] == "image_url" and outputs[0][1].startswith("https://replicate.delivery/")


def test_image_generator_errors_without_the_token(seo: Any) -> None:
    outputs = run_block(AIImageGeneratorBlock(), {"prompt": "fail-prediction please"}, replicate_cred())
    assert outputs == [
        (
            "error",
            "Failed to generate image: Unexpected error during model execution: "
            "Prediction failed: the model could not handle this prompt",
        )
    ]
    outputs = run_block(AIImageGeneratorBlock(), {"prompt": "x"}, replicate_cred("r8_wrong-token-99"))
    [(pin, message)] = outputs
    assert pin == "error" and "HTTP 401" in message and "r8_wrong-token-99" not in message
    assert no_secret(outputs)


# --- the Automated SEO Blog Writer export ------------------------------------------------------------------
def test_seo_blog_writer_export_researches_writes_illustrates_and_publishes(
    seo: Any,
    servers: Any,  # noqa: F811 - the fixture imported above
) -> None:
    dataforseo, wordpress, replicate = seo
    path = EXPORTS_DIR / SEO_WRITER_EXPORT
    graph = with_local_wordpress(
        with_credential_references(load_graph_file(path)), os.environ["AGENTFLOW_WORDPRESS_BASE_URL"]
    )
    llm, _ = servers
    script_export_llm(path, llm)
    result = EngineWithCredentials(credentials=Resolver()).run_sync(
        graph, _inputs(graph, path), RunOptions(settings={"allow_private_addresses": True})
    )
    assert result.status is RunStatus.COMPLETED, result.error
    assert set(result.outputs) == {"BLOG_PUBLISHED_SUCCESS"}, result.outputs
    assert [e.error for e in result.executions if e.error] == []
    # The SEO expert's two tools, then the chosen keyword's secondary keywords.
    calls = [(r["path"].split("/")[-2], json.loads(r["body"])[0]) for r in dataforseo.requests]
    assert [(name, task["keyword"], task.get("depth")) for name, task in calls] == [
        ("related_keywords", "ai tools", 3),
        ("keyword_suggestions", "ai for beginners", None),
        ("related_keywords", SEO_WRITER_KEYWORD, 1),
    ]
    # The filtered keyword table reached the SEO expert; the secondary keywords reached the writer.
    prompts = [json.dumps(r["body"]) for r in llm.requests]
    assert any("| ai tools guide |" in p for p in prompts)
    assert any("<secondary_keyword_data>" in p and f"{SEO_WRITER_KEYWORD} tools" in p for p in prompts)
    # One header image, then one post on the blog named in the input, with that image.
    (image,) = replicate.predictions.values()
    assert image["model"] == "black-forest-labs/flux-1.1-pro-ultra"
    created = [r for r in wordpress.requests if r["method"] == "POST"]
    assert [r["path"] for r in created] == [f"/rest/v1.1/sites/{SEO_WRITER_BLOG}/posts/new"]
    form = dict(parse_qsl(created[0]["body"].decode()))
    assert form["featured_image"] == image["output"] and form["status"] == "publish"
    assert wordpress.requests[0]["method"] == "GET"  # the earlier titles, read first
    assert no_secret(result.to_json())
