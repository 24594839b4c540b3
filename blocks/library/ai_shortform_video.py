"""AIShortformVideoCreatorBlock (AutoGPT blocks/ai_shortform_video_block.py): a short video from a script,
rendered by revid.ai.

Like AutoGPT: POST `<base>/api/public/v2/render` (header `key`, AutoGPT's JSON payload) answers a project
id `pid`; then GET `<base>/api/public/v2/status?pid=<pid>` is polled until the status is "ready" with a
`videoUrl` (the block yields that URL), "error" (its `error`), or "FAILED"/"CANCELED" (its `message`).

Two differences from AutoGPT, both on purpose:
- AutoGPT first creates a webhook.site URL but sends `"webhook": None` in the payload, so that URL is never
  used; this block does not create it (no request to a third party that carries no purpose).
- AutoGPT then copies the video into its media store; this engine has none, so the block yields revid's
  video URL as it is.

Base URL and key: blocks/provider_http.py (the credential, provider "revid", type api_key: the key, or
JSON `{"api_key": ..., "base_url": ...}`; then AGENTFLOW_REVID_BASE_URL; then https://www.revid.ai); every
request is address-checked. At run time the environment may also set AGENTFLOW_REVID_POLL_INTERVAL
(seconds between status polls, default 10, AutoGPT's) and AGENTFLOW_REVID_MAX_WAIT (seconds before the
block gives up, default 1000, AutoGPT's).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Field, SecretStr

from blocks.provider_http import (
    ProviderCalls,
    ProviderEndpoint,
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
    Credentials,
    CredentialsField,
    RetryPolicy,
    RunContext,
)

DEFAULT_BASE_URL = "https://www.revid.ai"
RENDER_PATH = "/api/public/v2/render"
STATUS_PATH = "/api/public/v2/status"
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
POLL_INTERVAL_VAR = "AGENTFLOW_REVID_POLL_INTERVAL"
MAX_WAIT_VAR = "AGENTFLOW_REVID_MAX_WAIT"
DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_MAX_WAIT = 1000.0


class AudioTrack(StrEnum):
    OBSERVER = "Observer"
    FUTURISTIC_BEAT = "Futuristic Beat"
    SCIENCE_DOCUMENTARY = "Science Documentary"
    HOTLINE = "Hotline"
    BLADERUNNER_2049 = "Bladerunner 2049"
    A_FUTURE = "A Future"
    ELYSIAN_EMBERS = "Elysian Embers"
    INSPIRING_CINEMATIC = "Inspiring Cinematic"
    BLADERUNNER_REMIX = "Bladerunner Remix"
    IZZAMUZZIC = "Izzamuzzic"
    NAS = "Nas"
    PARIS_ELSE = "Paris - Else"
    SNOWFALL = "Snowfall"
    BURLESQUE = "Burlesque"
    CORNY_CANDY = "Corny Candy"
    HIGHWAY_NOCTURNE = "Highway Nocturne"
    I_DONT_THINK_SO = "I Don't Think So"
    LOSING_YOUR_MARBLES = "Losing Your Marbles"
    REFRESHER = "Refresher"
    TOURIST = "Tourist"
    TWIN_TYCHES = "Twin Tyches"
    DONT_STOP_ME_ABSTRACT_FUTURE_BASS = "Dont Stop Me Abstract Future Bass"

    @property
    def audio_url(self) -> str:
        return AUDIO_URLS[self]


# revid's CDN files for each track, as AutoGPT sends them (spellings included).
AUDIO_URLS: dict[AudioTrack, str] = {
    AudioTrack.OBSERVER: "https://cdn.tfrv.xyz/audio/observer.mp3",
    AudioTrack.FUTURISTIC_BEAT: "https://cdn.tfrv.xyz/audio/_futuristic-beat.mp3",
    AudioTrack.SCIENCE_DOCUMENTARY: "https://cdn.tfrv.xyz/audio/_science-documentary.mp3",
    AudioTrack.HOTLINE: "https://cdn.tfrv.xyz/audio/_hotline.mp3",
    AudioTrack.BLADERUNNER_2049: "https://cdn.tfrv.xyz/audio/_bladerunner-2049.mp3",
    AudioTrack.A_FUTURE: "https://cdn.tfrv.xyz/audio/a-future.mp3",
    AudioTrack.ELYSIAN_EMBERS: "https://cdn.tfrv.xyz/audio/elysian-embers.mp3",
    AudioTrack.INSPIRING_CINEMATIC: "https://cdn.tfrv.xyz/audio/inspiring-cinematic-ambient.mp3",
    AudioTrack.BLADERUNNER_REMIX: "https://cdn.tfrv.xyz/audio/bladerunner-remix.mp3",
    AudioTrack.IZZAMUZZIC: "https://cdn.tfrv.xyz/audio/_izzamuzzic.mp3",
    AudioTrack.NAS: "https://cdn.tfrv.xyz/audio/_nas.mp3",
    AudioTrack.PARIS_ELSE: "https://cdn.tfrv.xyz/audio/_paris-else.mp3",
    AudioTrack.SNOWFALL: "https://cdn.tfrv.xyz/audio/_snowfall.mp3",
    AudioTrack.BURLESQUE: "https://cdn.tfrv.xyz/audio/burlesque.mp3",
    AudioTrack.CORNY_CANDY: "https://cdn.tfrv.xyz/audio/corny-candy.mp3",
    AudioTrack.HIGHWAY_NOCTURNE: "https://cdn.tfrv.xyz/audio/highway-nocturne.mp3",
    AudioTrack.I_DONT_THINK_SO: "https://cdn.tfrv.xyz/audio/i-dont-think-so.mp3",
    AudioTrack.LOSING_YOUR_MARBLES: "https://cdn.tfrv.xyz/audio/losing-your-marbles.mp3",
    AudioTrack.REFRESHER: "https://cdn.tfrv.xyz/audio/refresher.mp3",
    AudioTrack.TOURIST: "https://cdn.tfrv.xyz/audio/tourist.mp3",
    AudioTrack.TWIN_TYCHES: "https://cdn.tfrv.xyz/audio/twin-tynches.mp3",
    AudioTrack.DONT_STOP_ME_ABSTRACT_FUTURE_BASS: "https://cdn.revid.ai/audio/_dont-stop-me-abstract-future-bass.mp3",
}


class GenerationPreset(StrEnum):
    # revid is sent the member *name* (e.g. "LEONARDO" for "Default"), as AutoGPT sends it.
    LEONARDO = "Default"
    ANIME = "Anime"
    REALISM = "Realist"
    ILLUSTRATION = "Illustration"
    SKETCH_COLOR = "Sketch Color"
    SKETCH_BW = "Sketch B&W"
    PIXAR = "Pixar"
    INK = "Japanese Ink"
    RENDER_3D = "3D Render"
    LEGO = "Lego"
    SCIFI = "Sci-Fi"
    RECRO_CARTOON = "Retro Cartoon"
    PIXEL_ART = "Pixel Art"
    CREATIVE = "Creative"
    PHOTOGRAPHY = "Photography"
    RAYTRACED = "Raytraced"
    ENVIRONMENT = "Environment"
    FANTASY = "Fantasy"
    ANIME_SR = "Anime Realism"
    MOVIE = "Movie"
    STYLIZED_ILLUSTRATION = "Stylized Illustration"
    MANGA = "Manga"
    DEFAULT = "DEFAULT"


class Voice(StrEnum):
    LILY = "Lily"
    DANIEL = "Daniel"
    BRIAN = "Brian"
    JESSICA = "Jessica"
    CHARLOTTE = "Charlotte"
    CALLUM = "Callum"
    EVA = "Eva"

    @property
    def voice_id(self) -> str:
        return VOICE_IDS[self]


VOICE_IDS: dict[Voice, str] = {
    Voice.LILY: "pFZP5JQG7iQjIQuC4Bku",
    Voice.DANIEL: "onwK4e9ZLuTAKqWW03F9",
    Voice.BRIAN: "nPczCjzI2devNBz1zQrb",
    Voice.JESSICA: "cgSgspJ2msm6clMCkdW9",
    Voice.CHARLOTTE: "XB0fDUnXU5powFXDhCwa",
    Voice.CALLUM: "N2lVS1w4EtoT3dr4eOWO",
    Voice.EVA: "FGY2WhTYpPnrIDTdsKH5",
}


class VisualMediaType(StrEnum):
    STOCK_VIDEOS = "stockVideo"
    MOVING_AI_IMAGES = "movingImage"
    AI_VIDEO = "aiVideo"


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ProviderError(f"{name} must be a number of seconds, not {raw!r}", retryable=False) from None
    if value < 0:
        raise ProviderError(f"{name} must not be negative, not {raw!r}", retryable=False)
    return value


TEST_CREDENTIALS = mock_credentials(
    "01234567-89ab-cdef-0123-456789abcdef",
    "revid",
    "Mock Revid API key",
    {"api_key": "mock-revid-api-key", "base_url": DEFAULT_BASE_URL},
)


class _FakeRevid:
    """Self-test wire: a render, then "rendering" once, then the outcome."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome
        self.polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("key") != "mock-revid-api-key":
            return httpx.Response(401, json={"error": "Invalid API key"})
        if request.method == "POST" and request.url.path == RENDER_PATH:
            return httpx.Response(200, json={"success": 1, "pid": "test_pid"})
        if request.method == "GET" and request.url.path == STATUS_PATH:
            self.polls += 1
            if self.polls == 1:
                return httpx.Response(200, json={"status": "rendering", "pid": "test_pid"})
            return httpx.Response(200, json={"pid": request.url.params.get("pid"), **self.outcome})
        return httpx.Response(404, json={"error": "not found"})


async def _no_sleep(seconds: float) -> None:
    return None


_SELF_TEST_INPUT = {"script": "[close-up of a cat] Meow!", "ratio": "9 / 16", "frame_rate": 60}


class AIShortformVideoCreatorBlock(ProviderCalls, Block):
    id = "361697fb-0c4f-4feb-aed3-8320c88c771b"
    description = "Creates a shortform video using revid.ai"
    categories = frozenset({BlockCategory.SOCIAL, BlockCategory.AI})
    credentials = (CredentialsField("credentials", provider="revid", type="api_key"),)
    repeated_output_pins = frozenset()
    # A render is billed by revid: never started twice by a retry unless a node's metadata asks.
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=("cannot reach revid", "revid server error"))

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A revid.ai credential reference: {"id": ..., "provider": "revid", "type": "api_key"}',
        )
        script: str = Field(
            description=(
                "1. Use short and punctuated sentences\n\n2. Use linebreaks to create a new clip\n\n3. Text "
                "outside of brackets is spoken by the AI, and [text between brackets] will be used to guide "
                "the visual generation. For example, [close-up of a cat] will show a close-up of a cat."
            ),
            json_schema_extra={"placeholder": "[close-up of a cat] Meow!"},
        )
        ratio: str = Field(default="9 / 16", description="Aspect ratio of the video")
        resolution: str = Field(default="720p", description="Resolution of the video")
        frame_rate: int = Field(default=60, description="Frame rate of the video")
        generation_preset: GenerationPreset = Field(
            default=GenerationPreset.LEONARDO,
            description="Generation preset for visual style - only affects AI-generated visuals",
        )
        background_music: AudioTrack = Field(
            default=AudioTrack.HIGHWAY_NOCTURNE, description="Background music track"
        )
        voice: Voice = Field(default=Voice.LILY, description="AI voice to use for narration")
        video_style: VisualMediaType = Field(
            default=VisualMediaType.STOCK_VIDEOS, description="Type of visual media to use for the video"
        )

    class Output(BlockOutput):
        video_url: str = Field(description="The URL of the created video")

    self_tests = (
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("video_url", "https://example.com/video.mp4")],
            mocks={
                **mock_wire(
                    lambda: _FakeRevid({"status": "ready", "videoUrl": "https://example.com/video.mp4"})
                ),
                "_sleep": _no_sleep,
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("error", "Video creation failed: render crashed")],
            mocks={
                **mock_wire(lambda: _FakeRevid({"status": "error", "error": "render crashed"})),
                "_sleep": _no_sleep,
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("error", lambda e: "HTTP 401" in e and "mock-revid-api-key" not in e)],
            mocks=mock_wire(lambda: _FakeRevid({})),
            credentials={
                "credentials": Credentials(
                    "c",
                    "revid",
                    "api_key",
                    SecretStr(json.dumps({"api_key": "wrong-revid-key", "base_url": DEFAULT_BASE_URL})),
                    "local",
                )
            },
        ),
        private_address_self_test(_SELF_TEST_INPUT, {"credentials": TEST_CREDENTIALS}),
    )

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_endpoint(ctx, "revid", DEFAULT_BASE_URL)
            if not endpoint.api_key.get_secret_value():
                raise ProviderError("the revid credential holds no API key", retryable=False)
            poll_interval = _seconds(POLL_INTERVAL_VAR, DEFAULT_POLL_INTERVAL)
            max_wait = _seconds(MAX_WAIT_VAR, DEFAULT_MAX_WAIT)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                answer = await self._call(client, endpoint, "POST", RENDER_PATH, json=self.payload(input))
                pid = answer.get("pid")
                if not pid:
                    raise ProviderError("Failed to create video: No project ID returned", retryable=False)
                video_url = await self.wait_for_video(client, endpoint, str(pid), poll_interval, max_wait)
        except (ProviderError, RequestRefused) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        yield "video_url", video_url

    @staticmethod
    def payload(input: Input) -> dict[str, Any]:
        """AutoGPT's render request, field for field."""
        return {
            "frameRate": input.frame_rate,
            "resolution": input.resolution,
            "frameDurationMultiplier": 18,
            "webhook": None,
            "creationParams": {
                "mediaType": input.video_style.value,
                "captionPresetName": "Wrap 1",
                "selectedVoice": input.voice.voice_id,
                "hasEnhancedGeneration": True,
                "generationPreset": input.generation_preset.name,
                "selectedAudio": input.background_music.value,
                "origin": "/create",
                "inputText": input.script,
                "flowType": "text-to-video",
                "slug": "create-tiktok-video",
                "hasToGenerateVoice": True,
                "hasToTranscript": False,
                "hasToSearchMedia": True,
                "hasAvatar": False,
                "hasWebsiteRecorder": False,
                "hasTextSmallAtBottom": False,
                "ratio": input.ratio,
                "sourceType": "contentScraping",
                "selectedStoryStyle": {"value": "custom", "label": "Custom"},
                "hasToGenerateVideos": input.video_style != VisualMediaType.STOCK_VIDEOS,
                "audioUrl": input.background_music.audio_url,
            },
        }

    async def wait_for_video(
        self,
        client: httpx.AsyncClient,
        endpoint: ProviderEndpoint,
        pid: str,
        poll_interval: float,
        max_wait: float,
    ) -> str:
        """Poll the render's status until its video URL is ready, it fails, or `max_wait` passes."""
        start = time.monotonic()
        while time.monotonic() - start < max_wait:
            status = await self._call(client, endpoint, "GET", STATUS_PATH, params={"pid": pid})
            state = status.get("status")
            if state == "ready" and status.get("videoUrl"):
                return str(status["videoUrl"])
            if state == "error":
                raise ProviderError(
                    f"Video creation failed: {status.get('error') or 'Unknown error occurred'}",
                    retryable=False,
                )
            if state in ("FAILED", "CANCELED"):
                raise ProviderError(f"Video creation failed: {status.get('message')}", retryable=False)
            await self._sleep(poll_interval)
        raise ProviderError(f"Video creation timed out (render {pid} not ready after {max_wait:g}s)")

    @staticmethod
    async def _call(
        client: httpx.AsyncClient, endpoint: ProviderEndpoint, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        what = "render request" if path == RENDER_PATH else "status request"
        try:
            response = await client.request(
                method, endpoint.url(path), headers={"key": endpoint.api_key.get_secret_value()}, **kwargs
            )
        except RequestRefused:
            raise
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"cannot reach revid at {endpoint.base_url} ({what}): {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 500:
            raise ProviderError(
                f"revid server error on the {what}: HTTP {response.status_code}: {answer_detail(response)}"
            )
        if response.status_code >= 300:
            raise ProviderError(
                f"revid refused the {what}: HTTP {response.status_code}: {answer_detail(response)}",
                retryable=False,
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(f"revid's answer to the {what} is not a JSON object: {response.text[:200]!r}")
        return data
