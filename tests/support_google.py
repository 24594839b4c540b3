"""A local stand-in for Google's Gmail and Calendar APIs on 127.0.0.1, speaking what
google-api-python-client sends (header `Authorization: Bearer <access token>` on every request).

`GmailStyleServer` serves a deterministic mailbox (`fixture_messages()`: the user USER_EMAIL's inbox,
sent mail and spam, ids and dates fixed) and calendar (`fixture_events()`):

  GET  /gmail/v1/users/me/messages?q=&maxResults=&pageToken=    {"messages": [{"id", "threadId"}],
       "resultSizeEstimate"[, "nextPageToken"]}, newest first, spam and trash left out; `q` takes
       Gmail's is:, in:, label:, from:, to:, cc:, subject:, newer_than:/older_than: (against the
       mailbox clock MAILBOX_NOW), words and "phrases", `-` negation and OR
  GET  /gmail/v1/users/me/messages/<id>?format=full|metadata|minimal|raw[&metadataHeaders=...]
  GET  /gmail/v1/users/me/messages/<id>/attachments/<attachmentId>     {"size", "data"}
  POST /gmail/v1/users/me/messages/<id>/modify   {"addLabelIds", "removeLabelIds"} -> {"id",
       "threadId", "labelIds"}; an unknown label: 400 "Invalid label: <id>"
  GET  /gmail/v1/users/me/labels    POST /gmail/v1/users/me/labels {"name"} (a taken name: 409)
  POST /gmail/v1/users/me/messages/send?alt=json   JSON {"raw": <base64url RFC 2822 message>[,
       "threadId"]} -> 200 {"id", "threadId", "labelIds": ["SENT"]}, like Gmail; the message joins
       that thread (an unknown threadId: 404) or starts its own. A message without a recipient: 400
       "Recipient address required"; an address without "@": 400 "Invalid To header"; a `raw` that is
       not base64url: 400.
  GET  /calendar/v3/calendars/<calendarId>/events?timeMin=&timeMax=&maxResults=&singleEvents=
       &orderBy=&showHiddenInvitations=&q=&pageToken=   {"items": [...][, "nextPageToken"]}: events
       overlapping the window; with singleEvents=true the daily recurring event is expanded into its
       instances (as Google, instances carry recurringEventId, not `recurrence`); a time without an
       offset: 400; orderBy=startTime without singleEvents=true: 400; another calendar: 404.

A missing or wrong token: 401 with Google's error JSON (status UNAUTHENTICATED); an unknown message or
path: 404. Each sent message is decoded and kept in `sent` ({"id", "threadId", "to", "cc", "bcc",
"subject", "content_type", "body", "attachments": [{"filename", "content_type", "data"}],
"in_reply_to", "references", "raw"}) and joins the mailbox labelled SENT; every request is recorded in
`requests` ({"method", "path", "query", "headers", "body"}). `add_message()` delivers one more message
(a test's own mail, e.g. `support_ticket()`) until `reset()`, which restores the fixtures.

`newsletter_rules()`, `meeting_prep_rules()` and `support_agent_rules()`: ScriptedLLMServer rules for
the exports that send or read Gmail (answers in the XML or JSON their parsers read).
"""

from __future__ import annotations

import base64
import binascii
import copy
import email
import json
import re
import shlex
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from email.utils import format_datetime, getaddresses
from typing import Any
from urllib.parse import parse_qs, unquote

from support_servers import RecordingServer, StandInHandler

# The access token the server accepts (and the tests' credential holds): never in any output.
GMAIL_TOKEN = "ya29.SECRET-gmail-5772-do-not-leak"
SEND_PATH = "/gmail/v1/users/me/messages/send"
GMAIL_PREFIX = "/gmail/v1/users/me"
CALENDAR_PREFIX = "/calendar/v3/calendars/"
USER_EMAIL = "alex@acme.example"
EXTERNAL_ATTENDEE = "jordan@partnerco.example"
# The mailbox's clock for newer_than:/older_than: (fixtures are dated around it).
MAILBOX_NOW = datetime(2025, 6, 4, 12, 0, tzinfo=UTC)

# Fixture message ids (Gmail's 16 hex digits).
KICKOFF_ID = "1973a0c0de000001"
KICKOFF_REPLY_ID = "1973a0c0de000002"
INVOICE_ID = "1973a0c0de000003"
NEWSLETTER_ID = "1973a0c0de000004"
SPAM_ID = "1973a0c0de000005"
INVOICE_PDF = b"%PDF-1.4 invoice 1042 (fixture)"
KICKOFF_TEXT = (
    "Hi Alex,\n\nLooking forward to kicking off the Q3 partnership. I'm in Lisbon until the 10th, "
    "so let's meet on video.\n\nJordan Lee\nHead of Partnerships, PartnerCo"
)
SYNC_MEET_LINK = "https://meet.google.com/pqr-stuv-wxy"

SYSTEM_LABELS = [
    "INBOX",
    "SENT",
    "UNREAD",
    "IMPORTANT",
    "STARRED",
    "SPAM",
    "TRASH",
    "DRAFT",
    "CATEGORY_PERSONAL",
]


def _google_error(code: int, message: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    }


def _not_found() -> tuple[int, dict[str, Any]]:
    return 404, _google_error(404, "Requested entity was not found.", "NOT_FOUND", "notFound")


def _bad_request(message: str) -> tuple[int, dict[str, Any]]:
    return 400, _google_error(400, message, "INVALID_ARGUMENT", "invalidArgument")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


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
        "in_reply_to": str(message.get("in-reply-to", "")),
        "references": str(message.get("references", "")),
        "raw": data,
    }


# --- the mailbox ---------------------------------------------------------------------------------------
def _mime(
    sender: str,
    to: str,
    subject: str,
    when: datetime,
    message_id: str,
    text: str | None = None,
    html: str | None = None,
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message


def fixture_messages() -> list[tuple[str, str, list[str], EmailMessage]]:
    """(id, threadId, labelIds, message) of the user's mailbox, oldest first."""
    kickoff = _mime(
        "Jordan Lee <jordan@partnerco.example>",
        "Alex Kim <alex@acme.example>",
        "Q3 partnership kickoff",
        datetime(2025, 6, 3, 9, 15, tzinfo=UTC),
        "<kickoff-1@partnerco.example>",
        text=KICKOFF_TEXT,
        Cc="priya@acme.example",
    )
    reply = _mime(
        "Alex Kim <alex@acme.example>",
        "jordan@partnerco.example",
        "Re: Q3 partnership kickoff",
        datetime(2025, 6, 3, 10, 2, tzinfo=UTC),
        "<reply-1@acme.example>",
        text="Thanks Jordan - enjoy Lisbon! Let's talk on the 5th.",
        In_Reply_To="<kickoff-1@partnerco.example>",
        References="<kickoff-1@partnerco.example>",
    )
    invoice = _mime(
        "Sam Rivera <sam@vendor.example>",
        "alex@acme.example",
        "Invoice 1042 and agenda",
        datetime(2025, 6, 2, 16, 40, tzinfo=UTC),
        "<invoice-1042@vendor.example>",
        text="Please find invoice 1042 attached.",
        html="<p>Please find <b>invoice 1042</b> attached.</p>",
        Cc="billing@vendor.example",
    )
    invoice.add_attachment(INVOICE_PDF, maintype="application", subtype="pdf", filename="invoice-1042.pdf")
    newsletter = _mime(
        "Acme Weekly <news@acme-weekly.example>",
        "alex@acme.example",
        "This week at Acme",
        datetime(2025, 6, 1, 8, 0, tzinfo=UTC),
        "<weekly-22@acme-weekly.example>",
        html="<html><body><h1>This week</h1><p>Launch day is Friday.</p></body></html>",
        Reply_To="replies@acme-weekly.example",
    )
    spam = _mime(
        "Prize Desk <win@prize.example>",
        "alex@acme.example",
        "You won a partnership prize",
        datetime(2025, 6, 3, 23, 0, tzinfo=UTC),
        "<spam-1@prize.example>",
        text="Click to claim your partnership prize.",
    )
    return [
        (NEWSLETTER_ID, NEWSLETTER_ID, ["INBOX", "CATEGORY_PERSONAL"], newsletter),
        (INVOICE_ID, INVOICE_ID, ["INBOX", "UNREAD", "Label_1"], invoice),
        (KICKOFF_ID, KICKOFF_ID, ["INBOX", "UNREAD", "IMPORTANT"], kickoff),
        (KICKOFF_REPLY_ID, KICKOFF_ID, ["SENT"], reply),
        (SPAM_ID, SPAM_ID, ["SPAM", "UNREAD"], spam),
    ]


def _payload(
    part: Message, part_id: str, attachments: dict[str, bytes], counter: list[int]
) -> dict[str, Any]:
    """A MIME part as Gmail's MessagePart: leaves carry base64url `data`, or an attachmentId."""
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": [{"name": name, "value": str(value)} for name, value in part.items()],
    }
    if part.is_multipart():
        out["body"] = {"size": 0}
        subparts = part.get_payload()
        assert isinstance(subparts, list)
        out["parts"] = [
            _payload(sub, f"{part_id}.{i}" if part_id else str(i), attachments, counter)
            for i, sub in enumerate(subparts)
        ]
        return out
    data = part.get_payload(decode=True)
    data = data if isinstance(data, bytes) else b""
    if out["filename"]:
        counter[0] += 1
        attachment_id = f"ANGjdJ{counter[0]:04d}-fixture"
        attachments[attachment_id] = data
        out["body"] = {"attachmentId": attachment_id, "size": len(data)}
    else:
        out["body"] = {"size": len(data), "data": _b64(data)}
    return out


def _snippet(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() in ("text/plain", "text/html") and not part.get_filename():
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            return " ".join(re.sub(r"<[^>]+>", " ", text).split())[:100]
    return ""


def _stored(message_id: str, thread_id: str, labels: list[str], message: Message) -> dict[str, Any]:
    raw = message.as_bytes()
    attachments: dict[str, bytes] = {}
    try:
        when = email.utils.parsedate_to_datetime(str(message["Date"]))
    except (TypeError, ValueError):
        when = MAILBOX_NOW
    return {
        "id": message_id,
        "threadId": thread_id,
        "labelIds": list(labels),
        "snippet": _snippet(message),
        "sizeEstimate": len(raw),
        "historyId": "645006",
        "internalDate": str(int(when.timestamp() * 1000)),
        "payload": _payload(message, "", attachments, [0]),
        "_raw": raw,
        "_message": message,
        "_attachments": attachments,
        "_when": when,
    }


def _public(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in stored.items() if not k.startswith("_")}


# --- Gmail search ------------------------------------------------------------------------------------
def _header(stored: dict[str, Any], name: str) -> str:
    return str(stored["_message"].get(name, "")).lower()


def _term_matches(term: str, stored: dict[str, Any], labels_by_name: dict[str, str]) -> bool:
    negate = term.startswith("-") and len(term) > 1
    if negate:
        term = term[1:]
    key, sep, value = term.partition(":")
    key, value = key.lower(), value.lower()
    labels = set(stored["labelIds"])
    result: bool
    if sep and key == "is":
        result = {"unread": "UNREAD", "starred": "STARRED", "important": "IMPORTANT"}.get(value, "") in labels
        if value == "read":
            result = "UNREAD" not in labels
    elif sep and key in ("in", "label"):
        wanted = labels_by_name.get(value, value.upper())
        result = value == "anywhere" or wanted in labels
    elif sep and key == "from":
        result = value in _header(stored, "from")
    elif sep and key == "to":
        result = any(value in _header(stored, h) for h in ("to", "cc", "bcc"))
    elif sep and key == "cc":
        result = value in _header(stored, "cc")
    elif sep and key == "subject":
        result = value in _header(stored, "subject")
    elif sep and key in ("newer_than", "older_than") and re.fullmatch(r"\d+[dmy]", value):
        days = int(value[:-1]) * {"d": 1, "m": 31, "y": 365}[value[-1]]
        newer = stored["_when"] > MAILBOX_NOW - timedelta(days=days)
        result = newer if key == "newer_than" else not newer
    else:  # a word or "phrase": anywhere in the headers or the text
        haystack = (stored["_raw"].decode("utf-8", "replace") + " " + stored["snippet"]).lower()
        result = term.lower() in haystack
    return result != negate


def search(stored: dict[str, Any], query: str, labels_by_name: dict[str, str]) -> bool:
    """Whether a message matches a Gmail query: terms AND-ed, `a OR b` groups, quotes, `-` negation."""
    try:
        tokens = shlex.split(query)
    except ValueError:
        tokens = query.split()
    groups: list[list[str]] = []
    expect_alternative = False
    for token in tokens:
        if token == "OR" and groups:
            expect_alternative = True
            continue
        if expect_alternative:
            groups[-1].append(token)
            expect_alternative = False
        else:
            groups.append([token])
    return all(any(_term_matches(t, stored, labels_by_name) for t in group) for group in groups)


# --- the calendar ---------------------------------------------------------------------------------------
def _attendee(address: str, status: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {"email": address, "responseStatus": status, **extra}


def fixture_events() -> list[dict[str, Any]]:
    """The primary calendar: a daily recurring partnership sync (15:00-15:30 UTC from 1 June 2025, with
    an external attendee), a board prep on 4 June, an all-day offsite on 5 June and a hidden
    invitation on 4 June."""
    me = _attendee(USER_EMAIL, self=True, organizer=True)
    return [
        {
            "id": "pship0sync0daily",
            "summary": "Partnership sync",
            "description": "Daily check-in on the Q3 partnership.",
            "organizer": {"email": USER_EMAIL, "self": True},
            "start": {"dateTime": "2025-06-01T15:00:00Z", "timeZone": "UTC"},
            "end": {"dateTime": "2025-06-01T15:30:00Z", "timeZone": "UTC"},
            "recurrence": ["RRULE:FREQ=DAILY"],
            "attendees": [me, _attendee("priya@acme.example"), _attendee(EXTERNAL_ATTENDEE, "needsAction")],
            "conferenceData": {
                "entryPoints": [
                    {"entryPointType": "video", "uri": SYNC_MEET_LINK},
                    {"entryPointType": "phone", "uri": "tel:+1-555-0100"},
                ]
            },
        },
        {
            "id": "boardprep0604",
            "summary": "Board prep",
            "description": "Slides for the board meeting.",
            "location": "Room 4",
            "organizer": {"email": USER_EMAIL, "self": True},
            "start": {"dateTime": "2025-06-04T10:00:00+01:00", "timeZone": "Europe/London"},
            "end": {"dateTime": "2025-06-04T11:00:00+01:00", "timeZone": "Europe/London"},
            "attendees": [me, _attendee("priya@acme.example")],
        },
        {
            "id": "offsite0605",
            "summary": "Company offsite",
            "organizer": {"email": "ceo@acme.example"},
            "start": {"date": "2025-06-05"},
            "end": {"date": "2025-06-06"},
        },
        {
            "id": "vendordemo0604",
            "summary": "Vendor demo",
            "organizer": {"email": "sam@vendor.example"},
            "start": {"dateTime": "2025-06-04T14:00:00Z"},
            "end": {"dateTime": "2025-06-04T14:45:00Z"},
            "attendees": [_attendee(USER_EMAIL, "needsAction", self=True), _attendee("sam@vendor.example")],
            "_hidden_invitation": True,
        },
    ]


def _event_time(value: dict[str, Any]) -> datetime:
    if "date" in value:
        return datetime.combine(date.fromisoformat(value["date"]), datetime.min.time(), UTC)
    return datetime.fromisoformat(value["dateTime"])


def _rfc3339(text: str | None) -> datetime | None:
    """Google's RFC 3339 time (an offset is required); ValueError otherwise."""
    if text is None:
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"no offset in {text!r}")
    return parsed


def _with_links(event: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in event.items() if not k.startswith("_")}
    eid = base64.urlsafe_b64encode(f"{event['id']} {USER_EMAIL}".encode()).decode().rstrip("=")
    return {
        "kind": "calendar#event",
        "status": "confirmed",
        "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
        "iCalUID": f"{event.get('recurringEventId', event['id'])}@google.com",
        **public,
    }


def _instances(master: dict[str, Any], window_start: datetime, window_end: datetime) -> list[dict[str, Any]]:
    """The daily instances of a recurring event that overlap the window."""
    first = _event_time(master["start"])
    duration = _event_time(master["end"]) - first
    day = max(first, first + timedelta(days=(window_start - first).days - 1))
    found = []
    while day < window_end:
        if day + duration > window_start:
            stamp = day.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            instance = {k: v for k, v in master.items() if k != "recurrence"}
            instance.update(
                id=f"{master['id']}_{stamp}",
                recurringEventId=master["id"],
                originalStartTime={"dateTime": day.isoformat().replace("+00:00", "Z"), "timeZone": "UTC"},
                start={"dateTime": day.isoformat().replace("+00:00", "Z"), "timeZone": "UTC"},
                end={"dateTime": (day + duration).isoformat().replace("+00:00", "Z"), "timeZone": "UTC"},
            )
            found.append(instance)
        day += timedelta(days=1)
    return found


# --- the server -----------------------------------------------------------------------------------------
class _GoogleHandler(StandInHandler):
    def _handle(self) -> None:
        server: GmailStyleServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.read_body()
        path, _, query_string = self.path.partition("?")
        query = parse_qs(query_string, keep_blank_values=True)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        server.record(
            {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": self.header_dict(),
                "body": body,
            }
        )
        status, payload = server.answer(self.command, path, self.headers.get("Authorization", ""), raw, query)
        self.send_json(status, payload, "application/json; charset=UTF-8")

    do_GET = _handle
    do_POST = _handle


class GmailStyleServer(RecordingServer):
    def __init__(self, token: str = GMAIL_TOKEN) -> None:
        super().__init__(_GoogleHandler)
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.labels: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._restore()

    def _restore(self) -> None:
        self.messages = {mid: _stored(mid, tid, labels, msg) for mid, tid, labels, msg in fixture_messages()}
        self.labels = [{"id": name, "name": name, "type": "system"} for name in SYSTEM_LABELS]
        self.labels.append(
            {
                "id": "Label_1",
                "name": "Clients",
                "type": "user",
                "messageListVisibility": "show",
                "labelListVisibility": "labelShow",
            }
        )
        self.events = fixture_events()

    def _reset_state(self) -> None:
        self.sent.clear()
        self._restore()

    def add_message(self, message_id: str, thread_id: str, labels: list[str], message: EmailMessage) -> None:
        """Deliver one more message to the mailbox (until the next `reset()`), for a test that needs mail
        the default fixtures lack."""
        with self._lock:
            if message_id in self.messages:
                raise ValueError(f"message {message_id} is already in the mailbox")
            self.messages[message_id] = _stored(message_id, thread_id, labels, message)

    def label_names(self) -> dict[str, str]:
        """Label id by lower-cased name (what `label:` in a query names)."""
        return {label["name"].lower(): label["id"] for label in self.labels}

    def answer(
        self,
        method: str,
        path: str,
        authorization: str,
        body: bytes,
        query: dict[str, list[str]] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {self.token}":
            return 401, _google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
                "authError",
            )
        params = query or {}
        with self._lock:
            if path.startswith(CALENDAR_PREFIX) and method == "GET":
                return self._events(unquote(path[len(CALENDAR_PREFIX) :]), params)
            if not path.startswith(GMAIL_PREFIX + "/"):
                return _not_found()
            route = path[len(GMAIL_PREFIX) :]
            if method == "POST" and route == "/messages/send":
                return self._send(body)
            if method == "GET" and route == "/messages":
                return self._list(params)
            if route == "/labels":
                return self._labels(method, body)
            parts = route.split("/")  # "", "messages", id[, "modify" | "attachments", attachment id]
            if len(parts) < 3 or parts[1] != "messages" or parts[2] not in self.messages:
                return _not_found()
            stored = self.messages[parts[2]]
            if method == "GET" and len(parts) == 3:
                return self._get(stored, params)
            if method == "POST" and parts[3:] == ["modify"]:
                return self._modify(stored, body)
            if method == "GET" and len(parts) == 5 and parts[3] == "attachments":
                data = stored["_attachments"].get(parts[4])
                return (200, {"size": len(data), "data": _b64(data)}) if data is not None else _not_found()
            return _not_found()

    # --- Gmail ---------------------------------------------------------------------------------------
    def _list(self, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        q = params.get("q", [""])[0]
        include_spam_trash = params.get("includeSpamTrash", ["false"])[0] == "true"
        max_results = min(int(params.get("maxResults", ["100"])[0]), 500)
        offset = int(params.get("pageToken", ["0"])[0] or 0)
        names = self.label_names()
        found = [
            m
            for m in sorted(self.messages.values(), key=lambda m: m["_when"], reverse=True)
            if (include_spam_trash or not {"SPAM", "TRASH"} & set(m["labelIds"])) and search(m, q, names)
        ]
        page = found[offset : offset + max_results]
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:  # like Gmail: no "messages" key when nothing matched
            answer["messages"] = [{"id": m["id"], "threadId": m["threadId"]} for m in page]
        if offset + max_results < len(found):
            answer["nextPageToken"] = str(offset + max_results)
        return 200, answer

    def _get(self, stored: dict[str, Any], params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        message = _public(stored)
        fmt = params.get("format", ["full"])[0]
        if fmt == "raw":
            message.pop("payload")
            message["raw"] = _b64(stored["_raw"])
        elif fmt == "minimal":
            message.pop("payload")
        elif fmt == "metadata":
            wanted = {h.lower() for h in params.get("metadataHeaders", [])}
            payload = message["payload"]
            headers = [h for h in payload["headers"] if not wanted or h["name"].lower() in wanted]
            message["payload"] = {"mimeType": payload["mimeType"], "headers": headers}
        elif fmt != "full":
            return _bad_request(f"Invalid value at 'format' ({fmt})")
        return 200, message

    def _modify(self, stored: dict[str, Any], body: bytes) -> tuple[int, dict[str, Any]]:
        request = json.loads(body or b"{}")
        known = {label["id"] for label in self.labels}
        for label_id in [*request.get("addLabelIds", []), *request.get("removeLabelIds", [])]:
            if label_id not in known:
                return _bad_request(f"Invalid label: {label_id}")
        labels = [lb for lb in stored["labelIds"] if lb not in request.get("removeLabelIds", [])]
        labels += [lb for lb in request.get("addLabelIds", []) if lb not in labels]
        stored["labelIds"] = labels
        return 200, {"id": stored["id"], "threadId": stored["threadId"], "labelIds": list(labels)}

    def _labels(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "GET":
            return 200, {"labels": copy.deepcopy(self.labels)}
        name = str(json.loads(body or b"{}").get("name") or "").strip()
        if not name:
            return _bad_request("Invalid label name")
        if name.lower() in self.label_names():
            return 409, _google_error(409, "Label name exists or conflicts", "ALREADY_EXISTS", "conflict")
        label = {
            "id": f"Label_{sum(lb['type'] == 'user' for lb in self.labels) + 1}",
            "name": name,
            "type": "user",
            "messageListVisibility": "show",
            "labelListVisibility": "labelShow",
        }
        self.labels.append(label)
        return 200, dict(label)

    def _send(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = json.loads(body or b"{}")
            message = decode_message(str(request["raw"]))
        except (ValueError, KeyError, TypeError) as exc:
            return _bad_request(f"Invalid value for ByteString: {exc}")
        if not (message["to"] or message["cc"] or message["bcc"]):
            return _bad_request("Recipient address required")
        for header in ("to", "cc", "bcc"):
            if any("@" not in address for address in message[header]):
                return _bad_request(f"Invalid {header.capitalize()} header")
        thread_id = request.get("threadId")
        if thread_id is not None and not any(m["threadId"] == thread_id for m in self.messages.values()):
            return _not_found()
        number = len(self.sent) + 1
        message_id = f"18c{number:013x}"
        thread_id = thread_id or message_id
        self.sent.append({"id": message_id, "threadId": thread_id, **message})
        parsed = email.message_from_bytes(message["raw"], policy=default_policy)
        if "Date" not in parsed:
            parsed["Date"] = format_datetime(MAILBOX_NOW)
        self.messages[message_id] = _stored(message_id, thread_id, ["SENT"], parsed)
        return 200, {"id": message_id, "threadId": thread_id, "labelIds": ["SENT"]}

    # --- Calendar ------------------------------------------------------------------------------------
    def _events(self, calendar_path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        calendar_id, _, rest = calendar_path.partition("/")
        if rest != "events" or calendar_id not in ("primary", USER_EMAIL):
            return 404, _google_error(404, "Not Found", "NOT_FOUND", "notFound")

        def one(name: str, default: str | None = None) -> str | None:
            return params.get(name, [default])[0]

        try:
            time_min, time_max = _rfc3339(one("timeMin")), _rfc3339(one("timeMax"))
        except ValueError:
            return 400, _google_error(400, "Bad Request", "INVALID_ARGUMENT", "badRequest")
        single = one("singleEvents") == "true"
        if one("orderBy") == "startTime" and not single:
            return 400, _google_error(
                400,
                "The requested ordering is not available for the particular query.",
                "INVALID_ARGUMENT",
                "invalid",
            )
        start = time_min or datetime.min.replace(tzinfo=UTC)
        end = time_max or datetime.max.replace(tzinfo=UTC)
        show_hidden = one("showHiddenInvitations") == "true"
        text = (one("q") or "").lower()
        items = []
        for event in self.events:
            if event.get("_hidden_invitation") and not show_hidden:
                continue
            if text and text not in json.dumps(event).lower():
                continue
            if "recurrence" in event and single:
                items.extend(_instances(event, start, end))
            elif _event_time(event["end"]) > start and _event_time(event["start"]) < end:
                items.append(event)
        if single:
            items.sort(key=lambda e: _event_time(e["start"]))
        max_results = int(one("maxResults", "250") or 250)
        offset = int(one("pageToken", "0") or 0)
        answer: dict[str, Any] = {
            "kind": "calendar#events",
            "summary": USER_EMAIL,
            "timeZone": "UTC",
            "items": [_with_links(e) for e in items[offset : offset + max_results]],
        }
        if offset + max_results < len(items):
            answer["nextPageToken"] = str(offset + max_results)
        return 200, answer


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


def meeting_prep_rules() -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules for the Smart Meeting Prep export (agent_415b7352-...): tomorrow's
    partnership sync has one external attendee (EXTERNAL_ATTENDEE), whom the "Research Person by
    Email" sub-agent identifies from the Gmail search, researches and relates to the user; the brief
    comes back in the <executive_briefing> tag its parser reads and is emailed as HTML. Matches are
    phrases from each node's own prompt."""
    return [
        ("Identify the owner of", [{"content": "Jordan Lee, Head of Partnerships at PartnerCo."}]),
        (
            "You are a brilliant prompt-writer",
            [
                {
                    "content": "<prompt>Verify and profile Jordan Lee, Head of Partnerships at PartnerCo.</prompt>"
                }
            ],
        ),
        (
            "Verify and profile Jordan Lee",
            [{"content": "Jordan Lee has led partnerships at PartnerCo since 2021."}],
        ),
        (
            "Analyse the relationship between",
            [{"content": "Jordan wrote on 3 June about the Q3 kickoff and is in Lisbon until the 10th."}],
        ),
        (
            "creating an executive preparation brief",
            [
                {
                    "content": "<executive_briefing>Jordan Lee (PartnerCo, Head of Partnerships): "
                    "ask about Lisbon.</executive_briefing>"
                }
            ],
        ),
        (
            "high-quality html email report",
            [
                {
                    "content": "<html><body><h1>Meeting prep</h1><p>Jordan Lee: ask about Lisbon.</p></body></html>"
                }
            ],
        ),
    ]


# --- the Automated Support Agent export (agent_b8ceb480-...) --------------------------------------------
SUPPORT_AGENT_EXPORT = "agent_b8ceb480-a7a2-4c90-8513-181a49f7071f.json"
SUPPORT_TICKET_ID = "1973a0c0de0000a1"
SUPPORT_CUSTOMER = "dana@customer.example"
SUPPORT_SUBJECT = "How do I rotate my API key?"
SUPPORT_DOCS_URL = "https://docs.acme.example"
SUPPORT_ESCALATION_EMAIL = "support-team@acme.example"
SUPPORT_QUESTION = (
    "Hi,\n\nOur security policy asks us to rotate API keys every 90 days. How do I rotate the API key "
    "of our workspace without downtime?\n\nThanks,\nDana Cruz\nCustomerCo"
)
# What the agent's documentation search extracts and answers from (the Firecrawl extract tool's page).
SUPPORT_DOCS_PAGE = f"{SUPPORT_DOCS_URL}/docs"
SUPPORT_REPLY = (
    "Hello,\n\nYou can rotate your API key under Settings > API keys: create a second key, switch your "
    "integration to it, then revoke the old key. Both keys work until you revoke one, so there is no downtime."
)


def support_ticket() -> tuple[str, str, list[str], EmailMessage]:
    """An unread customer question in the inbox, 2.5 hours before the mailbox clock: what the support
    agent's query (`is:unread -label:agent-processed in:inbox newer_than:1d`) finds; not in
    `fixture_messages()`, a test delivers it with `GmailStyleServer.add_message`."""
    ticket = _mime(
        "Dana Cruz <dana@customer.example>",
        "Acme Support <alex@acme.example>",
        SUPPORT_SUBJECT,
        datetime(2025, 6, 4, 9, 30, tzinfo=UTC),
        "<ticket-7781@customer.example>",
        text=SUPPORT_QUESTION,
    )
    return SUPPORT_TICKET_ID, SUPPORT_TICKET_ID, ["INBOX", "UNREAD", "IMPORTANT"], ticket


def support_agent_rules(auto_reply: bool = True) -> list[tuple[str, list[dict[str, Any]]]]:
    """ScriptedLLMServer rules for the Automated Support Agent export: the 'Product Knowledge Agent'
    sub-agent's SmartDecisionMaker calls the FireCrawl Extract tool on the docs page, then answers in the
    <relevant_information> XML its prompt asks for; the analysis (AIStructuredResponseGenerator) decides
    to auto-reply (or, `auto_reply=False`, to escalate, whose email the escalation generator writes);
    the Airtable record is formatted as markdown. Matches are phrases from each node's own prompt."""
    findings = (
        "<relevant_information>\n  <confidence_score>92</confidence_score>\n  <quotes>\n"
        f'    <quote source="{SUPPORT_DOCS_PAGE}">Create a second key, update your integration, '
        "then revoke the old key. Both keys stay valid until one is revoked.</quote>\n  </quotes>\n"
        "  <answer>Rotate by creating a second key, switching over, then revoking the old key.</answer>\n"
        f"  <source_urls>\n    <url>{SUPPORT_DOCS_PAGE}</url>\n  </source_urls>\n</relevant_information>"
    )
    analysis = {
        "confidence_score": 92 if auto_reply else 55,
        "should_auto_reply": "true" if auto_reply else "false",
        "email_response": SUPPORT_REPLY,
        "reasoning": "The docs describe key rotation step by step."
        if auto_reply
        else "The docs do not cover workspace-wide rotation policies.",
    }
    extract = {
        "name": "firecrawlextractblock",
        "arguments": {"urls": [SUPPORT_DOCS_PAGE], "prompt": "How to rotate an API key without downtime"},
    }
    return [
        # The sub-agent's tool loop: the first request calls the tool, the next (with its answer) finishes.
        ("Available Pages (Sitemap)", [{"tool_calls": [extract]}, {"content": findings}]),
        (
            "DOCUMENTATION RESEARCH FINDINGS",
            [{"content": "{json_tag}" + json.dumps(analysis) + "</json_output>"}],
        ),
        (
            "escalating a customer support ticket",
            [
                {
                    "content": "<email_body>Hello Human Support Team,\n\nThis ticket needs a person: the "
                    "docs do not cover workspace-wide rotation policies.\n\nThanks</email_body>"
                }
            ],
        ),
        (
            "Format this object in nice, human readable markdown",
            [{"content": "## Support ticket\n\n- **Status:** logged"}],
        ),
    ]
