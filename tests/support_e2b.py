"""A local stand-in for E2B (the control-plane REST API and a code-interpreter sandbox), on 127.0.0.1,
speaking what the `e2b` / `e2b-code-interpreter` SDKs send when pointed at it with `api_url` and
`sandbox_url` (one server serves both; like E2B's sandbox proxy, it tells sandboxes and ports apart by
the `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers). Plain HTTP/1.1.

Control plane (header `X-API-KEY`; a key other than `api_key` answers 401 `{"code", "message"}`):
    POST /v2/sandboxes (and the older POST /sandboxes)  body `{"templateID", "timeout", ...}` ->
        201 `{"templateID", "sandboxID", "clientID", "envdVersion", "envdAccessToken", "domain"}` (domain:
        `answer_domain`, None by default)
    DELETE /sandboxes/<id> -> 204, or 404 for an unknown or already killed sandbox
Sandbox (header `X-Access-Token` must be the sandbox's envd access token; an unknown or killed sandbox
answers 502 like E2B's proxy):
    GET /health -> 204
    POST /execute (port 49999, the Jupyter-based code interpreter) body `{"code", "language",
        "env_vars", "context_id"}` -> NDJSON lines `{"type": "stdout"|"stderr", "text", "timestamp"}`,
        `{"type": "result", "text"?, "is_main_result", ...}`, `{"type": "error", "name", "value",
        "traceback"}`, `{"type": "number_of_executions", "execution_count"}`
    POST /process.Process/Start (port 49983, envd; Connect protocol, JSON codec, server streaming):
        enveloped `StartResponse` messages (start, data with base64 stdout/stderr, end), then the
        end-of-stream envelope.

Nothing is ever executed: code is "run" by looking it up in a script of programs. `programs` maps an
exact code string to a reply; `rules` (checked after, in order) map a substring of the code to a reply
or to a function of (code, env_vars) giving one. A reply is a dict with optional keys `stdout`,
`stderr` (lists of texts, each one stream message), `results` (result dicts), `error` (`{"name",
"value", "traceback"}`). Code no program matches gets an error reply (NameError-like, naming nothing
it ran). Shell commands (setup commands) likewise come from `commands`: command -> (stdout, stderr,
exit code); an unknown command exits 127. Every request is recorded in `requests` as
{"method", "path", "headers", "body"}.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from support_servers import _Server

E2B_TEST_KEY = "e2b_SECRET-9191-test-key-do-not-leak"
JUPYTER_PORT = "49999"
ENVD_PORT = "49983"
ENVD_VERSION = "0.4.0"

Reply = dict[str, Any]
Program = Reply | Callable[[str, dict[str, str]], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeE2B/1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    @property
    def fake(self) -> E2BStyleServer:
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def _body(self) -> bytes:
        # The SDK's Rust transport may stream request bodies chunked.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data.extend(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _record(self, body: bytes) -> None:
        with self.fake.lock:
            self.fake.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }
            )

    def do_GET(self) -> None:
        self._record(b"")
        sandbox = self._sandbox()
        if sandbox is None:
            return
        if self.path.split("?", 1)[0] == "/health":
            self._send(204)
        else:
            self._json(404, {"code": 404, "message": f"no route {self.path}"})

    def do_DELETE(self) -> None:
        self._record(b"")
        if not self._api_key_ok():
            return
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "sandboxes":
            with self.fake.lock:
                alive = self.fake.sandboxes.pop(parts[1], None)
                if alive is not None:
                    self.fake.killed.append(parts[1])
            if alive is None:
                self._json(404, {"code": 404, "message": f"sandbox {parts[1]} not found"})
            else:
                self._send(204)
            return
        self._json(404, {"code": 404, "message": f"no route {self.path}"})

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        path = self.path.split("?", 1)[0]
        if path in ("/v2/sandboxes", "/sandboxes"):
            if self._api_key_ok():
                self._create(body)
            return
        sandbox = self._sandbox()
        if sandbox is None:
            return
        port = self.headers.get("E2b-Sandbox-Port", "")
        if path == "/execute" and port == JUPYTER_PORT:
            self._execute(body)
        elif path == "/process.Process/Start" and port == ENVD_PORT:
            self._start_process(body)
        else:
            self._json(404, {"code": 404, "message": f"no route {path} on port {port}"})

    # --- control plane -------------------------------------------------------------------------
    def _api_key_ok(self) -> bool:
        if self.headers.get("X-API-KEY") == self.fake.api_key:
            return True
        self._json(401, {"code": 401, "message": "Invalid API key, it must start with 'e2b_' prefix"})
        return False

    def _create(self, body: bytes) -> None:
        request = json.loads(body or b"{}")
        template = str(request.get("templateID") or "")
        if template in self.fake.missing_templates:
            self._json(404, {"code": 404, "message": f"template '{template}' not found"})
            return
        sandbox_id = "i" + uuid.uuid4().hex[:19]
        token = uuid.uuid4().hex
        with self.fake.lock:
            self.fake.sandboxes[sandbox_id] = {"token": token, "template": template, **request}
            self.fake.created.append(sandbox_id)
        self._json(
            201,
            {
                "templateID": template,
                "sandboxID": sandbox_id,
                "clientID": "6532622b",
                "envdVersion": ENVD_VERSION,
                "envdAccessToken": token,
                "domain": self.fake.answer_domain,
            },
        )

    # --- sandbox -------------------------------------------------------------------------------
    def _sandbox(self) -> dict[str, Any] | None:
        sandbox_id = self.headers.get("E2b-Sandbox-Id", "")
        with self.fake.lock:
            sandbox = self.fake.sandboxes.get(sandbox_id)
        if sandbox is None:
            # What E2B's proxy answers for a sandbox that is gone.
            self._send(502, f"The sandbox {sandbox_id} was not found".encode(), "text/plain")
            return None
        if self.headers.get("X-Access-Token") not in (None, sandbox["token"]):
            self._send(401, b"invalid access token", "text/plain")
            return None
        return sandbox

    def _execute(self, body: bytes) -> None:
        request = json.loads(body or b"{}")
        code = str(request.get("code") or "")
        reply = self.fake.reply_for(code, dict(request.get("env_vars") or {}))
        stamp = datetime.now(UTC).isoformat()
        lines: list[dict[str, Any]] = []
        lines += [{"type": "stdout", "text": t, "timestamp": stamp} for t in reply.get("stdout", [])]
        lines += [{"type": "stderr", "text": t, "timestamp": stamp} for t in reply.get("stderr", [])]
        lines += [{"type": "result", **r} for r in reply.get("results", [])]
        if reply.get("error"):
            lines.append({"type": "error", **reply["error"]})
        with self.fake.lock:
            self.fake.executions += 1
            count = self.fake.executions
        lines.append({"type": "number_of_executions", "execution_count": count})
        self._send(200, "".join(json.dumps(line) + "\n" for line in lines).encode(), "application/x-ndjson")

    def _start_process(self, body: bytes) -> None:
        # One Connect envelope: flags byte, 4-byte big-endian length, JSON message.
        _flags, length = struct.unpack(">BI", body[:5])
        message = json.loads(body[5 : 5 + length])
        process = message.get("process") or {}
        args = list(process.get("args") or [])
        command = args[-1] if args else str(process.get("cmd") or "")
        with self.fake.lock:
            self.fake.commands_run.append(command)
        stdout, stderr, exit_code = self.fake.commands.get(command, ("", f"sh: {command}: not found\n", 127))
        events: list[dict[str, Any]] = [{"start": {"pid": 1000 + len(self.fake.commands_run)}}]
        if stdout:
            events.append({"data": {"stdout": base64.b64encode(stdout.encode()).decode()}})
        if stderr:
            events.append({"data": {"stderr": base64.b64encode(stderr.encode()).decode()}})
        end: dict[str, Any] = {"exitCode": exit_code, "exited": True, "status": f"exit status {exit_code}"}
        if exit_code:
            end["error"] = f"exit status {exit_code}"
        events.append({"end": end})
        out = bytearray()
        for event in events:
            payload = json.dumps({"event": event}).encode()
            out += struct.pack(">BI", 0, len(payload)) + payload
        out += struct.pack(">BI", 2, 2) + b"{}"  # end of stream, no error
        self._send(200, bytes(out), "application/connect+json")


class E2BStyleServer(_Server):
    def __init__(self, api_key: str = E2B_TEST_KEY) -> None:
        super().__init__(_Handler)
        self.api_key = api_key
        self.lock = threading.Lock()
        self.programs: dict[str, Reply] = {}
        self.rules: list[tuple[str, Program]] = []
        self.commands: dict[str, tuple[str, str, int]] = {}
        self.missing_templates: set[str] = set()
        self.answer_domain: str | None = None  # the sandbox domain the API answers with
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: list[dict[str, Any]] = []
            self.sandboxes: dict[str, dict[str, Any]] = {}
            self.created: list[str] = []
            self.killed: list[str] = []
            self.commands_run: list[str] = []
            self.executions = 0
            self.programs.clear()
            self.rules.clear()
            self.commands.clear()
            self.missing_templates.clear()
            self.answer_domain = None

    def program(self, code: str, reply: Reply) -> None:
        self.programs[code] = reply

    def rule(self, match: str, reply: Program) -> None:
        self.rules.append((match, reply))

    def reply_for(self, code: str, env_vars: dict[str, str]) -> Reply:
        if code in self.programs:
            return self.programs[code]
        for match, reply in self.rules:
            if match in code:
                return reply(code, env_vars) if callable(reply) else reply
        return {
            "error": {
                "name": "UnscriptedCode",
                "value": "the test sandbox has no program for this code",
                "traceback": "UnscriptedCode: the test sandbox has no program for this code",
            }
        }


_DOMAINS_TEXT = re.compile(r'DOMAINS_TEXT = """(.*?)"""', re.S)
DOMAIN_CHECKER_MARK = "check_domains_simple_com.py"


def domain_checker(registered: frozenset[str]) -> Callable[[str, dict[str, str]], Reply]:
    """The Domain Name Finder export's RDAP checker as a scripted program: what the real script prints
    for the `.com` names in its DOMAINS_TEXT when exactly `registered` are taken (no lookup is made)."""

    def run(code: str, env_vars: dict[str, str]) -> Reply:
        found = _DOMAINS_TEXT.search(code)
        tokens = [t.strip() for t in (found.group(1) if found else "").split(",") if t.strip()]
        valid = [t.lower() for t in tokens if _COM_DOMAIN.match(t.lower())]
        domains = list(dict.fromkeys(valid))
        errors = [t for t in tokens if not _COM_DOMAIN.match(t.lower())]
        available = [d for d in domains if d not in registered]
        taken = [d for d in domains if d in registered]
        lines = [
            "<results_summary>",
            f" I checked {len(available) + len(taken)} domains for you.",
            f"Domains available to register now: {len(available)}",
            f"Domains already registered: {len(taken)}",
            "</results_summary>",
            "<available>",
            *available,
            "</available>",
            "<unavailable>",
            *taken,
            "</unavailable>",
            "<error>",
            *errors,
            "</error>",
        ]
        return {"stdout": ["\n".join(lines) + "\n"]}

    return run


_COM_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.com$")


# The Domain Name Finder export (agent_b6f6f0d3-...): its LLM proposes names, the sandbox checks them,
# its LLM ranks the available ones.
DOMAIN_FINDER_NAMES = ("brewbot.com", "beanly.com", "google.com", "cafe-ai.net", "roastwise.com")
DOMAIN_FINDER_REGISTERED = frozenset({"google.com"})


def domain_finder_llm_rules() -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules: (match, replies) for the export's two prompts."""
    return [
        (
            "Generate a creative and relevant list of possible domain names",
            [{"content": "<domains>" + ",".join(DOMAIN_FINDER_NAMES) + "</domains>"}],
        ),
        (
            "You are a domain valuation expert",
            [
                {
                    "content": "<domain_analysis>Short names rank first.</domain_analysis>\n"
                    "<domains>\nbrewbot.com\nroastwise.com\nbeanly.com\n</domains>"
                }
            ],
        ),
    ]


def script_domain_finder(server: E2BStyleServer) -> None:
    """Reset `server` and script the export's checker program."""
    server.reset()
    server.rule(DOMAIN_CHECKER_MARK, domain_checker(DOMAIN_FINDER_REGISTERED))
