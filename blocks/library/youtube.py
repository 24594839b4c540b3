"""TranscribeYoutubeVideoBlock (AutoGPT blocks/youtube.py): a video's captions as plain text.

Like AutoGPT, it uses youtube-transcript-api (1.2.x): the video id is taken from the URL forms
AutoGPT knows (`youtube.com/watch?v=ID`, `youtu.be/ID`, `youtube.com/embed/ID`, `youtube.com/v/ID`,
`youtube.com/shorts/ID`; `www.` optional), yielded on `video_id`, then the English transcript is
fetched, else the first available one (manually made before generated), and its lines are joined
with newlines (the library's TextFormatter) on `transcript`. Any failure is the `error` output, with
the library's own explanation (video unavailable, subtitles disabled, no transcript, blocked, ...).

Where the requests go, read when the node runs:

- `AGENTFLOW_YOUTUBE_BASE_URL` (default https://www.youtube.com): every request the library makes to
  https://www.youtube.com (watch page, innertube player POST, timed-text captions) goes to this base
  URL instead, through the requests.Session given to the library. Requests to any other origin
  (a redirect elsewhere, a caption URL on another host) are refused.
- As SendWebRequest and the Jina blocks do, the host is resolved first and private, loopback and other
  non-public addresses are refused unless `ctx.settings["allow_private_addresses"]`; the requests then
  go to the checked address (Host header and TLS server name keep the name), so a second DNS answer
  cannot swap the target. Redirects are followed only within the base URL's origin.
- Pin `credentials` (optional; AutoGPT requires it): a Webshare proxy credential (provider
  "webshare_proxy", type "user_password", secret `{"username": ..., "password": ...}` or
  `username:password`). With one, requests go through Webshare's rotating residential proxy, with the
  library's WebshareProxyConfig (retries when blocked). `AGENTFLOW_WEBSHARE_PROXY_URL` (default
  http://p.webshare.io:80) names the proxy; its address is checked the same way and pinned.

The library is synchronous (requests): it runs in a worker thread, with a timeout on every request.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx
from pydantic import Field

from blocks.outbound import (
    PRIVATE_TEST_ADDRESS,
    ConnectsOut,
    RequestRefused,
    fixed_resolve,
    normalise_url,
    origin_of,
    pinned_adapter_class,
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
    from youtube_transcript_api import FetchedTranscript

YOUTUBE_ORIGIN = "https://www.youtube.com"
BASE_URL_VAR = "AGENTFLOW_YOUTUBE_BASE_URL"
PROXY_URL_VAR = "AGENTFLOW_WEBSHARE_PROXY_URL"
DEFAULT_PROXY_URL = "http://p.webshare.io:80"
PREFERRED_LANGUAGES = ("en",)  # AutoGPT fetches with the library's default, English
REQUEST_TIMEOUT = (15.0, 60.0)  # (connect, read) seconds for each request; the library sets none
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_YOUTUBE_HOSTS = ("www.youtube.com", "youtube.com")

# One attempt (a node may ask for retries in its metadata). Transport failures, YouTube's 5xx answers
# and its blocking are the provider's failures; a bad URL or a video without captions is not (and
# must not trip the breaker).
YOUTUBE_RETRY_POLICY = RetryPolicy(
    attempts=1,
    retry_on_errors=(
        "request to YouTube failed",
        "Server Error:",
        "YouTube is blocking",
    ),
)


def extract_video_id(url: str) -> str:
    """The video id of a YouTube URL, for the forms AutoGPT's block accepts; ValueError otherwise."""
    parsed = urlparse(url.strip())
    host = parsed.netloc.lower()
    video_id: str | None = None
    if host == "youtu.be":
        video_id = parsed.path[1:]
    elif host in _YOUTUBE_HOSTS:
        if parsed.path == "/watch":
            video_id = (parse_qs(parsed.query).get("v") or [""])[0]
        elif parsed.path.startswith(("/embed/", "/v/", "/shorts/")):
            video_id = parsed.path.split("/")[2]
    # AutoGPT passes whatever it found on; an id that cannot be one (empty, or with characters no
    # video id has) is refused here instead of being put into the request URLs.
    if video_id is None or not _VIDEO_ID.fullmatch(video_id):
        raise ValueError(f"Invalid YouTube URL: {url}")
    return video_id


@dataclass(frozen=True)
class ProxyLogin:
    username: str
    password: str


def proxy_login(credential: Credentials | None) -> ProxyLogin | None:
    """The Webshare login of a `user_password` credential: JSON {"username", "password"} or `user:pass`."""
    if credential is None:
        return None
    secret = credential.secret.get_secret_value()
    try:
        data = json.loads(secret)
    except ValueError:
        data = None
    if isinstance(data, dict):
        username = data.get("username") or data.get("proxy_username")
        password = data.get("password") or data.get("proxy_password")
    else:
        username, _, password = secret.partition(":")
    if not username or not password:
        raise ValueError(
            f"credential {credential.id} is not a Webshare login: expected "
            '{"username": ..., "password": ...} or username:password'
        )
    return ProxyLogin(str(username), str(password))


@dataclass(frozen=True)
class Route:
    """Where this execution's requests go: the (checked, pinned) base URL, and the proxy if any."""

    base: httpx.URL  # the configured base URL (its origin and path prefix)
    target: httpx.URL  # the base URL with its host replaced by the checked address (when not proxied)
    sni: str | None  # TLS server name to keep when `target` is an address
    proxy: ProxyLogin | None = None
    proxy_host: str = ""  # the checked proxy address ("[v6]" bracketed) and port
    proxy_port: int = 80

    def rewrite(self, url: str) -> tuple[str, str | None]:
        """The URL to send a request for `url` to, and the Host header to send (None: the URL's).
        Only the YouTube origin (mapped onto the base URL) and the base URL's own origin are allowed."""
        parsed = httpx.URL(url)
        origin = origin_of(parsed)
        prefix = self.base.raw_path.rstrip(b"/") if self.base.raw_path != b"/" else b""
        if origin == ("https", "www.youtube.com", 443):
            raw_path = prefix + parsed.raw_path
        elif origin == origin_of(self.base):
            raw_path = parsed.raw_path
        else:
            raise RequestRefused(
                f"refusing to request {parsed.scheme}://{parsed.netloc.decode('ascii')}: the YouTube block "
                f"only requests {_origin_text(self.base)}"
            )
        sent = self.target.copy_with(raw_path=raw_path)
        host_header = self.base.netloc.decode("ascii") if sent.host != self.base.host else None
        return str(sent), host_header


def _origin_text(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def build_session(route: Route) -> tuple[Any, Any]:
    """A requests.Session whose every request goes through `route` (rewrite, origin check, pinned
    address, TLS name, timeout), and its adapter; with a proxy it retries on HTTP 429 as the library's
    own adapters would."""
    from requests import Session
    from urllib3 import Retry

    class RoutedAdapter(pinned_adapter_class()):  # type: ignore[misc]
        def send(self, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
            url, host_header = route.rewrite(request.url)
            sent = request.copy()
            sent.url = url
            if host_header is not None:
                sent.headers["Host"] = host_header
            response = super().send(sent, stream=stream, timeout=timeout or REQUEST_TIMEOUT, **kwargs)
            # The library, its cookie jar and redirects see YouTube's own URL.
            response.request = request
            response.url = request.url
            return response

    session = Session()
    session.trust_env = False  # no proxies or .netrc from the environment, as the other web blocks
    retries = Retry(total=10, status_forcelist=[429]) if route.proxy else 0
    adapter = RoutedAdapter(route.sni, max_retries=retries)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


def fetch_transcript(video_id: str, route: Route) -> FetchedTranscript:
    """The preferred-language transcript, else the first available one (manual before generated)."""
    from youtube_transcript_api import NoTranscriptFound, YouTubeTranscriptApi
    from youtube_transcript_api.proxies import WebshareProxyConfig

    proxy_config = None
    if route.proxy is not None:
        proxy_config = WebshareProxyConfig(
            proxy_username=route.proxy.username,
            proxy_password=route.proxy.password,
            domain_name=route.proxy_host,
            proxy_port=route.proxy_port,
        )
    session, adapter = build_session(route)
    api = YouTubeTranscriptApi(proxy_config=proxy_config, http_client=session)
    # With a proxy the library mounts adapters of its own (retries on 429): ours, which retry the
    # same way, go back in place.
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    try:
        transcripts = api.list(video_id)
        try:
            return transcripts.find_transcript(PREFERRED_LANGUAGES).fetch()
        except NoTranscriptFound:
            available = list(transcripts)  # manually created first, then generated
            if not available:
                raise
            return available[0].fetch()
    finally:
        session.close()


def format_transcript(transcript: Any) -> str:
    from youtube_transcript_api.formatters import TextFormatter

    return TextFormatter().format_transcript(transcript)


# --- self-test helpers --------------------------------------------------------------------------------
def _fake_fetch(video_id: str, route: Route) -> Any:
    if route.target.host != "93.184.215.14" or route.sni != "www.youtube.com":
        raise AssertionError(f"requests not pinned to the checked address: {route}")
    lines = ["Never gonna give you up", "Never gonna let you down"]
    return [SimpleNamespace(text=line, start=0.0, duration=1.0) for line in lines]


class TranscribeYoutubeVideoBlock(ConnectsOut, Block):
    id = "f3a8f7e1-4b1d-4e5f-9f2a-7c3d5a2e6b4c"
    description = "Transcribes a YouTube video using a proxy."
    categories = frozenset({BlockCategory.SOCIAL})
    credentials = (
        CredentialsField("credentials", provider="webshare_proxy", type="user_password", optional=True),
    )
    provider = "youtube"  # one circuit breaker for YouTube, with or without a proxy
    retry_policy = YOUTUBE_RETRY_POLICY
    repeated_output_pins = frozenset()

    class Input(BlockInput):
        youtube_url: str = Field(
            title="YouTube URL",
            description="The URL of the YouTube video to transcribe",
            json_schema_extra={"placeholder": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"},
        )
        credentials: Any = Field(
            default=None,
            description='Webshare proxy credentials for fetching YouTube transcripts: {"id": ...} (optional)',
        )

    class Output(BlockOutput):
        video_id: str = Field(description="The extracted YouTube video ID")
        transcript: str = Field(description="The transcribed text of the video")

    self_tests = (
        BlockSelfTest(
            input={"youtube_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"},
            output=[
                ("video_id", "dQw4w9WgXcQ"),
                ("transcript", "Never gonna give you up\nNever gonna let you down"),
            ],
            mocks={
                "_base_url": lambda: YOUTUBE_ORIGIN,
                "_resolve": fixed_resolve(),
                "_fetch_transcript": _fake_fetch,
            },
        ),
        BlockSelfTest(
            input={"youtube_url": "https://vimeo.com/76979871"},
            output=[("error", "Invalid YouTube URL: https://vimeo.com/76979871")],
        ),
        BlockSelfTest(
            input={"youtube_url": "https://youtu.be/dQw4w9WgXcQ"},
            output=[
                ("video_id", "dQw4w9WgXcQ"),
                ("error", lambda e: "10.0.0.7" in e and "allow_private_addresses" in e),
            ],
            mocks={
                "_base_url": lambda: "https://youtube.internal.example",
                "_resolve": fixed_resolve(PRIVATE_TEST_ADDRESS),
            },
        ),
    )

    # --- I/O helpers: self-tests replace these ---------------------------------------------------------
    def _base_url(self) -> str:
        return os.environ.get(BASE_URL_VAR) or YOUTUBE_ORIGIN

    def _proxy_url(self) -> str:
        return os.environ.get(PROXY_URL_VAR) or DEFAULT_PROXY_URL

    def _fetch_transcript(self, video_id: str, route: Route) -> Any:
        return fetch_transcript(video_id, route)

    # --- logic -----------------------------------------------------------------------------------------
    async def _route(self, ctx: RunContext) -> Route:
        policy = self.outbound_policy(ctx.settings)
        base = normalise_url(self._base_url())
        login = proxy_login(ctx.credentials.get("credentials"))
        target, sni = await policy.pin(base)
        if login is None:
            return Route(base=base, target=target, sni=sni)
        proxy = normalise_url(self._proxy_url())
        if proxy.scheme != "http":
            raise RequestRefused(f"{PROXY_URL_VAR} must be an http:// proxy URL, not {proxy.scheme}://")
        pinned_proxy, _ = await policy.pin(proxy)
        # Through a proxy, the proxy resolves and connects to the base host: the request keeps its name.
        return Route(
            base=base,
            target=base,
            sni=None,
            proxy=login,
            proxy_host=_host_for_url(pinned_proxy.host),
            proxy_port=proxy.port or 80,
        )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            video_id = extract_video_id(input.youtube_url)
        except ValueError as exc:
            yield "error", str(exc)
            return
        yield "video_id", video_id

        credential = ctx.credentials.get("credentials")
        try:
            route = await self._route(ctx)
            transcript = await asyncio.to_thread(self._fetch_transcript, video_id, route)
            text = format_transcript(transcript)
        except RequestRefused as exc:
            yield "error", _scrub(str(exc), credential)
            return
        except Exception as exc:
            yield "error", _scrub(_describe(exc), credential)
            return
        yield "transcript", text


def _describe(exc: Exception) -> str:
    """The library's own explanation for its errors (as AutoGPT shows them); transport failures named."""
    from requests import RequestException
    from youtube_transcript_api import YouTubeTranscriptApiException

    if isinstance(exc, YouTubeTranscriptApiException):
        return str(exc).strip()
    if isinstance(exc, RequestException):
        return f"request to YouTube failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _scrub(text: str, credential: Credentials | None) -> str:
    """The proxy secret, and the password inside it, never appear in an error (the engine's redactor
    scrubs the whole secret and JSON parts; `user:pass` secrets are split here)."""
    if credential is None:
        return text
    secret = credential.secret.get_secret_value()
    parts = [secret]
    try:
        login = proxy_login(credential)
    except ValueError:
        login = None
    if login is not None:
        parts.append(login.password)
    for part in parts:
        if len(part) >= 4:
            text = text.replace(part, "***")
    return text
