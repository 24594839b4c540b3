"""GmailSendBlock against the local Gmail stand-in (tests/support_google.py) through google-api-python-client,
AIShortformVideoCreatorBlock against the local revid.ai stand-in (tests/support_revid.py), and the two
exports they make runnable (Personal Newsletter, AI Video Generator) reaching those servers on the
reference engine and as compiled Dagster jobs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import DagsterInstance
from support_blocks import credential, run_block, secret_free
from support_google import GMAIL_TOKEN, GmailStyleServer
from support_revid import REVID_KEY, RevidStyleServer
from test_llm_blocks import (
    EXPORTS_DIR,
    EngineWithCredentials,
    Resolver,
    _inputs,
    assert_no_key,
    script_export_llm,
    servers,  # noqa: F401  (a fixture the export tests use)
    with_credential_references,
)

from agent_defs.engine import RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from blocks import REGISTRY, Credentials, RunContext
from blocks.library.ai_shortform_video import AIShortformVideoCreatorBlock
from blocks.library.gmail import GmailSendBlock

NEWSLETTER = "agent_00fdd42c-a14c-4d19-a567-65374ea0e87f.json"
VIDEO_GENERATOR = "agent_a03b0d8c-4751-43d6-a54e-c3b7856ba4e3.json"


def google(secret: str) -> dict[str, Credentials]:
    return credential("google", secret, "oauth2", cred_id="g", title="Google")


def revid(secret: str) -> dict[str, Credentials]:
    return credential("revid", secret, cred_id="r", title="revid")


@pytest.fixture
def gmail(gmail_server: GmailStyleServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GmailStyleServer]:
    gmail_server.reset()
    monkeypatch.setenv("AGENTFLOW_GOOGLE_API_URL", gmail_server.url)
    yield gmail_server


@pytest.fixture
def revid_api(revid_server: RevidStyleServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RevidStyleServer]:
    revid_server.reset()
    monkeypatch.setenv("AGENTFLOW_REVID_BASE_URL", revid_server.url)
    monkeypatch.setenv("AGENTFLOW_REVID_POLL_INTERVAL", "0.01")
    yield revid_server


def assert_secret_free(outputs: Any) -> None:
    assert secret_free(outputs, GMAIL_TOKEN, REVID_KEY)


# --- Gmail -----------------------------------------------------------------------------------------------
def test_gmail_send_builds_the_mime_message_gmail_receives(gmail: GmailStyleServer) -> None:
    long_line = "word " * 40  # longer than 78 characters: plain text must not be hard-wrapped
    attachment = "data:text/csv;base64," + base64.b64encode(b"a,b\n1,2\n").decode()
    outputs = run_block(
        GmailSendBlock(),
        {
            "to": ["alice@example.com", "bob@example.com"],
            "cc": ["carol@example.com"],
            "bcc": ["dave@example.com"],
            "subject": "Weekly report \U0001f680 café",
            "body": long_line,
            "attachments": [attachment],
        },
        google(GMAIL_TOKEN),
    )
    (sent,) = gmail.sent
    assert outputs == [("result", {"id": sent["id"], "status": "sent"})]
    (request,) = gmail.requests
    assert request["method"] == "POST" and request["path"] == "/gmail/v1/users/me/messages/send"
    assert request["headers"]["authorization"] == f"Bearer {GMAIL_TOKEN}"
    assert sent["to"] == ["alice@example.com", "bob@example.com"]
    assert sent["cc"] == ["carol@example.com"] and sent["bcc"] == ["dave@example.com"]
    assert sent["subject"] == "Weekly report \U0001f680 café"
    assert sent["content_type"] == "text/plain" and sent["body"] == long_line
    assert sent["attachments"] == [
        {"filename": "file1.csv", "content_type": "text/csv", "data": b"a,b\n1,2\n"}
    ]


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (None, "<h1>Hello</h1><p>there</p>", "text/html"),  # auto: tags in the first 500 characters
        ("auto", "1 < 2 but no tags close", "text/plain"),
        ("plain", "<b>shown as text</b>", "text/plain"),
        ("html", "no tags at all", "text/html"),
    ],
)
def test_gmail_content_type_like_autogpt(
    gmail: GmailStyleServer, content_type: str | None, body: str, expected: str
) -> None:
    data = {"to": ["a@example.com"], "subject": "s", "body": body, "content_type": content_type}
    [(pin, _)] = run_block(GmailSendBlock(), data, google(GMAIL_TOKEN))
    assert pin == "result"
    assert gmail.sent[-1]["content_type"] == expected and gmail.sent[-1]["body"] == body


def test_gmail_refused_token_is_a_clear_error_without_the_token(gmail: GmailStyleServer) -> None:
    bad = "ya29.wrong-token-31337"
    [(pin, message)] = run_block(
        GmailSendBlock(), {"to": ["a@example.com"], "subject": "s", "body": "b"}, google(bad)
    )
    assert pin == "error"
    assert "HTTP 401" in message and "invalid authentication credentials" in message
    assert "access token was refused" in message
    assert bad not in message and not gmail.sent


def test_gmail_rejection_by_the_api_is_reported(gmail: GmailStyleServer) -> None:
    data = {"to": ["test"], "subject": "s", "body": "b"}  # what an unfilled export input gives
    [(pin, message)] = run_block(GmailSendBlock(), data, google(GMAIL_TOKEN))
    assert (pin, message) == ("error", "Gmail send failed: HTTP 400: Invalid To header")
    assert len(gmail.requests) == 1 and not gmail.sent


def test_gmail_blank_recipients_are_refused_before_sending(gmail: GmailStyleServer) -> None:
    data = {"to": ["", "  "], "subject": "s", "body": "b"}  # the export's placeholder [""], unlinked
    [(pin, message)] = run_block(GmailSendBlock(), data, google(GMAIL_TOKEN))
    assert pin == "error" and "At least one recipient, subject, and body are required" in message
    assert not gmail.requests  # refused before anything was sent


def test_gmail_token_and_base_url_from_a_json_credential(
    gmail: GmailStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_GOOGLE_API_URL", "http://127.0.0.1:9")  # the credential's URL wins
    secret = json.dumps({"access_token": GMAIL_TOKEN, "base_url": gmail.url + "/"})
    [(pin, result)] = run_block(
        GmailSendBlock(), {"to": ["a@example.com"], "subject": "s", "body": "b"}, google(secret)
    )
    assert pin == "result" and result["status"] == "sent" and len(gmail.sent) == 1


def test_gmail_refuses_a_loopback_base_url_unless_allowed(gmail: GmailStyleServer) -> None:
    import asyncio

    async def go() -> list[tuple[str, Any]]:
        block = GmailSendBlock()
        ctx = RunContext(credentials=google(GMAIL_TOKEN))  # no allow_private_addresses
        data = block.make_input({"to": ["a@example.com"], "subject": "s", "body": "b"})
        return [item async for item in block.run(data, ctx)]

    [(pin, message)] = asyncio.run(go())
    assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    assert not gmail.requests


def test_gmail_attachment_must_be_a_data_uri(gmail: GmailStyleServer) -> None:
    data = {"to": ["a@example.com"], "subject": "s", "body": "b", "attachments": ["/etc/passwd"]}
    [(pin, message)] = run_block(GmailSendBlock(), data, google(GMAIL_TOKEN))
    assert pin == "error" and "data: URI" in message and not gmail.requests


def test_gmail_unreachable_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_GOOGLE_API_URL", "http://127.0.0.1:9")
    [(pin, message)] = run_block(
        GmailSendBlock(), {"to": ["a@example.com"], "subject": "s", "body": "b"}, google(GMAIL_TOKEN)
    )
    assert pin == "error" and "could not reach the Gmail API at http://127.0.0.1:9" in message
    assert GMAIL_TOKEN not in message


# --- revid -----------------------------------------------------------------------------------------------
def test_revid_renders_then_polls_until_the_video_is_ready(revid_api: RevidStyleServer) -> None:
    data = {
        "script": "[close-up of a cat] Meow!",
        "ratio": "9 / 16",
        "voice": "Brian",
        "frame_rate": 30,
        "video_style": "movingImage",
        "background_music": "Bladerunner 2049",
        "generation_preset": "Default",
    }
    [(pin, url)] = run_block(AIShortformVideoCreatorBlock(), data, revid(REVID_KEY))
    render, *polls = revid_api.requests
    assert render["method"] == "POST" and render["path"] == "/api/public/v2/render"
    assert render["headers"]["key"] == REVID_KEY
    body = render["body"]
    assert body["frameRate"] == 30 and body["resolution"] == "720p" and body["webhook"] is None
    params = body["creationParams"]
    assert params["inputText"] == "[close-up of a cat] Meow!"
    assert params["selectedVoice"] == "nPczCjzI2devNBz1zQrb"  # Brian
    assert params["generationPreset"] == "LEONARDO"  # the member name, as AutoGPT sends it
    assert params["selectedAudio"] == "Bladerunner 2049"
    assert params["audioUrl"] == "https://cdn.tfrv.xyz/audio/_bladerunner-2049.mp3"
    assert params["mediaType"] == "movingImage" and params["hasToGenerateVideos"] is True
    assert params["ratio"] == "9 / 16"
    pid = polls[0]["query"]["pid"]
    assert len(polls) == revid_api.polls_to_finish
    assert all(p["method"] == "GET" and p["path"] == "/api/public/v2/status" for p in polls)
    assert (pin, url) == ("video_url", f"{revid_api.url}/videos/{pid}.mp4")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("fail-render please", "Video creation failed: Not enough credits to render"),
        ("cancel-render please", "Video creation failed: Render was stopped"),
        ("no-pid please", "Failed to create video: No project ID returned"),
    ],
)
def test_revid_failed_render_is_an_error(revid_api: RevidStyleServer, script: str, expected: str) -> None:
    [(pin, message)] = run_block(AIShortformVideoCreatorBlock(), {"script": script}, revid(REVID_KEY))
    assert (pin, message) == ("error", expected)


def test_revid_gives_up_after_the_maximum_wait(
    revid_api: RevidStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_REVID_MAX_WAIT", "0.1")
    [(pin, message)] = run_block(AIShortformVideoCreatorBlock(), {"script": "never-finish"}, revid(REVID_KEY))
    assert pin == "error" and "Video creation timed out" in message
    assert len(revid_api.requests) > 2  # it did poll


def test_revid_refused_key_is_a_clear_error_without_the_key(revid_api: RevidStyleServer) -> None:
    bad = "revid-wrong-key-4242"
    [(pin, message)] = run_block(AIShortformVideoCreatorBlock(), {"script": "x"}, revid(bad))
    assert pin == "error" and "revid refused the render request: HTTP 401: Invalid API key" in message
    assert bad not in message


def test_revid_refuses_a_loopback_base_url_unless_allowed(revid_api: RevidStyleServer) -> None:
    import asyncio

    async def go() -> list[tuple[str, Any]]:
        block = AIShortformVideoCreatorBlock()
        ctx = RunContext(credentials=revid(REVID_KEY))
        return [item async for item in block.run(block.make_input({"script": "x"}), ctx)]

    [(pin, message)] = asyncio.run(go())
    assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    assert not revid_api.requests


# --- the exports -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _run(name: str, llm: Any, compiled: bool, instance: DagsterInstance) -> dict[str, Any]:
    """The export's outputs, on the reference engine or as a compiled Dagster job."""
    path = EXPORTS_DIR / name
    graph = with_credential_references(load_graph_file(path))
    inputs = _inputs(graph, path)
    script_export_llm(path, llm)
    engine = EngineWithCredentials(credentials=Resolver())
    if not compiled:
        result = engine.run_sync(graph, inputs, RunOptions(settings={"allow_private_addresses": True}))
        assert result.status is RunStatus.COMPLETED, result.error
        provider_nodes = [e for e in result.executions if REGISTRY.get(e.block_id).credentials]  # type: ignore[union-attr]
        assert all(e.error is None for e in provider_nodes), [e.error for e in provider_nodes]
        assert_no_key(result.to_json())
        return dict(result.outputs)
    job = compile_graph(graph, engine=engine, console_log_level="ERROR")
    run = job.execute_in_process(run_config={"inputs": inputs}, instance=instance, raise_on_error=False)
    summary = read_run_summary(instance, run.run_id)
    assert summary["status"] == "COMPLETED", summary
    assert summary["node_error_count"] == 0, summary
    assert_no_key(summary)
    return dict(summary["outputs"])


@pytest.mark.parametrize("compiled", [False, True], ids=["reference", "compiled"])
def test_personal_newsletter_export_emails_its_report(
    servers: Any,  # noqa: F811
    gmail_server: GmailStyleServer,
    instance: DagsterInstance,
    compiled: bool,
) -> None:
    llm, _ = servers
    outputs = _run(NEWSLETTER, llm, compiled, instance)
    assert outputs == {"Newsletter": ["# Space Weekly\n![rocket](https://example.com/rocket.jpg)"]}
    (sent,) = gmail_server.sent  # the "Text to Email Report" sub-agent sent the HTML report
    assert sent["to"] == ["reader@example.com"]
    assert sent["subject"] == "Space Weekly: Rockets and Rings"  # the newsletter's parsed <title>
    assert sent["content_type"] == "text/html" and sent["body"].startswith("<html><body><h1>Space Weekly")


@pytest.mark.parametrize("compiled", [False, True], ids=["reference", "compiled"])
def test_video_generator_export_renders_its_script(
    servers: Any,  # noqa: F811
    revid_server: RevidStyleServer,
    instance: DagsterInstance,
    compiled: bool,
) -> None:
    llm, _ = servers
    outputs = _run(VIDEO_GENERATOR, llm, compiled, instance)
    render = revid_server.requests[0]
    script = render["body"]["creationParams"]["inputText"]
    assert outputs["Video Script (+Visual Cues)"] == [script]
    assert render["body"]["frameRate"] == 30  # the export's node settings
    assert render["body"]["creationParams"]["selectedVoice"] == "nPczCjzI2devNBz1zQrb"
    [video] = outputs["Video"]
    assert video.startswith(f"{revid_server.url}/videos/") and video.endswith(".mp4")
    assert outputs["Short-Form Video Title"] == ["AutoGPT Agents Are Here"]
    assert outputs["Optimised Hashtags"] == ["#AI #AutoGPT"]
