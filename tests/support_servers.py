"""Local stand-ins for the LLM and web endpoints, on 127.0.0.1: nothing in the tests calls the internet.

`ScriptedLLMServer` speaks the OpenAI chat-completions wire protocol (POST /v1/chat/completions).
It answers from a script of rules: the first rule whose `match` text occurs in the request's messages
gives the next of its replies (the last one repeats). A reply is a dict:
  {"content": "text"}                       an assistant message; "{json_tag}" becomes the
                                            <json_output id="..."> tag the request asked for
  {"tool_calls": [{"name": n, "arguments": {...} or "raw"}]}
  {"status": 500, "body": {...}}            an HTTP error
  {"delay": 2.0, ...}                       wait first (for timeouts)
Without a matching rule it answers deterministically from the request: a JSON object with every key
of the requested format, a list for list requests, a finishing text when tools are offered, else an echo.
Every request (headers and body) is recorded in `requests`.

`JinaStyleServer` answers GET /s/<query> (search) and GET /r/<url> (reader) with deterministic text.

`StandInHandler` and `RecordingServer` are what every stand-in under tests/ builds on: reading the body,
answering with bytes or JSON, and keeping each request it was sent.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

_TAG = re.compile(r'<json_output id="[0-9a-zA-Z]+">')


class _LocalHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that does not look its own address up: HTTPServer.server_bind asks
    socket.getfqdn, a reverse DNS query to the network's resolver for an address /etc/hosts does not
    name (e.g. 127.0.0.2), and tests send no traffic outside loopback."""

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Server:
    def __init__(
        self, handler: type[BaseHTTPRequestHandler], address: tuple[str, int] = ("127.0.0.1", 0)
    ) -> None:
        # Always a loopback address: tests send traffic nowhere else.
        self.httpd = _LocalHTTPServer(address, handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> _Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class RecordingServer(_Server):
    """A stand-in that keeps every request in `requests` (handler threads append concurrently, hence the
    lock); `reset()` drops them together with the server's own state (`_reset_state`)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], address: tuple[str, int] = ("127.0.0.1", 0)
    ) -> None:
        super().__init__(handler, address)
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._reset_state()

    def _reset_state(self) -> None:
        """Drop what a subclass keeps besides the requests (called with the lock held)."""


class StandInHandler(BaseHTTPRequestHandler):
    """The plumbing every stand-in's handler shares; the server-specific part is the routing."""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log in the test output

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def header_dict(self) -> dict[str, str]:
        """The request's headers with lower-case names (what the tests look up)."""
        return {k.lower(): v for k, v in self.headers.items()}

    def send_data(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def send_json(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        self.send_data(status, json.dumps(payload).encode(), content_type)


def _texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def default_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic answer for any request no rule matched."""
    messages = body.get("messages") or []
    if body.get("tools"):
        return {"content": "Task complete."}
    for message in messages:
        text = str(message.get("content") or "")
        tag = _TAG.search(text)
        pure = "In your response you MUST include a valid JSON" in text and tag is None
        if tag is None and not pure:
            continue
        start = text.find("{") if tag is None else text.find("\n", tag.end()) + 1
        end = text.find("</json_output>") if tag is not None else len(text)
        fragment = text[start:end].strip()
        is_list = fragment.startswith("[")
        keys = re.findall(r'^\s*"([^"]+)":', fragment, flags=re.M)
        obj: dict[str, Any] = {}
        for key in keys:
            if key in ("reasoning", "results"):
                continue
            obj[key] = ["first item", "second item"] if key == "list" else f"sample {key}"
        result: Any = [obj, obj] if is_list else obj
        if tag is None:
            payload = {"results": result} if isinstance(result, list) or '"results"' in fragment else result
            return {"content": json.dumps(payload)}
        return {"content": f"Here it is.\n{tag.group(0)}{json.dumps(result)}</json_output>"}
    last_user = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    return {"content": f"Answer to: {last_user[:80]}"}


class _LLMHandler(StandInHandler):
    def do_POST(self) -> None:
        server: ScriptedLLMServer = self.server.owner  # type: ignore[attr-defined]
        body = json.loads(self.read_body() or b"{}")
        server.record({"headers": self.header_dict(), "body": body})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        reply = server.reply_for(body)
        if reply.get("delay"):
            time.sleep(float(reply["delay"]))
        if reply.get("status"):
            self.send_json(
                int(reply["status"]), reply.get("body") or {"error": {"message": "scripted failure"}}
            )
            return
        messages = body.get("messages") or []
        tag = next((m.group(0) for m in (_TAG.search(_texts(messages)),) if m), "")
        content = reply.get("content")
        if isinstance(content, str):
            content = content.replace("{json_tag}", tag)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reply.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": call.get("id") or f"call_{server.next_id()}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call["arguments"], str)
                        else json.dumps(call["arguments"]),
                    },
                }
                for call in reply["tool_calls"]
            ]
        prompt_tokens = len(_texts(messages).split())
        completion_tokens = len(str(content or "").split()) + 5 * len(message.get("tool_calls", []))
        server.record_usage(
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "prompt": _texts(messages),
            }
        )
        self.send_json(
            200,
            {
                "id": f"chatcmpl-{server.next_id()}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


class ScriptedLLMServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(_LLMHandler)
        self._rules: list[tuple[str, list[dict[str, Any]]]] = []
        self._ids = 0
        # Every answer's `usage`, with the prompt it answered (a late answer to an earlier test's
        # request may land after a reset: filter by prompt).
        self.usages: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def script(self, match: str, *replies: dict[str, Any]) -> None:
        """Answer requests whose messages contain `match` with these replies, in order."""
        with self._lock:
            self._rules.append((match, list(replies)))

    def _reset_state(self) -> None:
        self._rules.clear()
        self.usages.clear()

    def record_usage(self, usage: dict[str, Any]) -> None:
        with self._lock:
            self.usages.append(usage)

    def next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def reply_for(self, body: dict[str, Any]) -> dict[str, Any]:
        text = _texts(body.get("messages") or [])
        with self._lock:
            for match, replies in self._rules:
                if match in text:
                    return replies.pop(0) if len(replies) > 1 else replies[0]
        return default_answer(body)


class _JinaHandler(StandInHandler):
    def do_GET(self) -> None:
        server: JinaStyleServer = self.server.owner  # type: ignore[attr-defined]
        server.record({"path": self.path, "headers": self.header_dict()})
        if self.path.startswith("/s/"):
            query = unquote(self.path[3:])
            text = "\n".join(
                f"[{i}] Title: Result {i} for {query}\n[{i}] URL Source: https://example.com/{i}\n"
                f"[{i}] Markdown Content: Something about {query}."
                for i in (1, 2)
            )
            status = 500 if query == "fail" else 200
        elif self.path.startswith("/r/"):
            url = self.path[3:]
            text, status = f"Title: Page\nURL Source: {url}\nMarkdown Content:\nThe content of {url}.", 200
        else:
            text, status = "not found", 404
        self.send_data(status, text.encode(), "text/plain; charset=utf-8")


class JinaStyleServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(_JinaHandler)
