"""A local stand-in for the YouTube endpoints youtube-transcript-api 1.2.x calls, on 127.0.0.1.

The library makes three requests per transcript (youtube_transcript_api/_transcripts.py):

1. GET  /watch?v=<id>                          the watch page; it needs `"INNERTUBE_API_KEY": "<key>"`
                                               in the (HTML-unescaped) page, else it reports the data
                                               unparsable (or IP-blocked when a reCAPTCHA is shown);
2. POST /youtubei/v1/player?key=<key>          JSON `{"context": {"client": {"clientName": "ANDROID",
                                               ...}}, "videoId": <id>}`; the answer's
                                               `playabilityStatus` and
                                               `captions.playerCaptionsTracklistRenderer.captionTracks`
                                               (baseUrl, name.runs[0].text, languageCode, kind "asr"
                                               for generated tracks, isTranslatable);
3. GET  <captionTracks[i].baseUrl>             (`&fmt=srv3` removed) the timed-text XML:
                                               `<transcript><text start=".." dur="..">..</text>..`,
                                               text HTML-escaped inside the XML, as YouTube sends it.

Caption base URLs are absolute `https://www.youtube.com/api/timedtext?...` URLs, as YouTube's are, so
the block's rewrite of that origin to the configured base URL is exercised on every kind of request.

Videos (`VIDEOS`) cover a manual English track, a generated English track beside a manual German one
(the preferred language wins over manually-made), no English at all (the first manual track wins),
captions disabled, an empty track list, an unavailable video (any unknown id), a rate-limited watch
page (429), a failing player endpoint (503) and a watch page that redirects to another origin.

The server also answers requests sent to it as an HTTP proxy (absolute-form request lines), recording
the Proxy-Authorization header, so the Webshare proxy credential path runs locally too. Every request
is recorded in `requests`.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape as xml_escape

from support_servers import RecordingServer, StandInHandler

API_KEY = "AIzaLocalTestKey_agentflow-0123456789"
YOUTUBE_ORIGIN = "https://www.youtube.com"


@dataclass(frozen=True)
class Track:
    language_code: str
    name: str
    # Caption lines as YouTube holds them (before its escaping): tags and entities are the library's to strip.
    lines: tuple[str, ...]
    generated: bool = False
    translatable: bool = True


@dataclass(frozen=True)
class Video:
    tracks: tuple[Track, ...] = ()
    captions: bool = True  # False: the player answer has no captions at all (subtitles disabled)
    watch_status: int = 200  # the watch page's HTTP status (429: rate limited)
    player_status: int = 200  # the player endpoint's HTTP status
    redirect_to: str | None = None  # the watch page redirects here ("{other}": the server's other origin)


VIDEOS: dict[str, Video] = {
    # AutoGPT's own self-test video.
    "dQw4w9WgXcQ": Video(
        tracks=(Track("en", "English", ("Never gonna give you up", "Never gonna let you down")),)
    ),
    # The video of the "AI YouTube-to-Blog Converter" export.
    "J1Mzd1ZeSaU": Video(
        tracks=(
            Track(
                "en",
                "English",
                (
                    "Welcome back to the channel.",
                    "Today we build an agent that reads the web &amp; writes summaries.",
                    "<i>[music]</i>",
                    "It&#39;s simpler than you&#39;d think.",
                    "",
                    "Thanks for watching!",
                ),
            ),
        )
    ),
    # The video of the "YouTube to LinkedIn Post Converter" export: generated English, manual German.
    "KWonAsyKF3g": Video(
        tracks=(
            Track("de", "Deutsch", ("Agenten planen ihre Schritte selbst.",)),
            Track(
                "en",
                "English (auto-generated)",
                ("agents plan their own steps", "and call tools when they need them"),
                generated=True,
            ),
        )
    ),
    # No English: generated French comes first in the list, but a manual track is preferred.
    "NoEnglish01": Video(
        tracks=(
            Track("fr", "Français (générés automatiquement)", ("bonjour à tous",), generated=True),
            Track("de", "Deutsch", ("Guten Tag", "Auf Wiedersehen")),
        )
    ),
    "NoCaptions1": Video(captions=False),
    "NoTracks001": Video(tracks=()),
    "RateLimit01": Video(watch_status=429),
    "ServerErr01": Video(player_status=503),
    "Redirect001": Video(redirect_to="{other}/watch?v=dQw4w9WgXcQ"),
}


def timedtext_xml(track: Track) -> str:
    """YouTube's timed-text XML: each line (already HTML-escaped, as YouTube keeps them) XML-escaped
    once more; the library undoes both and strips tags. An empty line is an empty element (skipped)."""
    body = []
    for i, line in enumerate(track.lines):
        text = xml_escape(line)
        body.append(f'<text start="{i * 2.5:.2f}" dur="2.40">{text}</text>')
    return '<?xml version="1.0" encoding="utf-8" ?><transcript>' + "".join(body) + "</transcript>"


def expected_text(video_id: str, language_code: str) -> str:
    """What the block outputs for a track: TextFormatter's lines, tags stripped, entities decoded."""
    track = next(t for t in VIDEOS[video_id].tracks if t.language_code == language_code)
    lines = [re.sub(r"<[^>]*>", "", html.unescape(line)) for line in track.lines if line]
    return "\n".join(lines)


class _YouTubeHandler(StandInHandler):
    def _record(self, body: bytes) -> tuple[str, dict[str, list[str]]]:
        server: YouTubeStyleServer = self.server.owner  # type: ignore[attr-defined]
        proxied = self.path.startswith(("http://", "https://"))
        parts = urlsplit(self.path)
        server.record(
            {
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "proxied": proxied,
                "target": self.path,
                "headers": self.header_dict(),
                "body": body.decode("utf-8", "replace"),
            }
        )
        return parts.path, parse_qs(parts.query)

    def do_GET(self) -> None:
        path, query = self._record(b"")
        server: YouTubeStyleServer = self.server.owner  # type: ignore[attr-defined]
        video_id = (query.get("v") or [""])[0]
        video = VIDEOS.get(video_id)
        if path == "/watch":
            if video is not None and video.redirect_to:
                self.send_data(
                    302, b"", "text/plain", {"Location": video.redirect_to.format(other=server.other)}
                )
            elif video is not None and video.watch_status != 200:
                self.send_data(video.watch_status, b"Too Many Requests", "text/plain")
            else:
                self.send_data(200, watch_page(video_id).encode(), "text/html; charset=utf-8")
        elif path == "/api/timedtext":
            language = (query.get("lang") or [""])[0]
            track = next((t for t in video.tracks if t.language_code == language), None) if video else None
            if track is None:
                self.send_data(404, b"", "text/xml")
            else:
                self.send_data(200, timedtext_xml(track).encode(), "text/xml; charset=UTF-8")
        else:
            self.send_data(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        raw = self.read_body()
        path, query = self._record(raw)
        if path != "/youtubei/v1/player":
            self.send_data(404, b"not found", "text/plain")
            return
        if (query.get("key") or [""])[0] != API_KEY:
            self._json(400, {"error": {"code": 400, "message": "API key not valid."}})
            return
        try:
            body = json.loads(raw or b"{}")
            video_id = str(body["videoId"])
            client = body["context"]["client"]["clientName"]
        except (ValueError, KeyError, TypeError):
            self._json(400, {"error": {"code": 400, "message": "Request contains an invalid argument."}})
            return
        video = VIDEOS.get(video_id)
        if video is not None and video.player_status != 200:
            self._json(
                video.player_status, {"error": {"code": video.player_status, "message": "unavailable"}}
            )
            return
        self._json(200, player_answer(video_id, video, client))

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self.send_json(status, payload, "application/json; charset=UTF-8")


def watch_page(video_id: str) -> str:
    """Enough of a watch page: the innertube key sits in ytcfg, HTML-escaped attributes around it."""
    return (
        "<!DOCTYPE html><html><head><title>Video - YouTube</title>"
        f'<meta property="og:url" content="{YOUTUBE_ORIGIN}/watch?v={html.escape(video_id)}&amp;feature=x">'
        "</head><body><script>ytcfg.set("
        + json.dumps({"INNERTUBE_API_KEY": API_KEY, "INNERTUBE_CLIENT_NAME": "WEB", "HL": "en"})
        + ");</script></body></html>"
    )


def player_answer(video_id: str, video: Video | None, client: str) -> dict[str, Any]:
    if video is None:
        return {"playabilityStatus": {"status": "ERROR", "reason": "This video is unavailable"}}
    answer: dict[str, Any] = {
        "playabilityStatus": {"status": "OK", "playableInEmbed": True},
        "videoDetails": {"videoId": video_id, "title": f"Video {video_id}", "client": client},
    }
    if video.captions:
        answer["captions"] = {
            "playerCaptionsTracklistRenderer": {
                "captionTracks": [
                    {
                        "baseUrl": f"{YOUTUBE_ORIGIN}/api/timedtext?v={video_id}&caps=asr&xoaf=5"
                        f"&lang={t.language_code}&fmt=srv3",
                        "name": {"runs": [{"text": t.name}]},
                        "vssId": ("a." if t.generated else ".") + t.language_code,
                        "languageCode": t.language_code,
                        **({"kind": "asr"} if t.generated else {}),
                        "isTranslatable": t.translatable,
                    }
                    for t in video.tracks
                ],
                "translationLanguages": [
                    {"languageCode": "en", "languageName": {"runs": [{"text": "English"}]}},
                    {"languageCode": "de", "languageName": {"runs": [{"text": "German"}]}},
                ],
            }
        }
    return answer


class YouTubeStyleServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(_YouTubeHandler)
        # Where "Redirect001" sends the client: another origin, which the block must refuse.
        self.other = "http://127.0.0.2:9"


# What the local model answers when an export asks it for the video URLs on a YouTube search page
# (three URL forms the block accepts, each a video above with an English transcript).
SEARCH_RESULT_URLS = (
    "https://www.youtube.com/watch?v=J1Mzd1ZeSaU",
    "https://youtu.be/KWonAsyKF3g",
    "https://www.youtube.com/embed/dQw4w9WgXcQ",
)


def script_search_answers(llm: Any) -> None:
    """Script a ScriptedLLMServer: list requests about YouTube video urls get SEARCH_RESULT_URLS."""
    llm.script(
        "YouTube video urls",
        {"content": "{json_tag}" + json.dumps({"list": list(SEARCH_RESULT_URLS)}) + "</json_output>"},
    )
