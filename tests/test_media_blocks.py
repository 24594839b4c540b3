"""Ideogram, Replicate (Flux) and Medium blocks against the local servers (tests/support_media.py), and
the three real exports that use them, on the reference engine and as compiled Dagster jobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from support_blocks import credential, run_block, secret_free
from support_media import (
    IDEOGRAM_KEY,
    MEDIUM_AUTHOR_ID,
    MEDIUM_KEY,
    REPLICATE_KEY,
    IdeogramServer,
    MediumServer,
    ReplicateServer,
)
from test_llm_blocks import (
    EXPORTS_DIR,
    EngineWithCredentials,
    Resolver,
    _inputs,
    servers,  # noqa: F401 - the fixture
    with_credential_references,
)

from agent_defs.engine import RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from blocks import REGISTRY, RunContext
from blocks.library.ideogram import IdeogramModelBlock
from blocks.library.medium import PublishToMediumBlock
from blocks.library.replicate_flux import ReplicateFluxAdvancedModelBlock

POSTER_MAKER = EXPORTS_DIR / "agent_31daf49d-31d3-476b-aa4c-099abc59b458.json"
FLUX_GENERATOR = EXPORTS_DIR / "agent_d85882b8-633f-44ce-a315-c20a8c123d19.json"
MEDIUM_BLOGGER = EXPORTS_DIR / "Medium_Blogger_v28.json"
KEYS = (IDEOGRAM_KEY, REPLICATE_KEY, MEDIUM_KEY)


def no_key(value: Any) -> bool:
    return secret_free(value, *KEYS)


@pytest.fixture
def media(
    servers: Any,  # noqa: F811 - the fixture imported above
    ideogram_server: IdeogramServer,
    replicate_server: ReplicateServer,
    medium_server: MediumServer,
) -> tuple[IdeogramServer, ReplicateServer, MediumServer]:
    """The three servers, reset, with the environment pointing the blocks at them."""
    return ideogram_server, replicate_server, medium_server


# --- Ideogram -----------------------------------------------------------------------------------------
def test_ideogram_v3_generates_with_the_api_key_header(media: Any) -> None:
    ideogram, _, _ = media
    data = {
        "prompt": "A sloth at a desk",
        "aspect_ratio": "ASPECT_16_9",
        "seed": 7,
        "negative_prompt": "blur",
    }
    outputs = run_block(IdeogramModelBlock(), data, credential("ideogram", IDEOGRAM_KEY))
    (request,) = ideogram.requests
    assert request["path"] == "/v1/ideogram-v3/generate"
    assert request["headers"]["api-key"] == IDEOGRAM_KEY
    assert request["body"] == {
        "prompt": "A sloth at a desk",
        "aspect_ratio": "16x9",
        "magic_prompt": "AUTO",
        "style_type": "AUTO",
        "seed": 7,
        "negative_prompt": "blur",
    }
    [(pin, url)] = outputs
    assert pin == "result" and url.startswith(f"{ideogram.url}/images/") and url.endswith(".png")
    # Deterministic: the same request gives the same image URL.
    assert run_block(IdeogramModelBlock(), data, credential("ideogram", IDEOGRAM_KEY)) == outputs


def test_ideogram_legacy_models_and_palettes(media: Any) -> None:
    ideogram, _, _ = media
    key = credential("ideogram", IDEOGRAM_KEY)
    run_block(
        IdeogramModelBlock(),
        {"prompt": "p", "ideogram_model_name": "V_2", "style_type": "ANIME", "color_palette_name": "EMBER"},
        key,
    )
    run_block(
        IdeogramModelBlock(),
        {"prompt": "p", "ideogram_model_name": "V_2_TURBO", "custom_color_palette": ["#000030", "#FFFFFF"]},
        key,
    )
    run_block(IdeogramModelBlock(), {"prompt": "p", "ideogram_model_name": "V_1", "style_type": "ANIME"}, key)
    first, second, third = (r["body"]["image_request"] for r in ideogram.requests)
    assert all(r["path"] == "/generate" for r in ideogram.requests)
    assert first == {
        "prompt": "p",
        "model": "V_2",
        "aspect_ratio": "ASPECT_1_1",
        "magic_prompt_option": "AUTO",
        "style_type": "ANIME",
        "color_palette": {"name": "EMBER"},
    }
    assert second["color_palette"] == {"members": [{"color_hex": "#000030"}, {"color_hex": "#FFFFFF"}]}
    assert "style_type" not in third and "color_palette" not in third  # V_1 supports neither


def test_ideogram_upscale_downloads_the_image_and_posts_it(media: Any) -> None:
    ideogram, _, _ = media
    outputs = run_block(
        IdeogramModelBlock(),
        {"prompt": "A cat", "upscale": "AI Upscale"},
        credential("ideogram", IDEOGRAM_KEY),
    )
    generate, download, upscale = ideogram.requests
    assert generate["path"] == "/v1/ideogram-v3/generate"
    assert download["method"] == "GET" and download["path"].startswith("/images/")
    assert upscale["path"] == "/upscale" and upscale["headers"]["api-key"] == IDEOGRAM_KEY
    assert upscale["body"]["image_request"] == "{}"
    assert upscale["body"]["image_file"]["content_type"] == "image/png"
    assert upscale["body"]["image_file"]["size"] > 0
    [(pin, url)] = outputs
    assert pin == "result" and "/images/upscaled-" in url


def test_ideogram_refused_key_is_a_clear_error_without_the_key(media: Any) -> None:
    outputs = run_block(IdeogramModelBlock(), {"prompt": "x"}, credential("ideogram", "wrong-key-1234"))
    assert outputs == [("error", "Invalid or expired API key. Please check your Ideogram API credentials.")]
    # A server error that echoes the key: the message says what failed, and the key is scrubbed.
    outputs = run_block(IdeogramModelBlock(), {"prompt": "server-fail"}, credential("ideogram", IDEOGRAM_KEY))
    [(pin, message)] = outputs
    assert pin == "error" and "Ideogram server error: HTTP 500" in message and "***" in message
    assert no_key(outputs)


def test_ideogram_refuses_a_loopback_base_url_unless_allowed(media: Any) -> None:
    block = IdeogramModelBlock()

    async def go() -> list[tuple[str, Any]]:
        ctx = RunContext(credentials=credential("ideogram", IDEOGRAM_KEY))
        return [o async for o in block.run(block.make_input({"prompt": "x"}), ctx)]

    [(pin, message)] = asyncio.run(go())
    assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    assert media[0].requests == []


def test_ideogram_base_url_from_a_json_credential(media: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ideogram, _, _ = media
    monkeypatch.delenv("AGENTFLOW_IDEOGRAM_BASE_URL")
    secret = json.dumps({"api_key": IDEOGRAM_KEY, "base_url": ideogram.url})
    outputs = run_block(IdeogramModelBlock(), {"prompt": "x"}, credential("ideogram", secret))
    assert outputs[0][0] == "result" and len(ideogram.requests) == 1


# --- Replicate ----------------------------------------------------------------------------------------
def test_replicate_flux_creates_a_prediction_and_polls_it(media: Any) -> None:
    _, replicate, _ = media
    data = {
        "prompt": "An octopus",
        "replicate_model_name": "Flux Pro 1.1",
        "output_format": "png",
        "seed": 42,
    }
    outputs = run_block(ReplicateFluxAdvancedModelBlock(), data, credential("replicate", REPLICATE_KEY))
    create, *polls = replicate.requests
    assert (
        create["method"] == "POST"
        and create["path"] == "/v1/models/black-forest-labs/flux-1.1-pro/predictions"
    )
    assert create["headers"]["authorization"] == f"Bearer {REPLICATE_KEY}"
    assert "prefer" not in create["headers"]  # AutoGPT runs with wait=False
    assert create["body"] == {
        "input": {
            "prompt": "An octopus",
            "seed": 42,
            "steps": 25,
            "guidance": 3.0,
            "interval": 2.0,
            "aspect_ratio": "1:1",
            "output_format": "png",
            "output_quality": 80,
            "safety_tolerance": 2,
        }
    }
    assert len(polls) == replicate.polls_to_finish
    assert all(p["method"] == "GET" and p["path"].startswith("/v1/predictions/p001") for p in polls)
    [(pin, url)] = outputs
    assert pin == "result" and url.startswith("https://replicate.delivery/") and url.endswith("/out-0.png")


def test_replicate_flux_schnell_list_output_and_a_random_seed(media: Any) -> None:
    _, replicate, _ = media
    outputs = run_block(
        ReplicateFluxAdvancedModelBlock(), {"prompt": "A lake"}, credential("replicate", REPLICATE_KEY)
    )
    create = replicate.requests[0]
    assert create["path"] == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert isinstance(create["body"]["input"]["seed"], int)
    assert create["body"]["input"]["output_format"] == "webp"
    [(pin, url)] = outputs
    assert pin == "result" and url.endswith("/out-0.webp")


def test_replicate_failed_prediction_is_retried_then_a_clear_error(media: Any) -> None:
    _, replicate, _ = media
    outputs = run_block(
        ReplicateFluxAdvancedModelBlock(),
        {"prompt": "fail-prediction"},
        credential("replicate", REPLICATE_KEY),
    )
    assert outputs == [
        ("error", "Replicate prediction failed: Prediction failed: the model could not handle this prompt")
    ]
    assert len(replicate.predictions) == 3  # AutoGPT's three attempts
    assert no_key(outputs)


def test_replicate_refused_token_is_not_retried_and_not_shown(media: Any) -> None:
    _, replicate, _ = media
    outputs = run_block(
        ReplicateFluxAdvancedModelBlock(), {"prompt": "x"}, credential("replicate", "r8_wrong_token")
    )
    [(pin, message)] = outputs
    assert pin == "error"
    assert message == (
        "Replicate request failed: HTTP 401: Unauthenticated: You did not pass a valid authentication token"
    )
    assert len(replicate.requests) == 1 and "r8_wrong_token" not in message


def test_replicate_prediction_over_the_maximum_wait_is_canceled(
    media: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, replicate, _ = media
    monkeypatch.setenv("AGENTFLOW_REPLICATE_MAX_WAIT", "0.2")
    outputs = run_block(
        ReplicateFluxAdvancedModelBlock(), {"prompt": "never-finish"}, credential("replicate", REPLICATE_KEY)
    )
    [(pin, message)] = outputs
    assert pin == "error" and "did not finish within 0.2s; it was canceled" in message
    assert [p["status"] for p in replicate.predictions.values()] == ["canceled"]  # not retried


def test_replicate_client_base_url_from_a_json_credential(
    media: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, replicate, _ = media
    monkeypatch.delenv("AGENTFLOW_REPLICATE_BASE_URL")
    secret = json.dumps({"api_key": REPLICATE_KEY, "base_url": replicate.url})
    outputs = run_block(ReplicateFluxAdvancedModelBlock(), {"prompt": "x"}, credential("replicate", secret))
    assert outputs[0][0] == "result" and replicate.requests


# --- Medium -------------------------------------------------------------------------------------------
POST = {
    "title": "Worldwide IT Blackout",
    "content": "# What happened\n\nA bad update.",
    "content_format": "markdown",
    "tags": ["AI", "LLM"],
    "publish_status": "public",
}


def test_medium_post_is_created_for_the_author(media: Any) -> None:
    _, _, medium = media
    outputs = run_block(PublishToMediumBlock(), {**POST, "api_key": ""}, credential("medium", MEDIUM_KEY))
    (request,) = medium.requests
    assert request["path"] == f"/v1/users/{MEDIUM_AUTHOR_ID}/posts"  # from AGENTFLOW_MEDIUM_AUTHOR_ID
    assert request["headers"]["authorization"] == f"Bearer {MEDIUM_KEY}"
    assert request["headers"]["accept"] == "application/json"
    assert request["body"] == {
        "title": "Worldwide IT Blackout",
        "content": "# What happened\n\nA bad update.",
        "contentFormat": "markdown",
        "tags": ["AI", "LLM"],
        "canonicalUrl": None,
        "publishStatus": "public",
        "license": "all-rights-reserved",
        "notifyFollowers": False,
    }
    post_id = outputs[0][1]
    assert outputs == [
        ("post_id", post_id),
        ("post_url", f"https://medium.com/@agentflow/worldwide-it-blackout-{post_id}"),
        ("published_at", 1721347200000),
    ]


def test_medium_author_id_from_the_pin_or_the_credential(media: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, medium = media
    monkeypatch.delenv("AGENTFLOW_MEDIUM_AUTHOR_ID")
    outputs = run_block(PublishToMediumBlock(), POST, credential("medium", MEDIUM_KEY))
    assert outputs == [
        (
            "error",
            "Failed to create Medium post: no author_id (set the pin, the credential's author_id "
            "or AGENTFLOW_MEDIUM_AUTHOR_ID)",
        )
    ]
    secret = json.dumps({"api_key": MEDIUM_KEY, "author_id": MEDIUM_AUTHOR_ID})
    outputs = run_block(
        PublishToMediumBlock(), {**POST, "publish_status": "draft"}, credential("medium", secret)
    )
    assert [pin for pin, _ in outputs] == ["post_id", "post_url", "published_at"]
    outputs = run_block(
        PublishToMediumBlock(), {**POST, "author_id": "someone-else"}, credential("medium", MEDIUM_KEY)
    )
    assert outputs == [
        ("error", "Failed to create Medium post: HTTP 403: You cannot publish posts for that user.")
    ]
    assert medium.requests[-1]["path"] == "/v1/users/someone-else/posts"


def test_medium_refused_token_is_a_clear_error_without_the_key(media: Any) -> None:
    outputs = run_block(PublishToMediumBlock(), POST, credential("medium", "medium-wrong-token"))
    assert outputs == [("error", "Failed to create Medium post: HTTP 401: Token was invalid.")]
    assert no_key(outputs)


def test_medium_publish_status_takes_autogpt_values_only() -> None:
    block = PublishToMediumBlock()
    assert block.make_input({**POST, "publish_status": "unlisted"}).publish_status == "unlisted"
    with pytest.raises(ValueError, match="publish_status"):
        block.make_input({**POST, "publish_status": "published"})


# --- the three exports ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def instance() -> Any:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def run_export(path: Path, instance: DagsterInstance) -> tuple[Any, dict[str, Any]]:
    """The export with credential references, on the reference engine and as a compiled job."""
    graph = with_credential_references(load_graph_file(path))
    inputs = _inputs(graph, path)
    reference = EngineWithCredentials(credentials=Resolver()).run_sync(
        graph, inputs, RunOptions(settings={"allow_private_addresses": True})
    )
    assert reference.status is RunStatus.COMPLETED, reference.error
    assert reference.node_error_count == 0, [e.error for e in reference.executions if e.error]
    assert no_key(reference.to_json())
    job = compile_graph(
        graph, engine=EngineWithCredentials(credentials=Resolver()), console_log_level="ERROR"
    )
    run = job.execute_in_process(run_config={"inputs": inputs}, instance=instance, raise_on_error=False)
    compiled = read_run_summary(instance, run.run_id)
    assert compiled["status"] == "COMPLETED", compiled
    assert compiled["node_error_count"] == 0, compiled
    assert no_key(compiled)
    return reference, compiled


def test_unspirational_poster_maker_end_to_end(media: Any, instance: DagsterInstance) -> None:
    ideogram, _, _ = media
    reference, compiled = run_export(POSTER_MAKER, instance)
    images = reference.outputs["Generated Image"]
    assert len(images) == 4 and all(url.startswith(f"{ideogram.url}/images/") for url in images)
    assert sorted(compiled["outputs"]["Generated Image"]) == sorted(images)  # deterministic server
    generated = [r for r in ideogram.requests if r["method"] == "POST"]
    assert len(generated) == 8 and all(r["path"] == "/v1/ideogram-v3/generate" for r in generated)
    # Three nodes take the LLM's caption; the fourth's own prompt is replaced by the link too.
    assert all(r["body"]["prompt"].startswith("Answer to: ") for r in generated)
    assert all(r["headers"]["api-key"] == IDEOGRAM_KEY for r in generated)


def test_flux_ai_image_generator_end_to_end(media: Any, instance: DagsterInstance) -> None:
    _, replicate, _ = media
    reference, compiled = run_export(FLUX_GENERATOR, instance)
    [url] = reference.outputs["Generated Image"]
    assert url.startswith("https://replicate.delivery/") and url.endswith("/out-0.png")
    [compiled_url] = compiled["outputs"]["Generated Image"]
    assert compiled_url.endswith("/out-0.png")
    creates = [r for r in replicate.requests if r["method"] == "POST"]
    assert [r["path"] for r in creates] == ["/v1/models/black-forest-labs/flux-1.1-pro/predictions"] * 2
    # The local LLM echoes (the start of) its prompt, which names the export's default subject.
    assert "image prompt about Otto" in creates[0]["body"]["input"]["prompt"]


def test_medium_blogger_end_to_end(media: Any, instance: DagsterInstance) -> None:
    _, _, medium = media
    reference, _ = run_export(MEDIUM_BLOGGER, instance)
    node = next(n for n in load_graph_file(MEDIUM_BLOGGER).nodes if n.block_id == PublishToMediumBlock.id)
    [execution] = [e for e in reference.executions if e.node_id == node.id]
    assert [pin for pin, _ in execution.outputs] == ["post_id", "post_url", "published_at"]
    posts = [r["body"] for r in medium.requests]
    assert len(posts) == 2  # the reference run and the compiled job
    assert all(p["title"] == "sample TITLE" and p["content"] == "sample CONTENT" for p in posts)
    assert all(p["contentFormat"] == "markdown" and p["tags"] == ["AI", "LLM"] for p in posts)
    assert REGISTRY.get(node.block_id) is not None
