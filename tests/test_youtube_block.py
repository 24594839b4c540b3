"""TranscribeYoutubeVideoBlock against the local YouTube stand-in (tests/support_youtube.py): the URL
forms, the language choice, the text, every error path, the address rule and the Webshare proxy.
Nothing here leaves the machine: the base URL is the local server or a mocked resolver's answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support_blocks import credential, run_block
from support_youtube import API_KEY, VIDEOS, YouTubeStyleServer, expected_text
from test_llm_blocks import servers  # noqa: F401  (the fixture: local LLM, Jina and YouTube servers)

from agent_defs.graph import load_graph_file
from agent_defs.graph.validation import validate_graph
from agent_defs.paths import shared_dir
from blocks import REGISTRY, Credentials
from blocks.library.youtube import (
    YOUTUBE_RETRY_POLICY,
    Route,
    TranscribeYoutubeVideoBlock,
    build_session,
    extract_video_id,
)

BLOCK_ID = "f3a8f7e1-4b1d-4e5f-9f2a-7c3d5a2e6b4c"
EXPORTS = (
    "agent_c775f60d-b99f-418b-8fe0-53172258c3ce.json",
    "agent_e437cc95-e671-489d-b915-76561fba8c7f.json",
    "agent_e7bb29a1-23c7-4fee-aa3b-5426174b8c52.json",
    "agent_eafa21d3-bf14-4f63-a97f-a5ee41df83b3.json",
)
PROXY_PASSWORD = "proxy-SECRET-7331"


@pytest.fixture
def youtube(
    youtube_server: YouTubeStyleServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[YouTubeStyleServer]:
    youtube_server.reset()
    monkeypatch.setenv("AGENTFLOW_YOUTUBE_BASE_URL", youtube_server.url)
    monkeypatch.setenv("AGENTFLOW_WEBSHARE_PROXY_URL", youtube_server.url)
    yield youtube_server
    youtube_server.reset()


def transcribe(
    url: str,
    *,
    allow_private: bool = True,
    credentials: dict[str, Credentials] | None = None,
    block: TranscribeYoutubeVideoBlock | None = None,
) -> list[tuple[str, Any]]:
    return run_block(block or TranscribeYoutubeVideoBlock(), {"youtube_url": url}, credentials, allow_private)


def webshare(secret: str) -> dict[str, Credentials]:
    return credential("webshare_proxy", secret, "user_password", cred_id="ws")


# --- the block as AutoGPT declares it -----------------------------------------------------------------
def test_the_block_has_autogpts_id_and_pins() -> None:
    block = REGISTRY.get(BLOCK_ID)
    assert isinstance(block, TranscribeYoutubeVideoBlock)
    described = block.describe()
    assert described["name"] == "TranscribeYoutubeVideoBlock"
    assert described["inputs"]["youtube_url"] == {"type": "string", "required": True}
    assert described["inputs"]["credentials"]["required"] is False
    assert set(described["outputs"]) == {"video_id", "transcript", "error"}
    assert described["credentials"] == [
        {"input": "credentials", "provider": "webshare_proxy", "type": "user_password"}
    ]
    assert described["categories"] == ["SOCIAL"]


@pytest.mark.parametrize("name", EXPORTS)
def test_the_four_exports_now_validate(name: str) -> None:
    graph = load_graph_file(shared_dir() / "autogpt-agents" / name)
    assert any(n.block_id == BLOCK_ID for n in graph.nodes)
    assert validate_graph(graph) == []


# --- video ids ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "video_id"),
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://youtube.com/watch?v=dQw4w9WgXcQ&t=42s&list=PL1", "dQw4w9WgXcQ"),
        ("http://www.youtube.com/watch?feature=share&v=J1Mzd1ZeSaU", "J1Mzd1ZeSaU"),
        ("https://youtu.be/KWonAsyKF3g", "KWonAsyKF3g"),
        ("https://youtu.be/KWonAsyKF3g?si=abc123", "KWonAsyKF3g"),
        ("https://www.youtube.com/embed/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://www.youtube.com/embed/dQw4w9WgXcQ?start=10", "dQw4w9WgXcQ"),
        ("https://youtube.com/v/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://www.youtube.com/shorts/a1B2c3D4e5_", "a1B2c3D4e5_"),
        ("  https://WWW.YouTube.com/watch?v=dQw4w9WgXcQ\n", "dQw4w9WgXcQ"),
    ],
)
def test_video_id_from_each_url_form(url: str, video_id: str) -> None:
    assert extract_video_id(url) == video_id


@pytest.mark.parametrize(
    "url",
    [
        "https://vimeo.com/76979871",
        "https://m.youtube.com/watch?v=dQw4w9WgXcQ",  # AutoGPT knows only www., bare and youtu.be hosts
        "https://www.youtube.com/watch?list=PL1",
        "https://www.youtube.com/playlist?list=PL1",
        "https://youtu.be/",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ/../../admin",
        "dQw4w9WgXcQ",
        "",
    ],
)
def test_other_urls_are_an_error_and_no_request(url: str, youtube: YouTubeStyleServer) -> None:
    assert transcribe(url) == [("error", f"Invalid YouTube URL: {url}")]
    assert youtube.requests == []


# --- transcripts --------------------------------------------------------------------------------------
def test_english_transcript_as_plain_text_from_the_three_requests(youtube: YouTubeStyleServer) -> None:
    outputs = transcribe("https://www.youtube.com/watch?v=J1Mzd1ZeSaU")
    assert outputs == [("video_id", "J1Mzd1ZeSaU"), ("transcript", expected_text("J1Mzd1ZeSaU", "en"))]
    # Entities decoded, tags stripped, empty caption lines dropped, lines joined by newlines.
    assert outputs[1][1] == (
        "Welcome back to the channel.\n"
        "Today we build an agent that reads the web & writes summaries.\n"
        "[music]\n"
        "It's simpler than you'd think.\n"
        "Thanks for watching!"
    )
    watch, player, captions = youtube.requests
    assert (watch["method"], watch["path"], watch["query"]) == ("GET", "/watch", "v=J1Mzd1ZeSaU")
    assert watch["headers"]["accept-language"] == "en-US"
    assert (player["method"], player["path"], player["query"]) == (
        "POST",
        "/youtubei/v1/player",
        f"key={API_KEY}",
    )
    body = json.loads(player["body"])
    assert body["videoId"] == "J1Mzd1ZeSaU" and body["context"]["client"]["clientName"] == "ANDROID"
    assert (captions["method"], captions["path"]) == ("GET", "/api/timedtext")
    assert "lang=en" in captions["query"] and "fmt=srv3" not in captions["query"]
    assert not any(r["proxied"] for r in youtube.requests)


def test_the_preferred_language_wins_over_a_manual_transcript(youtube: YouTubeStyleServer) -> None:
    # KWonAsyKF3g has a manual German track and a generated English one: English is asked for first.
    assert transcribe("https://youtu.be/KWonAsyKF3g") == [
        ("video_id", "KWonAsyKF3g"),
        ("transcript", "agents plan their own steps\nand call tools when they need them"),
    ]


def test_without_english_the_first_manual_transcript(youtube: YouTubeStyleServer) -> None:
    assert [t.generated for t in VIDEOS["NoEnglish01"].tracks] == [True, False]
    assert transcribe("https://www.youtube.com/embed/NoEnglish01") == [
        ("video_id", "NoEnglish01"),
        ("transcript", "Guten Tag\nAuf Wiedersehen"),
    ]
    assert "lang=de" in youtube.requests[-1]["query"]


@pytest.mark.parametrize(
    ("video_id", "reason", "transient"),
    [
        ("NoCaptions1", "Subtitles are disabled for this video", False),
        ("NoTracks001", "No transcripts were found for any of the requested language codes: ('en',)", False),
        ("GoneForGood", "The video is no longer available", False),
        ("RateLimit01", "YouTube is blocking requests from your IP", True),
        ("ServerErr01", "Request to YouTube failed: 503 Server Error", True),
    ],
)
def test_failures_are_the_error_output_with_the_librarys_reason(
    video_id: str, reason: str, transient: bool, youtube: YouTubeStyleServer
) -> None:
    outputs = transcribe(f"https://www.youtube.com/watch?v={video_id}")
    assert [pin for pin, _ in outputs] == ["video_id", "error"]
    assert outputs[0] == ("video_id", video_id)
    error = outputs[1][1]
    assert error.startswith(
        f"Could not retrieve a transcript for the video https://www.youtube.com/watch?v={video_id}"
    )
    assert reason in error
    assert youtube.url not in error  # the message names YouTube, not where the request was sent
    # Only YouTube's own trouble counts for retries and the circuit breaker.
    assert YOUTUBE_RETRY_POLICY.is_transient(error) is transient


def test_invalid_url_is_not_a_provider_failure() -> None:
    assert not YOUTUBE_RETRY_POLICY.is_transient("Invalid YouTube URL: https://vimeo.com/1")
    assert YOUTUBE_RETRY_POLICY.is_transient("request to YouTube failed: ConnectionError: refused")


# --- where the requests go ----------------------------------------------------------------------------
def test_a_redirect_to_another_origin_is_refused(youtube: YouTubeStyleServer) -> None:
    outputs = transcribe("https://www.youtube.com/watch?v=Redirect001")
    assert outputs[0] == ("video_id", "Redirect001")
    assert outputs[1][0] == "error"
    assert (
        outputs[1][1] == f"refusing to request {youtube.other}: the YouTube block only requests {youtube.url}"
    )
    assert len(youtube.requests) == 1


def test_a_private_base_url_is_refused_unless_allowed(youtube: YouTubeStyleServer) -> None:
    outputs = transcribe("https://youtu.be/dQw4w9WgXcQ", allow_private=False)
    assert outputs[0] == ("video_id", "dQw4w9WgXcQ")
    assert outputs[1][0] == "error"
    assert "127.0.0.1" in outputs[1][1] and "allow_private_addresses" in outputs[1][1]
    assert youtube.requests == []


def test_the_base_url_is_read_when_the_node_runs(
    youtube: YouTubeStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = TranscribeYoutubeVideoBlock()
    monkeypatch.setenv("AGENTFLOW_YOUTUBE_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    outputs = transcribe("https://youtu.be/dQw4w9WgXcQ", block=block)
    assert outputs[1][0] == "error" and outputs[1][1].startswith("request to YouTube failed: ConnectionError")
    assert YOUTUBE_RETRY_POLICY.is_transient(outputs[1][1])
    monkeypatch.setenv("AGENTFLOW_YOUTUBE_BASE_URL", youtube.url + "/")
    assert transcribe("https://youtu.be/dQw4w9WgXcQ", block=block)[1] == (
        "transcript",
        "Never gonna give you up\nNever gonna let you down",
    )


def test_requests_go_to_the_checked_address_with_the_host_name(
    youtube: YouTubeStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = youtube.httpd.server_address[1]
    monkeypatch.setenv("AGENTFLOW_YOUTUBE_BASE_URL", f"http://youtube.test:{port}")
    block = TranscribeYoutubeVideoBlock()
    looked_up: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return ["127.0.0.1"]

    block._resolve = resolve  # type: ignore[method-assign]
    assert transcribe("https://youtu.be/dQw4w9WgXcQ", block=block)[1][0] == "transcript"
    assert looked_up == [("youtube.test", port)]  # once, before any request
    assert {r["headers"]["host"] for r in youtube.requests} == {f"youtube.test:{port}"}


def test_without_a_base_url_it_is_youtube_itself_and_the_address_rule_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTFLOW_YOUTUBE_BASE_URL", raising=False)
    block = TranscribeYoutubeVideoBlock()
    looked_up: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return ["10.1.2.3"]

    block._resolve = resolve  # type: ignore[method-assign]
    outputs = transcribe("https://youtu.be/dQw4w9WgXcQ", allow_private=False, block=block)
    assert looked_up == [("www.youtube.com", 443)]
    assert "10.1.2.3" in outputs[1][1] and "allow_private_addresses" in outputs[1][1]


def test_a_pinned_https_request_keeps_its_tls_server_name() -> None:
    import httpx
    from requests import Request

    route = Route(
        base=httpx.URL("https://www.youtube.com"),
        target=httpx.URL("https://93.184.215.14"),
        sni="www.youtube.com",
    )
    url, host = route.rewrite("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    assert (url, host) == ("https://93.184.215.14/watch?v=dQw4w9WgXcQ", "www.youtube.com")
    session, adapter = build_session(route)
    prepared = Request("GET", url).prepare()
    host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(prepared, True)
    assert host_params["host"] == "93.184.215.14"
    assert pool_kwargs["server_hostname"] == pool_kwargs["assert_hostname"] == "www.youtube.com"
    session.close()
    with pytest.raises(ValueError, match=r"only requests https://www\.youtube\.com$"):
        route.rewrite("https://consent.youtube.com/s")


# --- the Webshare proxy credential --------------------------------------------------------------------
@pytest.mark.parametrize(
    "secret",
    [json.dumps({"username": "agentflow", "password": PROXY_PASSWORD}), f"agentflow:{PROXY_PASSWORD}"],
)
def test_a_webshare_credential_sends_every_request_through_the_proxy(
    secret: str, youtube: YouTubeStyleServer
) -> None:
    outputs = transcribe("https://www.youtube.com/watch?v=dQw4w9WgXcQ", credentials=webshare(secret))
    assert outputs == [("video_id", "dQw4w9WgXcQ"), ("transcript", expected_text("dQw4w9WgXcQ", "en"))]
    login = base64.b64encode(f"agentflow-rotate:{PROXY_PASSWORD}".encode()).decode()
    assert len(youtube.requests) == 3
    for request in youtube.requests:
        assert request["proxied"] and request["target"].startswith(youtube.url + "/")
        assert request["headers"]["proxy-authorization"] == f"Basic {login}"


def test_a_proxy_failure_does_not_show_the_password(
    youtube: YouTubeStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_WEBSHARE_PROXY_URL", "http://127.0.0.1:9")
    outputs = transcribe("https://youtu.be/dQw4w9WgXcQ", credentials=webshare(f"agentflow:{PROXY_PASSWORD}"))
    assert outputs[1][0] == "error" and outputs[1][1].startswith("request to YouTube failed: ProxyError")
    assert PROXY_PASSWORD not in json.dumps(outputs)


def test_the_proxy_address_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFLOW_YOUTUBE_BASE_URL", raising=False)
    monkeypatch.setenv("AGENTFLOW_WEBSHARE_PROXY_URL", "http://proxy.internal.example:3128")
    block = TranscribeYoutubeVideoBlock()

    async def resolve(host: str, port: int) -> list[str]:
        return ["10.9.8.7"] if host == "proxy.internal.example" else ["93.184.215.14"]

    def fetch(video_id: str, route: Route) -> Any:
        raise AssertionError("no request may be made")

    block._resolve = resolve  # type: ignore[method-assign]
    block._fetch_transcript = fetch  # type: ignore[method-assign]
    outputs = transcribe(
        "https://youtu.be/dQw4w9WgXcQ", allow_private=False, credentials=webshare("u:p4ss"), block=block
    )
    assert "proxy.internal.example" in outputs[1][1] and "10.9.8.7" in outputs[1][1]


def test_a_credential_that_is_no_login_is_an_error(youtube: YouTubeStyleServer) -> None:
    outputs = transcribe("https://youtu.be/dQw4w9WgXcQ", credentials=webshare('{"token": "x"}'))
    assert outputs[1][0] == "error" and "is not a Webshare login" in outputs[1][1]
    assert youtube.requests == []


# --- the four exports: the transcripts reach the model and the outputs --------------------------------
SEARCH_IDS = {"J1Mzd1ZeSaU", "KWonAsyKF3g", "dQw4w9WgXcQ"}  # support_youtube.SEARCH_RESULT_URLS
EXPORT_VIDEOS = {
    EXPORTS[0]: SEARCH_IDS,  # YouTube Transcription Scraper: search page -> model -> each video
    EXPORTS[1]: {"J1Mzd1ZeSaU"},  # AI YouTube-to-Blog Converter
    EXPORTS[2]: {"KWonAsyKF3g"},  # YouTube to LinkedIn Post Converter
    EXPORTS[3]: SEARCH_IDS,  # LinkedIn Post Generator: search page -> model -> each video
}


@pytest.mark.parametrize("name", EXPORTS)
def test_the_exports_transcripts_reach_the_model_and_outputs(
    name: str,
    servers: Any,  # noqa: F811  (the fixture imported above)
    youtube_server: YouTubeStyleServer,
) -> None:
    from dagster import DagsterInstance
    from test_llm_blocks import EngineWithCredentials, Resolver, _inputs, with_credential_references

    from agent_defs.engine import RunOptions, RunStatus
    from agent_defs.jobs.compiler import compile_graph
    from agent_defs.jobs.results import read_run_summary

    llm, _ = servers
    path = shared_dir() / "autogpt-agents" / name
    graph = with_credential_references(load_graph_file(path))
    inputs = _inputs(graph, path)
    result = EngineWithCredentials(credentials=Resolver()).run_sync(
        graph, inputs, RunOptions(settings={"allow_private_addresses": True})
    )
    assert result.status is RunStatus.COMPLETED, result.error
    runs = [e for e in result.executions if e.block_id == BLOCK_ID]
    assert all(e.error is None for e in runs), [e.error for e in runs]
    assert {dict(e.outputs)["video_id"] for e in runs} == EXPORT_VIDEOS[name]
    texts = {expected_text(v, "en") for v in EXPORT_VIDEOS[name]}
    assert {dict(e.outputs)["transcript"] for e in runs} == texts
    if name != EXPORTS[0]:  # the scraper only collects them; the other three write with them
        prompts = "\n".join(str(m.get("content")) for r in llm.requests for m in r["body"]["messages"])
        assert all(line in prompts for text in texts for line in text.split("\n"))
    # The stored graph's Webshare credential: every YouTube request went through the (local) proxy.
    youtube_requests = youtube_server.requests
    assert len(youtube_requests) == 3 * len(runs)
    assert all(r["proxied"] and r["headers"].get("proxy-authorization") for r in youtube_requests)
    if name == EXPORTS[0]:
        (collected,) = result.outputs["Transcripts"]
        assert collected[0] == "Youtube Transcripts" and sorted(collected[1:]) == sorted(texts)
        job = compile_graph(
            graph, engine=EngineWithCredentials(credentials=Resolver()), console_log_level="ERROR"
        )
        with DagsterInstance.ephemeral() as instance:
            run = job.execute_in_process(
                run_config={"inputs": inputs}, instance=instance, raise_on_error=False
            )
            compiled = read_run_summary(instance, run.run_id)
        assert compiled["status"] == "COMPLETED" and compiled["node_error_count"] == 0, compiled
        (collected,) = compiled["outputs"]["Transcripts"]
        assert collected[0] == "Youtube Transcripts" and sorted(collected[1:]) == sorted(texts)


def test_errors_are_scrubbed_of_the_proxy_secret() -> None:
    from blocks.library.youtube import _scrub

    (credential,) = webshare(f"agentflow:{PROXY_PASSWORD}").values()
    text = f"ProxyError: http://agentflow-rotate:{PROXY_PASSWORD}@127.0.0.1:9/ and agentflow:{PROXY_PASSWORD}"
    assert PROXY_PASSWORD not in _scrub(text, credential)
    assert _scrub(text, None) == text
