"""A local stand-in for Google's Gmail API on 127.0.0.1, speaking what google-api-python-client sends.

`GmailStyleServer`:
  POST /gmail/v1/users/me/messages/send?alt=json   JSON {"raw": <base64url RFC 2822 message>}
  header `Authorization: Bearer <access token>`
  -> 200 {"id", "threadId", "labelIds": ["SENT"]}, like Gmail.
  A missing or wrong token: 401 with Google's error JSON (status UNAUTHENTICATED); a message without a
  recipient: 400 "Recipient address required"; an address without "@": 400 "Invalid To header"; a `raw` that is not base64url: 400; another path: 404.
Each sent message is decoded and kept in `sent` ({"id", "to", "cc", "bcc", "subject", "content_type",
"body", "attachments": [{"filename", "content_type", "data"}], "raw"}) so tests can assert on what
arrived; every request is recorded in `requests` ({"method", "path", "headers"}).

`newsletter_rules()`: ScriptedLLMServer rules that carry the Personal Newsletter export through to its
"Text to Email Report" sub-agent (answers in the XML its parsers read).
"""

from __future__ import annotations

import base64
import binascii
import email
import json
import threading
from email.message import Message
from email.policy import default as default_policy
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler
from typing import Any

from support_servers import _Server

# The access token the server accepts (and the tests' credential holds): never in any output.
GMAIL_TOKEN = "ya29.SECRET-gmail-5772-do-not-leak"
SEND_PATH = "/gmail/v1/users/me/messages/send"


def _google_error(code: int, message: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    }


def decode_message(raw: str) -> dict[str, Any]:
    """The parts of a raw message a test asserts on (ValueError when it is not base64url MIME)."""
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Invalid value for ByteString: {exc}") from exc
    message = email.message_from_bytes(data, policy=default_policy)

    def addresses(header: str) -> list[str]:
        return [addr for _, addr in getaddresses([str(message.get(header, ""))]) if addr]

    body_part: Message | None = None
    attachments: list[dict[str, Any]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            attachments.append(
                {"filename": part.get_filename(), "content_type": part.get_content_type(), "data": payload}
            )
        elif body_part is None:
            body_part = part
    body = ""
    if body_part is not None:
        payload = body_part.get_payload(decode=True)
        body = (
            payload.decode(body_part.get_content_charset() or "utf-8") if isinstance(payload, bytes) else ""
        )
    return {
        "to": addresses("to"),
        "cc": addresses("cc"),
        "bcc": addresses("bcc"),
        "subject": str(message.get("subject", "")),
        "content_type": body_part.get_content_type() if body_part is not None else "",
        "body": body,
        "attachments": attachments,
        "raw": data,
    }


class _GmailHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        server: GmailStyleServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        server.record(
            {"method": self.command, "path": path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        )
        status, payload = server.answer(self.command, path, self.headers.get("Authorization", ""), raw)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = _handle
    do_POST = _handle


class GmailStyleServer(_Server):
    def __init__(self, token: str = GMAIL_TOKEN) -> None:
        super().__init__(_GmailHandler)
        self.token = token
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()

    def answer(self, method: str, path: str, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {self.token}":
            return 401, _google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
                "authError",
            )
        if method != "POST" or path != SEND_PATH:
            return 404, _google_error(404, "Requested entity was not found.", "NOT_FOUND", "notFound")
        try:
            request = json.loads(body or b"{}")
            message = decode_message(str(request["raw"]))
        except (ValueError, KeyError, TypeError) as exc:
            return 400, _google_error(
                400, f"Invalid value for ByteString: {exc}", "INVALID_ARGUMENT", "invalidArgument"
            )
        if not (message["to"] or message["cc"] or message["bcc"]):
            return 400, _google_error(
                400, "Recipient address required", "INVALID_ARGUMENT", "invalidArgument"
            )
        for header in ("to", "cc", "bcc"):
            if any("@" not in address for address in message[header]):
                return 400, _google_error(
                    400, f"Invalid {header.capitalize()} header", "INVALID_ARGUMENT", "invalidArgument"
                )
        with self._lock:
            number = len(self.sent) + 1
            message_id = f"18c{number:013x}"
            self.sent.append({"id": message_id, **message})
        return 200, {"id": message_id, "threadId": message_id, "labelIds": ["SENT"]}


def newsletter_rules() -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules for the Personal Newsletter export (agent_00fdd42c-...): the newsletter in
    the <title> and <body> XML its parser reads, one story to picture, an image search answer,
    and the HTML report that the "Text to Email Report" sub-agent sends with Gmail. Matches are phrases
    from each node's own prompt."""
    newsletter = (
        "<title>\nSpace Weekly: Rockets and Rings\n</title>\n\n"
        "<body>\nStory one: a rocket launched. Story two: Saturn's rings shine.\n</body>"
    )
    # Two stories: a single <story> would parse to a dict, not the list of stories the graph steps through.
    stories = (
        "<stories>\n<story>Rocket launch this week</story>\n<story>Saturn rings photo</story>\n</stories>"
    )
    images = "<images><image><url>https://example.com/rocket.jpg</url><image_description>A rocket</image_description></image></images>"
    return [
        ("Your task is to return a question", [{"content": "Which space stories happened this week?"}]),
        (
            "Only ever return results which fall within",
            [{"content": "Research: a rocket launched on Monday."}],
        ),
        ("skilled newsletter writer", [{"content": newsletter}]),
        ("would benefit from an accompanying picture", [{"content": stories}]),
        ("Extract the most relevant image URL", [{"content": images}]),
        (
            "reproduce the newsletter **verbatim**",
            [{"content": "# Space Weekly\n![rocket](https://example.com/rocket.jpg)"}],
        ),
        (
            "high-quality html email report",
            [{"content": "<html><body><h1>Space Weekly</h1><p>Rockets.</p></body></html>"}],
        ),
    ]
