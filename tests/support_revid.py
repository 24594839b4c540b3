"""A local stand-in for revid.ai's public API on 127.0.0.1.

`RevidStyleServer` (header `key: <api key>`):
  POST /api/public/v2/render        JSON render request (frameRate, resolution, creationParams, ...)
  -> {"success": 1, "pid": "<project id>"}
  GET  /api/public/v2/status?pid=.. -> {"status": "rendering", "progress": ..} for `polls_to_finish - 1`
                                       polls, then {"status": "ready", "videoUrl": "<server>/videos/<pid>.mp4"}
  A script containing "fail-render" ends {"status": "error", "error": "..."}; "cancel-render" ends
  {"status": "FAILED", "message": "..."}; "no-pid" gets a render answer without a pid; "never-finish"
  stays "rendering". A wrong key: 401 {"success": 0, "error": "Invalid API key"}; an unknown pid: 404.
Every request is recorded in `requests` ({"method", "path", "query", "headers", "body"}).

`video_generator_rules()`: ScriptedLLMServer rules that carry the AI Video Generator export
(agent_a03b0d8c-...) to its video node (answers with the <news_story>, <title> and <hashtags> tags its
regular expressions read).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support_servers import RecordingServer, StandInHandler

# The key the server accepts (and the tests' credential holds): never in any output.
REVID_KEY = "revid-SECRET-9265-do-not-leak"
RENDER_PATH = "/api/public/v2/render"
STATUS_PATH = "/api/public/v2/status"


class _RevidHandler(StandInHandler):
    def _handle(self) -> None:
        server: RevidStyleServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.read_body()
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        headers = self.header_dict()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        server.record(
            {"method": self.command, "path": split.path, "query": query, "headers": headers, "body": body}
        )
        status, payload = server.answer(self.command, split.path, query, headers.get("key", ""), body)
        self.send_json(status, payload)

    do_GET = _handle
    do_POST = _handle


class RevidStyleServer(RecordingServer):
    def __init__(self, key: str = REVID_KEY, polls_to_finish: int = 2) -> None:
        super().__init__(_RevidHandler)
        self.key = key
        self.polls_to_finish = polls_to_finish
        self._renders: dict[str, dict[str, Any]] = {}  # pid -> {"script", "polls"}

    def _reset_state(self) -> None:
        self._renders.clear()

    def answer(
        self, method: str, path: str, query: dict[str, str], key: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        if key != self.key:
            return 401, {"success": 0, "error": "Invalid API key"}
        if method == "POST" and path == RENDER_PATH:
            params = (body or {}).get("creationParams") if isinstance(body, dict) else None
            script = str((params or {}).get("inputText") or "")
            if not script:
                return 400, {"success": 0, "error": "creationParams.inputText is required"}
            if "no-pid" in script:
                return 200, {"success": 0}
            with self._lock:
                pid = hashlib.sha256(f"{len(self._renders)}:{script}".encode()).hexdigest()[:20]
                self._renders[pid] = {"script": script, "polls": 0}
            return 200, {"success": 1, "pid": pid}
        if method == "GET" and path == STATUS_PATH:
            pid = query.get("pid", "")
            with self._lock:
                render = self._renders.get(pid)
                if render is None:
                    return 404, {"success": 0, "error": f"project {pid} not found"}
                render["polls"] += 1
                polls, script = render["polls"], render["script"]
            if polls < self.polls_to_finish or "never-finish" in script:
                return 200, {"pid": pid, "status": "rendering", "progress": min(99, polls * 10)}
            if "fail-render" in script:
                return 200, {"pid": pid, "status": "error", "error": "Not enough credits to render"}
            if "cancel-render" in script:
                return 200, {"pid": pid, "status": "FAILED", "message": "Render was stopped"}
            return 200, {"pid": pid, "status": "ready", "videoUrl": f"{self.url}/videos/{pid}.mp4"}
        return 404, {"success": 0, "error": f"no route {method} {path}"}


def video_generator_rules() -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules for the AI Video Generator export; matches are phrases from each node's
    own prompt."""
    story = "<news_story>\nTitle: AutoGPT ships agents\nDate of event: N/A\nStory: A release.\n</news_story>"
    script = "[a rocket on a launch pad] AutoGPT just shipped agents.\n[a crowd cheering] Here is why."
    return [
        ("Extract the News Story from the search results", [{"content": f"<analysis>ok</analysis>{story}"}]),
        ("You are a search term generator", [{"content": "AutoGPT agents release"}]),
        ("Write a shortform video script", [{"content": script}]),
        (
            "generate an interesting title and relevant hashtags",
            [{"content": "<title>AutoGPT Agents Are Here</title><hashtags>#AI #AutoGPT</hashtags>"}],
        ),
    ]
