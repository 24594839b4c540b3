"""The Gmail blocks (AutoGPT blocks/google/gmail.py): send, read, label, reply to and forward email
through the Gmail API.

Like AutoGPT they use google-api-python-client: `build("gmail", "v1", ...)` (the bundled static
discovery document, so nothing is fetched to build it) with Google OAuth2 credentials, then
`users().messages()` / `users().labels()` calls, i.e. requests under `<base>/gmail/v1/users/me/`:

- GmailSendBlock: `messages.send` with `{"raw": <base64url MIME message>}`. The MIME message is
  AutoGPT's: multipart with To, Subject, Cc and Bcc headers, the body as text/html or text/plain
  (content_type "auto"/None guesses from tags in the first 500 characters; plain text is not
  hard-wrapped at 78 characters), then the attachments.
- GmailReadBlock: `messages.list` (q, maxResults), then `messages.get` (format "full") of each; yields
  every parsed `Email` on `email`, then the list on `emails`. The body is the first text/plain part,
  else the first text/html part, else a part stored as an attachment (`messages.attachments.get`).
- GmailAddLabelBlock: `labels.list`, `labels.create` when no label has that name, `messages.modify`.
- GmailReplyBlock: `messages.get` (format "metadata") of the parent for its Subject, References,
  Message-ID, From, To, Cc and Reply-To, then `messages.send` with the `threadId` and a message with
  In-Reply-To/References; with no recipients given it replies to Reply-To or From (reply all: From,
  To and Cc).
- GmailForwardBlock: `messages.get` (format "full"), then `messages.send` of "Fwd: <subject>" with the
  optional note, AutoGPT's "Forwarded message" header block, the original body and (optionally) the
  original attachments (`messages.attachments.get`).

Where the access token and the API base URL come from, first match wins:

1. the node's credential (pin `credentials`, provider "google", type oauth2, as AutoGPT's Google
   credentials), resolved by the engine: the secret is the OAuth access token, or JSON
   `{"access_token": ..., "base_url": ...}`;
2. the environment, read when the node runs: AGENTFLOW_GOOGLE_API_URL (the base URL only, for every
   Google API block: the Gmail and Calendar paths do not overlap);
3. the API's public root URL (https://gmail.googleapis.com for Gmail).

The token is used as it is: AutoGPT's platform refreshes Google tokens with its OAuth client, which this
engine does not hold, so an expired token is an error asking for a fresh one.

Every request goes through an httpx transport handed to the client (its `http` argument): the base URL's
host is resolved first and a private, loopback or otherwise non-public address is refused unless
`ctx.settings["allow_private_addresses"]`; requests then go to that checked address (Host header and TLS
server name keep the original host), requests to any other host are refused, redirects are not followed
and proxy settings from the environment are not used.

Differences from AutoGPT: attachments must be `data:` URIs (this engine has no file store to read paths
or fetch URLs from) and keep their declared MIME type; blank recipients (an export's placeholder `[""]`)
are dropped; an HTML-only body is returned as HTML (AutoGPT's own fallback when html2text is missing:
that converter is GPL-licensed and not a dependency here); credentials carry no scope list, so the
gmail.metadata-scope variant of reading (no query, metadata format) is not used; a failure is yielded on
`error` (scrubbed of the token) where AutoGPT raises.
"""

from __future__ import annotations

import asyncio
import base64
import email
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email import encoders
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from email.utils import getaddresses, parseaddr
from typing import Any, ClassVar, Literal, TypeVar

import httpx
from pydantic import BaseModel, Field, SecretStr

from blocks.library.http import decode_data_uri
from blocks.outbound import (
    CheckedTransport,
    ConnectsOut,
    HttpxAsHttplib2,
    PinnedAddresses,
    RequestRefused,
    normalise_url,
)
from blocks.provider_http import (
    ProviderError,
    mock_credentials,
    mock_wire,
    private_address_self_test,
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

DEFAULT_API_URL = "https://gmail.googleapis.com"
API_URL_VAR = "AGENTFLOW_GOOGLE_API_URL"
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
MODIFY_SCOPE = "https://www.googleapis.com/auth/gmail.modify"
NO_BODY = "This email does not contain a readable body."
# AutoGPT's plain-text policy: no 78-character hard wrap.
NO_WRAP_POLICY = SMTP.clone(max_line_length=0)
# A sending block makes one attempt (a node may ask for retries in its metadata); a reading block
# retries what is the provider's: a failure to reach Google or a 5xx answer.
TRANSIENT_ERRORS = ("could not reach the", "HTTP 5")

T = TypeVar("T")
DecodedFile = tuple[str, bytes, str]  # (filename, payload, mime type)


class GmailSendResult(BaseModel):
    id: str
    status: str


class Attachment(BaseModel):
    filename: str
    content_type: str
    size: int
    attachment_id: str


class Email(BaseModel):
    """AutoGPT's parsed email (field names as it yields them, `from_` included)."""

    threadId: str
    labelIds: list[str]
    id: str
    subject: str
    snippet: str
    from_: str
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    date: str
    body: str = ""
    sizeEstimate: int
    attachments: list[Attachment]


class GmailLabelResult(BaseModel):
    label_id: str
    status: str


@dataclass(frozen=True)
class GoogleEndpoint:
    base_url: str
    access_token: SecretStr

    def scrub(self, text: str) -> str:
        token = self.access_token.get_secret_value()
        return text.replace(token, "***") if len(token) >= 4 else text


def resolve_google(
    ctx: RunContext, pin: str = "credentials", default_url: str = DEFAULT_API_URL
) -> GoogleEndpoint:
    """The access token and API base URL for this node execution (see the module docstring)."""
    credential: Credentials | None = ctx.credentials.get(pin)
    if credential is None:
        raise ProviderError(
            f"no Google credential was resolved for pin {pin!r} (give the node a reference "
            '{"id": ...} to a stored google oauth2 credential holding an access token)',
            retryable=False,
        )
    secret = credential.secret.get_secret_value()
    try:
        parsed = json.loads(secret)
    except ValueError:
        parsed = None
    data: dict[str, Any] = parsed if isinstance(parsed, dict) else {"access_token": secret.strip()}
    token = str(data.get("access_token") or "").strip()
    if not token:
        raise ProviderError("the Google credential holds no access token", retryable=False)
    base = str(data.get("base_url") or os.environ.get(API_URL_VAR) or default_url).strip().rstrip("/")
    return GoogleEndpoint(base, SecretStr(token))


# --- MIME ------------------------------------------------------------------------------------------
def make_mime_text(body: str, content_type: str | None) -> MIMEText:
    """AutoGPT's body part: HTML when asked or when it looks like HTML, else unwrapped plain text."""
    if content_type in (None, "auto"):
        head = body[:500]
        content_type = "html" if "<" in head and ">" in head else "plain"
    if content_type == "html":
        return MIMEText(body, _subtype="html", _charset="utf-8")
    return MIMEText(body, _subtype="plain", _charset="utf-8", policy=NO_WRAP_POLICY)


def decode_attachments(uris: list[str]) -> list[DecodedFile]:
    """The `data:` URI files, decoded before any request is made (ValueError for a bad one)."""
    return [decode_data_uri(uri, index) for index, uri in enumerate(uris, start=1)]


def _attach(message: MIMEMultipart, filename: str, payload: bytes, mime: str) -> None:
    maintype, _, subtype = mime.partition("/")
    part = MIMEBase(maintype or "application", subtype or "octet-stream")
    part.set_payload(payload)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    message.attach(part)


def _encode(message: MIMEMultipart) -> str:
    return base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")


def create_raw_message(
    to: list[str],
    subject: str,
    body: str,
    cc: list[str],
    bcc: list[str],
    content_type: str | None,
    attachments: list[str],
) -> str:
    """The base64url-encoded MIME message Gmail's `raw` field takes (ValueError for a bad attachment)."""
    message = MIMEMultipart()
    message["to"] = ", ".join(to)
    message["subject"] = subject
    if cc:
        message["cc"] = ", ".join(cc)
    if bcc:
        message["bcc"] = ", ".join(bcc)
    message.attach(make_mime_text(body, content_type))
    for filename, payload, mime in decode_attachments(attachments):
        _attach(message, filename, payload, mime)
    return _encode(message)


def _non_blank(addresses: list[str]) -> list[str]:
    return [address for address in addresses if address.strip()]


# --- reading messages (AutoGPT's GmailBase helpers; run in the worker thread) ------------------------
def _decode_base64(data: str | None) -> str | None:
    """base64url text with its padding restored; None when it does not decode as UTF-8."""
    if not data:
        return None
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _download_attachment(service: Any, message_id: str, attachment_id: str) -> str | None:
    """An attachment's base64url data (None when Gmail will not give it, as AutoGPT)."""
    from googleapiclient.errors import HttpError

    try:
        result = (
            service.users()
            .messages()
            .attachments()
            .get(userId="me", messageId=message_id, id=attachment_id)
            .execute()
        )
    except HttpError:
        return None
    return result.get("data")


def _walk_for_body(part: dict[str, Any], message_id: str, service: Any, depth: int = 0) -> str | None:
    if depth > 10:  # AutoGPT's guard against absurdly nested parts
        return None
    mime_type = part.get("mimeType", "")
    body = part.get("body", {})
    if mime_type in ("text/plain", "text/html") and body.get("data"):
        text = _decode_base64(body["data"])
        if text or mime_type == "text/plain":
            return text
    if body.get("attachmentId"):
        data = _download_attachment(service, message_id, body["attachmentId"])
        if data:
            return _decode_base64(data)
    for sub_part in part.get("parts", []):
        text = _walk_for_body(sub_part, message_id, service, depth + 1)
        if text:
            return text
    return None


def get_email_body(message: dict[str, Any], service: Any) -> str:
    return _walk_for_body(message.get("payload", {}), message["id"], service) or NO_BODY


def get_attachments(message: dict[str, Any]) -> list[Attachment]:
    """The message's top-level parts with a filename (as AutoGPT: nested parts are not listed)."""
    return [
        Attachment(
            filename=part["filename"],
            content_type=part.get("mimeType", ""),
            size=int(part.get("body", {}).get("size", 0)),
            attachment_id=part.get("body", {}).get("attachmentId", ""),
        )
        for part in message.get("payload", {}).get("parts", [])
        if part.get("filename")
    ]


def _headers(message: dict[str, Any]) -> dict[str, str]:
    return {h["name"].lower(): h["value"] for h in message.get("payload", {}).get("headers", [])}


def _addresses(header: str) -> list[str]:
    return [address.strip() for _, address in getaddresses([header])]


def parse_email(message: dict[str, Any], service: Any) -> Email:
    headers = _headers(message)
    return Email(
        threadId=message.get("threadId", ""),
        labelIds=message.get("labelIds", []),
        id=message["id"],
        subject=headers.get("subject", "No Subject"),
        snippet=message.get("snippet", ""),
        from_=parseaddr(headers.get("from", ""))[1],
        to=_addresses(headers.get("to", "")),
        cc=_addresses(headers.get("cc", "")),
        bcc=_addresses(headers.get("bcc", "")),
        date=headers.get("date", ""),
        body=get_email_body(message, service),
        sizeEstimate=message.get("sizeEstimate", 0),
        attachments=get_attachments(message),
    )


# --- transport -------------------------------------------------------------------------------------
def _http_error_text(exc: Any) -> str:
    """A Google API error answer as "HTTP <status>: <message>"."""
    status = getattr(getattr(exc, "resp", None), "status", "?")
    reason = ""
    try:
        data = json.loads(exc.content)
        reason = str((data.get("error") or {}).get("message") or "")
    except (ValueError, TypeError, AttributeError):
        pass
    return f"HTTP {status}: {reason or getattr(exc, 'reason', '') or 'no detail'}"


def describe_api_error(exc: Exception) -> str:
    from googleapiclient.errors import HttpError

    if isinstance(exc, HttpError):
        text = _http_error_text(exc)
        if exc.resp.status == 401:
            text += " (the Google access token was refused: it may have expired; store a fresh one)"
        return text
    return f"{type(exc).__name__}: {exc}"


class GoogleApiBlock(ConnectsOut, Block):
    """What the Google API blocks share (no `id`: not a block itself): the endpoint, the address-checked
    client library service, and error texts without the token. Self-tests replace `_resolve` and
    `_transport`."""

    api_name: ClassVar[str] = "gmail"
    api_version: ClassVar[str] = "v1"
    api_label: ClassVar[str] = "Gmail API"
    # The discovery document's servicePath: an `api_endpoint` override replaces rootUrl + servicePath.
    service_path: ClassVar[str] = ""
    default_api_url: ClassVar[str] = DEFAULT_API_URL
    oauth_scopes: ClassVar[tuple[str, ...]] = ()

    # --- I/O helpers: self-tests replace these ---------------------------------------------------------
    def _transport(self) -> httpx.BaseTransport:
        return httpx.HTTPTransport()

    # --- plumbing --------------------------------------------------------------------------------------
    def _endpoint(self, ctx: RunContext) -> GoogleEndpoint:
        return resolve_google(ctx, default_url=self.default_api_url)

    async def _call(self, ctx: RunContext, endpoint: GoogleEndpoint, work: Callable[[Any], T]) -> T:
        """`work(service)` in a worker thread (the client library blocks) against the checked address."""
        origin = normalise_url(endpoint.base_url)
        # Resolved and checked here, once; the client library's requests (in a worker thread) go to
        # that address, and requests to any other origin are refused.
        pins = PinnedAddresses(self.outbound_policy(ctx.settings), only_origin=origin)
        await pins.pin(origin)
        return await asyncio.to_thread(self._with_service, endpoint, pins, work)

    def _with_service(self, endpoint: GoogleEndpoint, pins: PinnedAddresses, work: Callable[[Any], T]) -> T:
        from google.oauth2.credentials import Credentials as OAuthCredentials
        from google_auth_httplib2 import AuthorizedHttp
        from googleapiclient.discovery import build

        transport = CheckedTransport(pins, self._transport())
        client = httpx.Client(
            transport=transport, timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False
        )
        creds = OAuthCredentials(
            token=endpoint.access_token.get_secret_value(), scopes=list(self.oauth_scopes)
        )
        # No refresh on 401: this engine holds no OAuth client to refresh with (see the docstring).
        http = AuthorizedHttp(creds, http=HttpxAsHttplib2(client), refresh_status_codes=())
        service = build(
            self.api_name,
            self.api_version,
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": f"{endpoint.base_url}/{self.service_path}"},
        )
        try:
            return work(service)
        finally:
            service.close()

    def _failure(self, endpoint: GoogleEndpoint, action: str, exc: Exception) -> str:
        """The error text for a failed call, without the token."""
        if isinstance(exc, RequestRefused):
            text = str(exc)
        elif isinstance(exc, httpx.HTTPError):
            text = f"could not reach the {self.api_label} at {endpoint.base_url}: {type(exc).__name__}: {exc}"
        else:  # googleapiclient's HttpError and answers it cannot read
            text = f"{action} failed: {describe_api_error(exc)}"
        return endpoint.scrub(text)


# --- self-test wire -------------------------------------------------------------------------------
TEST_TOKEN = "ya29.mock-gmail-access-token"
TEST_CREDENTIALS = mock_credentials(
    "01234567-89ab-cdef-0123-456789abcdef",
    "google",
    "Mock Google OAuth2 credentials",
    {"access_token": TEST_TOKEN, "base_url": DEFAULT_API_URL},
    type="oauth2",
)
WRONG_TOKEN_CREDENTIALS = {
    "credentials": Credentials(
        "c",
        "google",
        "oauth2",
        SecretStr(json.dumps({"access_token": "wrong-token-1234", "base_url": DEFAULT_API_URL})),
        "local",
    )
}


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


_TEST_MESSAGE = {
    "id": "1",
    "threadId": "t1",
    "labelIds": ["INBOX"],
    "snippet": "This is a test email",
    "sizeEstimate": 100,
    "payload": {
        "mimeType": "text/plain",
        "filename": "",
        "headers": [
            {"name": "From", "value": "Test <test@example.com>"},
            {"name": "To", "value": "recipient@example.com"},
            {"name": "Subject", "value": "Test Email"},
            {"name": "Date", "value": "2024-01-01"},
            {"name": "Message-ID", "value": "<1@example.com>"},
        ],
        "body": {"size": 20, "data": _b64("This is a test email")},
    },
}
_TEST_EMAIL = {
    "threadId": "t1",
    "labelIds": ["INBOX"],
    "id": "1",
    "subject": "Test Email",
    "snippet": "This is a test email",
    "from_": "test@example.com",
    "to": ["recipient@example.com"],
    "cc": [],
    "bcc": [],
    "date": "2024-01-01",
    "body": "This is a test email",
    "sizeEstimate": 100,
    "attachments": [],
}


def _fake_gmail(request: httpx.Request) -> httpx.Response:
    """Answers like Gmail for the self-tests: checks the bearer token, serves one message ("1", in
    thread "t1") and one label ("Important"), and checks that a sent message decodes."""
    if request.headers.get("Authorization") != f"Bearer {TEST_TOKEN}":
        return httpx.Response(401, json={"error": {"code": 401, "message": "Invalid Credentials"}})
    route = (request.method, request.url.path.removeprefix("/gmail/v1/users/me"))
    if route == ("POST", "/messages/send"):
        sent = json.loads(request.content)
        message = email.message_from_bytes(base64.urlsafe_b64decode(sent["raw"]))
        if not message["To"] or "@" not in message["To"]:
            return httpx.Response(400, json={"error": {"code": 400, "message": "Invalid To header"}})
        if "threadId" in sent:  # a reply
            return httpx.Response(200, json={"id": "m2", "threadId": sent["threadId"], "labelIds": ["SENT"]})
        if message["Subject"] not in ("Test Email", "Fwd: Test Email"):
            return httpx.Response(400, json={"error": {"code": 400, "message": "Invalid raw message"}})
        # The ids AutoGPT's own tests expect: "1" for a sent email, "m2" for a forward.
        return httpx.Response(
            200, json={"id": "1" if message["Subject"] == "Test Email" else "m2", "threadId": "t1"}
        )
    if route == ("GET", "/messages"):
        return httpx.Response(
            200, json={"messages": [{"id": "1", "threadId": "t1"}], "resultSizeEstimate": 1}
        )
    if route == ("GET", "/messages/1"):
        return httpx.Response(200, json=_TEST_MESSAGE)
    if route == ("GET", "/labels"):
        return httpx.Response(200, json={"labels": [{"id": "Label_1", "name": "Important", "type": "user"}]})
    if route == ("POST", "/messages/1/modify"):
        added = json.loads(request.content).get("addLabelIds", [])
        return httpx.Response(200, json={"id": "1", "threadId": "t1", "labelIds": ["INBOX", *added]})
    return httpx.Response(404, json={"error": {"code": 404, "message": "Requested entity was not found."}})


GOOGLE_TEST_ADDRESS = "142.250.74.106"  # a public address of Google's


def _wire() -> dict[str, Any]:
    """Self-test mocks: a public address for the API host, and the fake Gmail as the transport."""
    return mock_wire(lambda: _fake_gmail, GOOGLE_TEST_ADDRESS)


def _refused_token(e: str) -> bool:
    return "HTTP 401" in e and "wrong-token" not in e


def _refusal_tests(input: dict[str, Any], wire: dict[str, Any]) -> tuple[BlockSelfTest, BlockSelfTest]:
    """The refusals every Google API block is tested for: a token Google refuses (answered by `wire`),
    and an API host on a private address."""
    return (
        BlockSelfTest(
            input=input, output=[("error", _refused_token)], mocks=wire, credentials=WRONG_TOKEN_CREDENTIALS
        ),
        private_address_self_test(input, {"credentials": TEST_CREDENTIALS}),
    )


_SELF_TEST_INPUT = {
    "to": ["recipient@example.com"],
    "subject": "Test Email",
    "body": "This is a test email sent from GmailSendBlock.",
}


def _credentials_input(*scopes: str) -> Any:
    return Field(
        default=None,
        description='A Google credential reference: {"id": ..., "provider": "google", "type": "oauth2"}',
        json_schema_extra={"scopes": list(scopes)},
    )


GOOGLE_OAUTH = (CredentialsField("credentials", provider="google", type="oauth2"),)


class GmailSendBlock(GoogleApiBlock):
    id = "6c27abc2-e51d-499e-a85f-5a0041ba94f0"
    description = (
        "Send emails via Gmail with automatic HTML detection and proper text formatting. Plain text "
        "emails are sent without 78-character line wrapping, preserving natural paragraph flow. HTML "
        "emails are automatically detected and sent with correct MIME type."
    )
    categories = frozenset({BlockCategory.OUTPUT})
    credentials = GOOGLE_OAUTH
    repeated_output_pins = frozenset()
    # Sending is not idempotent: one attempt (a node may ask for retries in its metadata); only a
    # failure to reach Google or a 5xx answer is the provider's.
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=("could not reach the Gmail API", "HTTP 5"))
    oauth_scopes = (SEND_SCOPE,)

    class Input(BlockInput):
        credentials: Any = _credentials_input(SEND_SCOPE)
        to: list[str] = Field(description="Recipient email addresses")
        subject: str = Field(description="Email subject")
        body: str = Field(description="Email body (plain text or HTML)")
        cc: list[str] = Field(default_factory=list, description="CC recipients")
        bcc: list[str] = Field(default_factory=list, description="BCC recipients")
        content_type: Literal["auto", "plain", "html"] | None = Field(
            default=None, description="Content type: 'auto' (default - detects HTML), 'plain', or 'html'"
        )
        attachments: list[str] = Field(default_factory=list, description="Files to attach (data: URIs)")

    class Output(BlockOutput):
        result: GmailSendResult = Field(description="Send confirmation")
        error: str = Field(default="", description="Error message if any")

    self_tests = (
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("result", {"id": "1", "status": "sent"})],
            mocks=_wire(),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        *_refusal_tests(_SELF_TEST_INPUT, _wire()),
        BlockSelfTest(
            input={**_SELF_TEST_INPUT, "to": [""]},
            output=[("error", lambda e: "At least one recipient" in e)],
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self._endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        to = _non_blank(input.to)
        if not to or not input.subject or not input.body:
            yield "error", "At least one recipient, subject, and body are required for sending an email"
            return
        try:
            raw = create_raw_message(
                to, input.subject, input.body, input.cc, input.bcc, input.content_type, input.attachments
            )
        except ValueError as exc:
            yield "error", f"cannot build the email: {exc}"
            return

        def send(service: Any) -> dict[str, Any]:
            return service.users().messages().send(userId="me", body={"raw": raw}).execute()

        try:
            sent = await self._call(ctx, endpoint, send)
        except Exception as exc:
            yield "error", self._failure(endpoint, "Gmail send", exc)
            return
        yield "result", GmailSendResult(id=str(sent["id"]), status="sent")


class GmailReadBlock(GoogleApiBlock):
    id = "25310c70-b89b-43ba-b25c-4dfa7e2a481c"
    description = (
        "A block that retrieves and reads emails from a Gmail account based on search criteria, "
        "returning detailed message information including subject, sender, body, and attachments."
    )
    categories = frozenset({BlockCategory.DATA})
    credentials = GOOGLE_OAUTH
    repeated_output_pins = frozenset({"email"})
    # Reading is idempotent: the provider's transient failures are retried.
    retry_policy = RetryPolicy(attempts=3, retry_on_errors=TRANSIENT_ERRORS)
    oauth_scopes = (READONLY_SCOPE,)

    class Input(BlockInput):
        credentials: Any = _credentials_input(READONLY_SCOPE)
        query: str = Field(default="is:unread", description="Search query for reading emails")
        max_results: int = Field(default=10, description="Maximum number of emails to retrieve")

    class Output(BlockOutput):
        email: Email = Field(description="Email data")
        emails: list[Email] = Field(description="List of email data")
        error: str = Field(default="", description="Error message if any")

    self_tests = (
        BlockSelfTest(
            input={"query": "is:unread", "max_results": 5},
            output=[("email", _TEST_EMAIL), ("emails", [_TEST_EMAIL])],
            mocks=_wire(),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        *_refusal_tests({"query": "is:unread"}, _wire()),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self._endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return

        def read(service: Any) -> list[Email]:
            params: dict[str, Any] = {"userId": "me", "maxResults": input.max_results or 10}
            if input.query:
                params["q"] = input.query
            listed = service.users().messages().list(**params).execute()
            emails = []
            for item in listed.get("messages", []):
                message = service.users().messages().get(userId="me", id=item["id"], format="full").execute()
                emails.append(parse_email(message, service))
            return emails

        try:
            emails = await self._call(ctx, endpoint, read)
        except Exception as exc:
            yield "error", self._failure(endpoint, "Gmail read", exc)
            return
        for item in emails:
            yield "email", item
        yield "emails", emails


class GmailAddLabelBlock(GoogleApiBlock):
    id = "f884b2fb-04f4-4265-9658-14f433926ac9"
    description = (
        "A block that adds a label to a specific email message in Gmail, creating the label if it "
        "doesn't exist."
    )
    categories = frozenset({BlockCategory.OUTPUT})
    credentials = GOOGLE_OAUTH
    repeated_output_pins = frozenset()
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=TRANSIENT_ERRORS)
    oauth_scopes = (MODIFY_SCOPE,)

    class Input(BlockInput):
        credentials: Any = _credentials_input(MODIFY_SCOPE)
        message_id: str = Field(description="Message ID to add label to")
        label_name: str = Field(description="Label name to add")

    class Output(BlockOutput):
        result: GmailLabelResult = Field(description="Label addition result")
        error: str = Field(default="", description="Error message if any")

    self_tests = (
        BlockSelfTest(
            input={"message_id": "1", "label_name": "Important"},
            output=[("result", {"label_id": "Label_1", "status": "Label added successfully"})],
            mocks=_wire(),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        *_refusal_tests({"message_id": "1", "label_name": "Important"}, _wire()),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self._endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return

        def add_label(service: Any) -> GmailLabelResult:
            labels = service.users().labels().list(userId="me").execute().get("labels", [])
            label_id = next((lb["id"] for lb in labels if lb["name"] == input.label_name), None)
            if label_id is None:
                created = service.users().labels().create(userId="me", body={"name": input.label_name})
                label_id = created.execute()["id"]
            modified = (
                service.users()
                .messages()
                .modify(userId="me", id=input.message_id, body={"addLabelIds": [label_id]})
                .execute()
            )
            if not modified.get("labelIds"):
                return GmailLabelResult(label_id=label_id, status="Label already applied or not found")
            return GmailLabelResult(label_id=label_id, status="Label added successfully")

        try:
            result = await self._call(ctx, endpoint, add_label)
        except Exception as exc:
            yield "error", self._failure(endpoint, "Gmail add label", exc)
            return
        yield "result", result


# The parent headers a reply needs (AutoGPT's metadataHeaders).
REPLY_HEADERS = ["Subject", "References", "Message-ID", "From", "To", "Cc", "Reply-To"]


@dataclass(frozen=True)
class _Reply:
    raw: str
    to: list[str]


def build_reply(
    parent: dict[str, Any],
    to: list[str],
    cc: list[str],
    bcc: list[str],
    reply_all: bool,
    subject: str,
    body: str,
    content_type: str | None,
    attachments: list[DecodedFile],
) -> _Reply:
    """AutoGPT's reply message: recipients from the parent when none are given, "Re: " subject,
    In-Reply-To and References for threading."""
    headers: dict[str, str] = {}
    for header in parent.get("payload", {}).get("headers", []):
        headers.setdefault(header["name"].lower(), header["value"])  # the first of duplicates
    if not (to or cc or bcc):
        if reply_all:
            found = [parseaddr(headers.get("from", ""))[1]]
            found += [address for _, address in getaddresses([headers.get("to", "")])]
            found += [address for _, address in getaddresses([headers.get("cc", "")])]
            to = list(dict.fromkeys(filter(None, found)))
        else:
            sender = parseaddr(headers.get("reply-to") or headers.get("from", ""))[1]
            to = [sender] if sender else []
    if not subject:
        parent_subject = headers.get("subject", "").strip()
        if parent_subject.lower().startswith("re:"):
            subject = parent_subject
        else:
            subject = f"Re: {parent_subject}" if parent_subject else "Re:"
    references = headers.get("references", "").split()
    if headers.get("message-id"):
        references.append(headers["message-id"])
    message = MIMEMultipart()
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    message["Subject"] = subject
    if headers.get("message-id"):
        message["In-Reply-To"] = headers["message-id"]
    if references:
        message["References"] = " ".join(references)
    message.attach(make_mime_text(body, content_type))
    for filename, payload, mime in attachments:
        _attach(message, filename, payload, mime)
    return _Reply(_encode(message), to)


class GmailReplyBlock(GoogleApiBlock):
    id = "12bf5a24-9b90-4f40-9090-4e86e6995e60"
    description = (
        "Reply to Gmail threads with automatic HTML detection and proper text formatting. Plain text "
        "replies maintain natural paragraph flow without 78-character line wrapping. HTML content is "
        "automatically detected and sent with correct MIME type."
    )
    categories = frozenset({BlockCategory.OUTPUT})
    credentials = GOOGLE_OAUTH
    repeated_output_pins = frozenset()
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=TRANSIENT_ERRORS)
    oauth_scopes = (SEND_SCOPE, READONLY_SCOPE)

    class Input(BlockInput):
        credentials: Any = _credentials_input(SEND_SCOPE, READONLY_SCOPE)
        threadId: str = Field(description="Thread ID to reply in")
        parentMessageId: str = Field(description="ID of the message being replied to")
        to: list[str] = Field(default_factory=list, description="To recipients")
        cc: list[str] = Field(default_factory=list, description="CC recipients")
        bcc: list[str] = Field(default_factory=list, description="BCC recipients")
        replyAll: bool = Field(default=False, description="Reply to all original recipients")
        subject: str = Field(default="", description="Email subject")
        body: str = Field(description="Email body (plain text or HTML)")
        content_type: Literal["auto", "plain", "html"] | None = Field(
            default=None, description="Content type: 'auto' (default - detects HTML), 'plain', or 'html'"
        )
        attachments: list[str] = Field(default_factory=list, description="Files to attach (data: URIs)")

    class Output(BlockOutput):
        messageId: str = Field(description="Sent message ID")
        threadId: str = Field(description="Thread ID")
        message: dict[str, Any] = Field(description="Raw Gmail message object")
        email: Email = Field(description="Parsed email object with decoded body and attachments")
        error: str = Field(default="", description="Error message if any")

    self_tests = (
        BlockSelfTest(
            input={"threadId": "t1", "parentMessageId": "1", "body": "Thanks", "replyAll": False},
            output=[
                ("messageId", "m2"),
                ("threadId", "t1"),
                ("message", {"id": "m2", "threadId": "t1", "labelIds": ["SENT"]}),
                (
                    "email",
                    {
                        "threadId": "t1",
                        "labelIds": ["SENT"],
                        "id": "m2",
                        "subject": "",
                        "snippet": "",
                        "from_": "",
                        "to": ["test@example.com"],  # the parent's sender
                        "cc": [],
                        "bcc": [],
                        "date": "",
                        "body": "Thanks",
                        "sizeEstimate": 0,
                        "attachments": [],
                    },
                ),
            ],
            mocks=_wire(),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        *_refusal_tests({"threadId": "t1", "parentMessageId": "1", "body": "Thanks"}, _wire()),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self._endpoint(ctx)
            attachments = decode_attachments(input.attachments)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        except ValueError as exc:
            yield "error", f"cannot build the reply: {exc}"
            return
        to, cc, bcc = _non_blank(input.to), _non_blank(input.cc), _non_blank(input.bcc)

        def reply(service: Any) -> tuple[dict[str, Any], list[str]]:
            parent = (
                service.users()
                .messages()
                .get(userId="me", id=input.parentMessageId, format="metadata", metadataHeaders=REPLY_HEADERS)
                .execute()
            )
            built = build_reply(
                parent,
                to,
                cc,
                bcc,
                input.replyAll,
                input.subject,
                input.body,
                input.content_type,
                attachments,
            )
            sent = (
                service.users()
                .messages()
                .send(userId="me", body={"threadId": input.threadId, "raw": built.raw})
                .execute()
            )
            return sent, built.to

        try:
            message, recipients = await self._call(ctx, endpoint, reply)
        except Exception as exc:
            yield "error", self._failure(endpoint, "Gmail reply", exc)
            return
        thread_id = message.get("threadId", input.threadId)
        yield "messageId", message["id"]
        yield "threadId", thread_id
        yield "message", message
        # AutoGPT's summary of what was sent: the send answer carries no headers or date.
        yield (
            "email",
            Email(
                threadId=thread_id,
                labelIds=message.get("labelIds", []),
                id=message["id"],
                subject=input.subject or "",
                snippet=message.get("snippet", ""),
                from_="",
                to=recipients,
                cc=cc,
                bcc=bcc,
                date="",
                body=input.body,
                sizeEstimate=message.get("sizeEstimate", 0),
                attachments=[],
            ),
        )


def build_forward(
    original: dict[str, Any],
    service: Any,
    message_id: str,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str,
    note: str,
    include_attachments: bool,
    content_type: str | None,
    extra: list[DecodedFile],
) -> str:
    """AutoGPT's forwarded message: "Fwd: " subject, the note, a "Forwarded message" header block,
    the original body, then the original attachments (downloaded) and the extra files."""
    headers = _headers(original)
    original_subject = headers.get("subject", "No Subject")
    if not subject:
        subject = (
            original_subject if original_subject.lower().startswith("fwd:") else f"Fwd: {original_subject}"
        )
    forward_header = (
        "\n---------- Forwarded message ---------\n"
        f"From: {headers.get('from', 'Unknown')}\n"
        f"Date: {headers.get('date', 'Unknown')}\n"
        f"Subject: {original_subject}\n"
        f"To: {headers.get('to', 'Unknown')}\n"
    )
    original_body = get_email_body(original, service)
    body = f"{forward_header}\n\n{original_body}"
    if note:
        body = f"{note}\n\n{body}"
    message = MIMEMultipart()
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    message["Subject"] = subject
    message.attach(make_mime_text(body, content_type))
    if include_attachments:
        for attachment in get_attachments(original):
            data = (
                service.users()
                .messages()
                .attachments()
                .get(userId="me", messageId=message_id, id=attachment.attachment_id)
                .execute()
            )
            payload = base64.urlsafe_b64decode(data["data"] + "=" * (-len(data["data"]) % 4))
            # AutoGPT attaches originals as application/octet-stream.
            _attach(message, attachment.filename, payload, "application/octet-stream")
    for filename, payload, mime in extra:
        _attach(message, filename, payload, mime)
    return _encode(message)


class GmailForwardBlock(GoogleApiBlock):
    id = "64d2301c-b3f5-4174-8ac0-111ca1e1a7c0"
    description = (
        "Forward Gmail messages to other recipients with automatic HTML detection and proper "
        "formatting. Preserves original message threading and attachments."
    )
    categories = frozenset({BlockCategory.OUTPUT})
    credentials = GOOGLE_OAUTH
    repeated_output_pins = frozenset()
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=TRANSIENT_ERRORS)
    oauth_scopes = (SEND_SCOPE, READONLY_SCOPE)

    class Input(BlockInput):
        credentials: Any = _credentials_input(SEND_SCOPE, READONLY_SCOPE)
        messageId: str = Field(description="ID of the message to forward")
        to: list[str] = Field(description="Recipients to forward the message to")
        cc: list[str] = Field(default_factory=list, description="CC recipients")
        bcc: list[str] = Field(default_factory=list, description="BCC recipients")
        subject: str = Field(
            default="", description="Optional custom subject (defaults to 'Fwd: [original subject]')"
        )
        forwardMessage: str = Field(
            default="", description="Optional message to include before the forwarded content"
        )
        includeAttachments: bool = Field(
            default=True, description="Include attachments from the original message"
        )
        content_type: Literal["auto", "plain", "html"] | None = Field(
            default=None, description="Content type: 'auto' (default - detects HTML), 'plain', or 'html'"
        )
        additionalAttachments: list[str] = Field(
            default_factory=list, description="Additional files to attach (data: URIs)"
        )

    class Output(BlockOutput):
        messageId: str = Field(description="Forwarded message ID")
        threadId: str = Field(description="Thread ID")
        status: str = Field(description="Forward status")
        error: str = Field(default="", description="Error message if any")

    self_tests = (
        BlockSelfTest(
            input={"messageId": "1", "to": ["recipient@example.com"], "forwardMessage": "FYI"},
            output=[("messageId", "m2"), ("threadId", "t1"), ("status", "forwarded")],
            mocks=_wire(),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        *_refusal_tests({"messageId": "1", "to": ["recipient@example.com"]}, _wire()),
        BlockSelfTest(
            input={"messageId": "1", "to": [""]},
            output=[("error", "At least one recipient is required for forwarding")],
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self._endpoint(ctx)
            extra = decode_attachments(input.additionalAttachments)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        except ValueError as exc:
            yield "error", f"cannot build the forwarded email: {exc}"
            return
        to, cc, bcc = _non_blank(input.to), _non_blank(input.cc), _non_blank(input.bcc)
        if not to:
            yield "error", "At least one recipient is required for forwarding"
            return

        def forward(service: Any) -> dict[str, Any]:
            original = (
                service.users().messages().get(userId="me", id=input.messageId, format="full").execute()
            )
            raw = build_forward(
                original,
                service,
                input.messageId,
                to,
                cc,
                bcc,
                input.subject,
                input.forwardMessage,
                input.includeAttachments,
                input.content_type,
                extra,
            )
            # As AutoGPT: the forward starts its own thread (no threadId).
            return service.users().messages().send(userId="me", body={"raw": raw}).execute()

        try:
            sent = await self._call(ctx, endpoint, forward)
        except Exception as exc:
            yield "error", self._failure(endpoint, "Gmail forward", exc)
            return
        yield "messageId", sent["id"]
        yield "threadId", sent.get("threadId", "")
        yield "status", "forwarded"
