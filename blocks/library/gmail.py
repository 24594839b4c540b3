"""GmailSendBlock (AutoGPT blocks/google/gmail.py): send an email through the Gmail API.

Like AutoGPT it uses google-api-python-client: `build("gmail", "v1", ...)` (the bundled static discovery
document, so nothing is fetched to build it) with Google OAuth2 credentials, then
`users().messages().send(userId="me", body={"raw": <base64url MIME message>}).execute()`, i.e.
POST `<base>/gmail/v1/users/me/messages/send`. The MIME message is AutoGPT's: multipart with To, Subject,
Cc and Bcc headers, the body as text/html or text/plain (content_type "auto"/None guesses from tags in
the first 500 characters; plain text is not hard-wrapped at 78 characters), then the attachments.

Where the access token and the API base URL come from, first match wins:

1. the node's credential (pin `credentials`, provider "google", type oauth2, as AutoGPT's Google
   credentials), resolved by the engine: the secret is the OAuth access token, or JSON
   `{"access_token": ..., "base_url": ...}`;
2. the environment, read when the node runs: AGENTFLOW_GOOGLE_API_URL (the base URL only);
3. Google's https://gmail.googleapis.com.

The token is used as it is: AutoGPT's platform refreshes Google tokens with its OAuth client, which this
engine does not hold, so an expired token is an error asking for a fresh one.

Every request goes through an httpx transport handed to the client (its `http` argument): the base URL's
host is resolved first and a private, loopback or otherwise non-public address is refused unless
`ctx.settings["allow_private_addresses"]`; requests then go to that checked address (Host header and TLS
server name keep the original host), requests to any other host are refused, redirects are not followed
and proxy settings from the environment are not used.

Differences from AutoGPT: attachments must be `data:` URIs (this engine has no file store to read paths
or fetch URLs from) and keep their declared MIME type; blank recipients (the export's placeholder `[""]`)
are dropped before the "at least one recipient" check.
"""

from __future__ import annotations

import asyncio
import base64
import email
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import encoders
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr

from blocks.library.http import RequestRefused, _decode_data_uri, _normalise_url, pin_to_checked_address
from blocks.provider_http import ProviderError, resolve_host
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
# AutoGPT's plain-text policy: no 78-character hard wrap.
NO_WRAP_POLICY = SMTP.clone(max_line_length=0)


class GmailSendResult(BaseModel):
    id: str
    status: str


@dataclass(frozen=True)
class GoogleEndpoint:
    base_url: str
    access_token: SecretStr

    def scrub(self, text: str) -> str:
        token = self.access_token.get_secret_value()
        return text.replace(token, "***") if len(token) >= 4 else text


def resolve_google(ctx: RunContext, pin: str = "credentials") -> GoogleEndpoint:
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
    base = str(data.get("base_url") or os.environ.get(API_URL_VAR) or DEFAULT_API_URL).strip().rstrip("/")
    return GoogleEndpoint(base, SecretStr(token))


def make_mime_text(body: str, content_type: str | None) -> MIMEText:
    """AutoGPT's body part: HTML when asked or when it looks like HTML, else unwrapped plain text."""
    if content_type in (None, "auto"):
        head = body[:500]
        content_type = "html" if "<" in head and ">" in head else "plain"
    if content_type == "html":
        return MIMEText(body, _subtype="html", _charset="utf-8")
    return MIMEText(body, _subtype="plain", _charset="utf-8", policy=NO_WRAP_POLICY)


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
    for index, uri in enumerate(attachments, start=1):
        filename, payload, mime = _decode_data_uri(uri, index)
        maintype, _, subtype = mime.partition("/")
        part = MIMEBase(maintype or "application", subtype or "octet-stream")
        part.set_payload(payload)
        encoders.encode_base64(part)
        part.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(part)
    return base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")


class _PinnedTransport(httpx.BaseTransport):
    """Sends requests for the checked origin to its checked address and refuses any other origin."""

    def __init__(self, inner: httpx.BaseTransport, origin: httpx.URL, target: httpx.URL, sni: str | None):
        self._inner = inner
        self._origin = (origin.scheme, origin.host, origin.port)
        self._target_host = target.host
        self._sni = sni

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (url.scheme, url.host, url.port) != self._origin:
            raise RequestRefused(
                f"refusing a request to {url.scheme}://{url.host}: not the Gmail API base URL"
            )
        request.url = url.copy_with(host=self._target_host)  # the Host header keeps the original host
        if self._sni:
            request.extensions = {**request.extensions, "sni_hostname": self._sni}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class _HttpxAsHttplib2:
    """The part of httplib2.Http's interface that googleapiclient and google-auth-httplib2 call,
    carried over an httpx client (so every request goes through the address-checked transport)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        redirections: int = 5,
        connection_type: Any = None,
    ) -> tuple[Any, bytes]:
        import httplib2

        response = self._client.request(method, uri, content=body, headers=headers)
        info: dict[str, str] = dict(response.headers.items())
        info["status"] = str(response.status_code)
        return httplib2.Response(info), response.content

    def close(self) -> None:
        self._client.close()


def _http_error_text(exc: Any) -> str:
    """A Gmail API error answer as "HTTP <status>: <message>"."""
    status = getattr(getattr(exc, "resp", None), "status", "?")
    reason = ""
    try:
        data = json.loads(exc.content)
        reason = str((data.get("error") or {}).get("message") or "")
    except (ValueError, TypeError, AttributeError):
        pass
    return f"HTTP {status}: {reason or getattr(exc, 'reason', '') or 'no detail'}"


# --- self-test wire -------------------------------------------------------------------------------
TEST_TOKEN = "ya29.mock-gmail-access-token"
TEST_CREDENTIALS = Credentials(
    id="01234567-89ab-cdef-0123-456789abcdef",
    provider="google",
    type="oauth2",
    # The base URL pinned in the credential: self-tests must not depend on AGENTFLOW_GOOGLE_API_URL.
    secret=SecretStr(json.dumps({"access_token": TEST_TOKEN, "base_url": DEFAULT_API_URL})),
    owner_user_id="local",
    title="Mock Google OAuth2 credentials",
)


def _fake_gmail(request: httpx.Request) -> httpx.Response:
    """Answers messages.send like Gmail: checks the bearer token and that the raw message decodes."""
    if request.headers.get("Authorization") != f"Bearer {TEST_TOKEN}":
        return httpx.Response(401, json={"error": {"code": 401, "message": "Invalid Credentials"}})
    if request.method != "POST" or request.url.path != "/gmail/v1/users/me/messages/send":
        return httpx.Response(404, json={"error": {"code": 404, "message": "Not Found"}})
    message = email.message_from_bytes(base64.urlsafe_b64decode(json.loads(request.content)["raw"]))
    if message["Subject"] != "Test Email" or message["To"] != "recipient@example.com":
        return httpx.Response(400, json={"error": {"code": 400, "message": "Invalid raw message"}})
    return httpx.Response(200, json={"id": "1", "threadId": "t1", "labelIds": ["SENT"]})


def _public_resolve(address: str = "142.250.74.106") -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


_SELF_TEST_INPUT = {
    "to": ["recipient@example.com"],
    "subject": "Test Email",
    "body": "This is a test email sent from GmailSendBlock.",
}


class GmailSendBlock(Block):
    id = "6c27abc2-e51d-499e-a85f-5a0041ba94f0"
    description = (
        "Send emails via Gmail with automatic HTML detection and proper text formatting. Plain text "
        "emails are sent without 78-character line wrapping, preserving natural paragraph flow. HTML "
        "emails are automatically detected and sent with correct MIME type."
    )
    categories = frozenset({BlockCategory.OUTPUT})
    credentials = (CredentialsField("credentials", provider="google", type="oauth2"),)
    repeated_output_pins = frozenset()
    # Sending is not idempotent: one attempt (a node may ask for retries in its metadata); only a
    # failure to reach Google or a 5xx answer is the provider's.
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=("could not reach the Gmail API", "HTTP 5"))

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A Google credential reference: {"id": ..., "provider": "google", "type": "oauth2"}',
            json_schema_extra={"scopes": [SEND_SCOPE]},
        )
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
            mocks={"_resolve": _public_resolve(), "_transport": lambda: httpx.MockTransport(_fake_gmail)},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("error", lambda e: "HTTP 401" in e and "wrong-token" not in e)],
            mocks={"_resolve": _public_resolve(), "_transport": lambda: httpx.MockTransport(_fake_gmail)},
            credentials={
                "credentials": Credentials(
                    "c",
                    "google",
                    "oauth2",
                    SecretStr(json.dumps({"access_token": "wrong-token-1234", "base_url": DEFAULT_API_URL})),
                    "local",
                )
            },
        ),
        BlockSelfTest(
            input={**_SELF_TEST_INPUT, "to": [""]},
            output=[("error", lambda e: "At least one recipient" in e)],
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("error", lambda e: "10.0.0.7" in e and "allow_private_addresses" in e)],
            mocks={"_resolve": _public_resolve("10.0.0.7")},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    # --- I/O helpers: self-tests replace these ---------------------------------------------------------
    async def _resolve(self, host: str, port: int) -> list[str]:
        return await resolve_host(host, port)

    def _transport(self) -> httpx.BaseTransport:
        return httpx.HTTPTransport()

    # --- logic -----------------------------------------------------------------------------------------
    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_google(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        to = [address for address in input.to if address.strip()]
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
        try:
            origin = _normalise_url(endpoint.base_url)
            target, sni = await pin_to_checked_address(
                origin, self._resolve, bool(ctx.settings.get("allow_private_addresses"))
            )
            sent = await asyncio.to_thread(self._send_email, endpoint, origin, target, sni, raw)
        except RequestRefused as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        except httpx.HTTPError as exc:
            yield (
                "error",
                endpoint.scrub(
                    f"could not reach the Gmail API at {endpoint.base_url}: {type(exc).__name__}: {exc}"
                ),
            )
            return
        except Exception as exc:  # googleapiclient's HttpError and answers it cannot read
            yield "error", endpoint.scrub(f"Gmail send failed: {self._describe(exc)}")
            return
        yield "result", GmailSendResult(id=str(sent["id"]), status="sent")

    @staticmethod
    def _describe(exc: Exception) -> str:
        from googleapiclient.errors import HttpError

        if isinstance(exc, HttpError):
            text = _http_error_text(exc)
            if exc.resp.status == 401:
                text += " (the Google access token was refused: it may have expired; store a fresh one)"
            return text
        return f"{type(exc).__name__}: {exc}"

    def _send_email(
        self, endpoint: GoogleEndpoint, origin: httpx.URL, target: httpx.URL, sni: str | None, raw: str
    ) -> dict[str, Any]:
        """messages.send through the client library (runs in a worker thread: the client is blocking)."""
        from google.oauth2.credentials import Credentials as OAuthCredentials
        from google_auth_httplib2 import AuthorizedHttp
        from googleapiclient.discovery import build

        transport = _PinnedTransport(self._transport(), origin, target, sni)
        client = httpx.Client(
            transport=transport, timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False
        )
        creds = OAuthCredentials(token=endpoint.access_token.get_secret_value(), scopes=[SEND_SCOPE])
        # No refresh on 401: this engine holds no OAuth client to refresh with (see the docstring).
        http = AuthorizedHttp(creds, http=_HttpxAsHttplib2(client), refresh_status_codes=())
        service = build(
            "gmail",
            "v1",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": endpoint.base_url + "/"},
        )
        try:
            return service.users().messages().send(userId="me", body={"raw": raw}).execute()
        finally:
            service.close()
