"""GmailReadBlock, GmailAddLabelBlock, GmailReplyBlock, GmailForwardBlock and
GoogleCalendarReadEventsBlock against the local Google stand-in (tests/support_google.py, its fixture
mailbox and calendar) through google-api-python-client, and the Smart Meeting Prep export they make
runnable, on the reference engine and as a compiled Dagster job."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import DagsterInstance
from support_blocks import run_block
from support_google import (
    EXTERNAL_ATTENDEE,
    GMAIL_TOKEN,
    INVOICE_ID,
    INVOICE_PDF,
    KICKOFF_ID,
    KICKOFF_REPLY_ID,
    KICKOFF_TEXT,
    NEWSLETTER_ID,
    SYNC_MEET_LINK,
    USER_EMAIL,
    GmailStyleServer,
)
from test_gmail_revid_blocks import _run, google, instance  # noqa: F401  (a fixture the export test uses)
from test_llm_blocks import servers  # noqa: F401  (a fixture the export test uses)

from blocks import Block, RunContext
from blocks.library.gmail import (
    GmailAddLabelBlock,
    GmailForwardBlock,
    GmailReadBlock,
    GmailReplyBlock,
)
from blocks.library.google_calendar import GoogleCalendarReadEventsBlock

MEETING_PREP = "agent_415b7352-0dc6-4214-9d87-0ad3751b711d.json"
BAD_TOKEN = "ya29.wrong-token-31337"
# Each new block with an input that would succeed with a good token on a public address.
EVERY_BLOCK: list[tuple[Block, dict[str, Any]]] = [
    (GmailReadBlock(), {"query": "in:inbox"}),
    (GmailAddLabelBlock(), {"message_id": KICKOFF_ID, "label_name": "x"}),
    (GmailReplyBlock(), {"threadId": KICKOFF_ID, "parentMessageId": KICKOFF_ID, "body": "b"}),
    (GmailForwardBlock(), {"messageId": KICKOFF_ID, "to": ["a@example.com"]}),
    (GoogleCalendarReadEventsBlock(), {"start_time": "2025-06-04T00:00:00Z"}),
]


@pytest.fixture
def gmail(gmail_server: GmailStyleServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GmailStyleServer]:
    gmail_server.reset()  # the fixture mailbox and calendar, nothing recorded
    monkeypatch.setenv("AGENTFLOW_GOOGLE_API_URL", gmail_server.url)
    yield gmail_server


def emails_of(outputs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The `email` yields, checked against the final `emails` list."""
    *each, (pin, listed) = outputs
    assert pin == "emails"
    assert [p for p, _ in each] == ["email"] * len(each) and [v for _, v in each] == listed
    return listed


def run_without_private_addresses(block: Block, data: dict[str, Any]) -> list[tuple[str, Any]]:
    async def go() -> list[tuple[str, Any]]:
        ctx = RunContext(credentials=google(GMAIL_TOKEN))  # no allow_private_addresses
        return [item async for item in block.run(block.make_input(data), ctx)]

    return asyncio.run(go())


# --- GmailReadBlock ----------------------------------------------------------------------------------
def test_gmail_read_lists_then_gets_each_message_like_autogpt(gmail: GmailStyleServer) -> None:
    emails = emails_of(
        run_block(GmailReadBlock(), {"query": "in:inbox", "max_results": 5}, google(GMAIL_TOKEN))
    )
    assert [e["id"] for e in emails] == [KICKOFF_ID, INVOICE_ID, NEWSLETTER_ID]  # newest first
    kickoff, invoice, newsletter = emails
    assert kickoff == {
        "threadId": KICKOFF_ID,
        "labelIds": ["INBOX", "UNREAD", "IMPORTANT"],
        "id": KICKOFF_ID,
        "subject": "Q3 partnership kickoff",
        "snippet": kickoff["snippet"],
        "from_": "jordan@partnerco.example",
        "to": ["alex@acme.example"],
        "cc": ["priya@acme.example"],
        "bcc": [],
        "date": "Tue, 03 Jun 2025 09:15:00 +0000",
        "body": KICKOFF_TEXT + "\n",
        "sizeEstimate": gmail.messages[KICKOFF_ID]["sizeEstimate"],
        "attachments": [],
    }
    assert kickoff["snippet"].startswith("Hi Alex, Looking forward")
    # multipart/alternative: the text/plain part is the body; the PDF is listed, not read
    assert invoice["body"] == "Please find invoice 1042 attached.\n"
    [attachment] = invoice["attachments"]
    assert attachment["filename"] == "invoice-1042.pdf" and attachment["content_type"] == "application/pdf"
    assert attachment["size"] == len(INVOICE_PDF) and attachment["attachment_id"]
    # HTML only: the HTML itself (AutoGPT's fallback without html2text)
    assert newsletter["body"].startswith("<html><body><h1>This week</h1>")
    listing, *gets = gmail.requests
    assert (listing["method"], listing["path"]) == ("GET", "/gmail/v1/users/me/messages")
    assert listing["query"]["q"] == ["in:inbox"] and listing["query"]["maxResults"] == ["5"]
    assert listing["headers"]["authorization"] == f"Bearer {GMAIL_TOKEN}"
    assert [(r["path"].rsplit("/", 1)[1], r["query"]["format"]) for r in gets] == [
        (KICKOFF_ID, ["full"]),
        (INVOICE_ID, ["full"]),
        (NEWSLETTER_ID, ["full"]),
    ]


def test_gmail_read_passes_the_query_and_max_results(gmail: GmailStyleServer) -> None:
    query = f'from:{EXTERNAL_ATTENDEE} OR to:{EXTERNAL_ATTENDEE} OR "{EXTERNAL_ATTENDEE}"'
    emails = emails_of(run_block(GmailReadBlock(), {"query": query, "max_results": 30}, google(GMAIL_TOKEN)))
    assert [e["id"] for e in emails] == [KICKOFF_REPLY_ID, KICKOFF_ID]  # his mail and the reply to him
    emails = emails_of(run_block(GmailReadBlock(), {"query": query, "max_results": 1}, google(GMAIL_TOKEN)))
    assert [e["id"] for e in emails] == [KICKOFF_REPLY_ID]
    # the default query is AutoGPT's "is:unread" (the spam message is unread too, but left out)
    emails = emails_of(run_block(GmailReadBlock(), {}, google(GMAIL_TOKEN)))
    assert [e["id"] for e in emails] == [KICKOFF_ID, INVOICE_ID]
    assert gmail.requests[-3]["query"]["q"] == ["is:unread"] and gmail.requests[-3]["query"][
        "maxResults"
    ] == ["10"]


def test_gmail_read_with_no_match_yields_an_empty_list(gmail: GmailStyleServer) -> None:
    outputs = run_block(GmailReadBlock(), {"query": "from:nobody@example.com"}, google(GMAIL_TOKEN))
    assert outputs == [("emails", [])]


@pytest.mark.parametrize(("block", "data"), EVERY_BLOCK, ids=[type(b).__name__ for b, _ in EVERY_BLOCK])
def test_refused_token_is_a_clear_error_without_the_token(
    gmail: GmailStyleServer, block: Block, data: dict[str, Any]
) -> None:
    [(pin, message)] = run_block(block, data, google(BAD_TOKEN))
    assert pin == "error"
    assert "HTTP 401" in message and "invalid authentication credentials" in message
    assert "access token was refused" in message
    assert BAD_TOKEN not in message
    assert len(gmail.requests) == 1 and not gmail.sent  # nothing after the refusal


@pytest.mark.parametrize(("block", "data"), EVERY_BLOCK, ids=[type(b).__name__ for b, _ in EVERY_BLOCK])
def test_loopback_base_url_is_refused_unless_allowed(
    gmail: GmailStyleServer, block: Block, data: dict[str, Any]
) -> None:
    [(pin, message)] = run_without_private_addresses(block, data)
    assert pin == "error" and "127.0.0.1" in message and "allow_private_addresses" in message
    assert not gmail.requests


# --- GmailAddLabelBlock ------------------------------------------------------------------------------
def test_gmail_add_label_uses_an_existing_label(gmail: GmailStyleServer) -> None:
    outputs = run_block(
        GmailAddLabelBlock(), {"message_id": KICKOFF_ID, "label_name": "Clients"}, google(GMAIL_TOKEN)
    )
    assert outputs == [("result", {"label_id": "Label_1", "status": "Label added successfully"})]
    assert [(r["method"], r["path"]) for r in gmail.requests] == [
        ("GET", "/gmail/v1/users/me/labels"),
        ("POST", f"/gmail/v1/users/me/messages/{KICKOFF_ID}/modify"),
    ]
    assert gmail.requests[1]["body"] == {"addLabelIds": ["Label_1"]}
    assert "Label_1" in gmail.messages[KICKOFF_ID]["labelIds"]


def test_gmail_add_label_creates_a_missing_label_once(gmail: GmailStyleServer) -> None:
    data = {"message_id": INVOICE_ID, "label_name": "agent-processed"}
    outputs = run_block(GmailAddLabelBlock(), data, google(GMAIL_TOKEN))
    assert outputs == [("result", {"label_id": "Label_2", "status": "Label added successfully"})]
    create = gmail.requests[1]
    assert (create["method"], create["path"], create["body"]) == (
        "POST",
        "/gmail/v1/users/me/labels",
        {"name": "agent-processed"},
    )
    assert {"id": "Label_2", "name": "agent-processed"}.items() <= gmail.labels[-1].items()
    assert "Label_2" in gmail.messages[INVOICE_ID]["labelIds"]
    # the next message reuses the label
    run_block(GmailAddLabelBlock(), {**data, "message_id": KICKOFF_ID}, google(GMAIL_TOKEN))
    assert [r["method"] for r in gmail.requests[3:]] == ["GET", "POST"]
    assert "Label_2" in gmail.messages[KICKOFF_ID]["labelIds"]


def test_gmail_add_label_to_an_unknown_message_is_an_error(gmail: GmailStyleServer) -> None:
    data = {"message_id": "ffff000000000000", "label_name": "Clients"}
    [(pin, message)] = run_block(GmailAddLabelBlock(), data, google(GMAIL_TOKEN))
    assert (pin, message) == ("error", "Gmail add label failed: HTTP 404: Requested entity was not found.")


# --- GmailReplyBlock ---------------------------------------------------------------------------------
def test_gmail_reply_answers_the_sender_in_the_thread(gmail: GmailStyleServer) -> None:
    data = {"threadId": KICKOFF_ID, "parentMessageId": KICKOFF_ID, "body": "See you on the 5th."}
    outputs = run_block(GmailReplyBlock(), data, google(GMAIL_TOKEN))
    (sent,) = gmail.sent
    assert outputs == [
        ("messageId", sent["id"]),
        ("threadId", KICKOFF_ID),
        ("message", {"id": sent["id"], "threadId": KICKOFF_ID, "labelIds": ["SENT"]}),
        (
            "email",
            {
                "threadId": KICKOFF_ID,
                "labelIds": ["SENT"],
                "id": sent["id"],
                "subject": "",  # AutoGPT reports the subject input, not the "Re:" one it sent
                "snippet": "",
                "from_": "",
                "to": [EXTERNAL_ATTENDEE],
                "cc": [],
                "bcc": [],
                "date": "",
                "body": "See you on the 5th.",
                "sizeEstimate": 0,
                "attachments": [],
            },
        ),
    ]
    parent, send = gmail.requests
    assert parent["query"]["format"] == ["metadata"]
    assert parent["query"]["metadataHeaders"] == [
        "Subject",
        "References",
        "Message-ID",
        "From",
        "To",
        "Cc",
        "Reply-To",
    ]
    assert send["body"]["threadId"] == KICKOFF_ID
    assert sent["threadId"] == KICKOFF_ID and sent["to"] == [EXTERNAL_ATTENDEE]
    assert sent["subject"] == "Re: Q3 partnership kickoff"
    assert sent["in_reply_to"] == "<kickoff-1@partnerco.example>"
    assert sent["references"] == "<kickoff-1@partnerco.example>"
    assert sent["content_type"] == "text/plain" and sent["body"] == "See you on the 5th."
    assert KICKOFF_ID in {m["threadId"] for m in gmail.messages.values() if "SENT" in m["labelIds"]}


def test_gmail_reply_all_and_reply_to(gmail: GmailStyleServer) -> None:
    data = {"threadId": KICKOFF_ID, "parentMessageId": KICKOFF_ID, "body": "All: agreed.", "replyAll": True}
    run_block(GmailReplyBlock(), data, google(GMAIL_TOKEN))
    assert gmail.sent[-1]["to"] == [EXTERNAL_ATTENDEE, USER_EMAIL, "priya@acme.example"]
    # an already "Re:" subject is kept; Reply-To wins over From
    data = {"threadId": NEWSLETTER_ID, "parentMessageId": NEWSLETTER_ID, "body": "<p>Unsubscribe</p>"}
    run_block(GmailReplyBlock(), data, google(GMAIL_TOKEN))
    sent = gmail.sent[-1]
    assert sent["to"] == ["replies@acme-weekly.example"] and sent["subject"] == "Re: This week at Acme"
    assert sent["content_type"] == "text/html"
    data = {
        "threadId": KICKOFF_ID,
        "parentMessageId": KICKOFF_REPLY_ID,
        "to": ["", "carol@example.com"],
        "subject": "Custom",
        "body": "b",
        "attachments": ["data:text/csv;base64," + base64.b64encode(b"notes").decode()],
    }
    run_block(GmailReplyBlock(), data, google(GMAIL_TOKEN))
    sent = gmail.sent[-1]
    assert sent["to"] == ["carol@example.com"] and sent["subject"] == "Custom"
    assert sent["references"] == "<kickoff-1@partnerco.example> <reply-1@acme.example>"
    assert sent["attachments"] == [{"filename": "file1.csv", "content_type": "text/csv", "data": b"notes"}]


def test_gmail_reply_in_an_unknown_thread_is_an_error(gmail: GmailStyleServer) -> None:
    data = {"threadId": "ffff000000000000", "parentMessageId": KICKOFF_ID, "body": "b"}
    [(pin, message)] = run_block(GmailReplyBlock(), data, google(GMAIL_TOKEN))
    assert (pin, message) == ("error", "Gmail reply failed: HTTP 404: Requested entity was not found.")
    assert not gmail.sent


# --- GmailForwardBlock -------------------------------------------------------------------------------
def test_gmail_forward_sends_the_original_with_its_attachment(gmail: GmailStyleServer) -> None:
    data = {"messageId": INVOICE_ID, "to": ["accounts@acme.example"], "forwardMessage": "Please pay this."}
    outputs = run_block(GmailForwardBlock(), data, google(GMAIL_TOKEN))
    (sent,) = gmail.sent
    assert outputs == [("messageId", sent["id"]), ("threadId", sent["id"]), ("status", "forwarded")]
    get, download, send = gmail.requests
    assert get["query"]["format"] == ["full"]
    assert download["path"].startswith(f"/gmail/v1/users/me/messages/{INVOICE_ID}/attachments/")
    assert "threadId" not in send["body"]  # as AutoGPT: a new thread
    assert sent["to"] == ["accounts@acme.example"] and sent["subject"] == "Fwd: Invoice 1042 and agenda"
    assert sent["body"] == (
        "Please pay this.\n\n\n---------- Forwarded message ---------\n"
        "From: Sam Rivera <sam@vendor.example>\nDate: Mon, 02 Jun 2025 16:40:00 +0000\n"
        "Subject: Invoice 1042 and agenda\nTo: alex@acme.example\n\n\n"
        "Please find invoice 1042 attached.\n"
    )
    assert sent["attachments"] == [
        {"filename": "invoice-1042.pdf", "content_type": "application/octet-stream", "data": INVOICE_PDF}
    ]


def test_gmail_forward_options(gmail: GmailStyleServer) -> None:
    extra = "data:text/csv;base64," + base64.b64encode(b"a,b\n").decode()
    data = {
        "messageId": INVOICE_ID,
        "to": ["a@example.com"],
        "cc": ["b@example.com"],
        "subject": "Fwd: Fwd: invoice",
        "includeAttachments": False,
        "content_type": "plain",
        "additionalAttachments": [extra],
    }
    run_block(GmailForwardBlock(), data, google(GMAIL_TOKEN))
    (sent,) = gmail.sent
    assert sent["subject"] == "Fwd: Fwd: invoice" and sent["cc"] == ["b@example.com"]
    assert sent["content_type"] == "text/plain"
    assert sent["attachments"] == [{"filename": "file1.csv", "content_type": "text/csv", "data": b"a,b\n"}]
    assert not any("/attachments/" in r["path"] for r in gmail.requests)


def test_gmail_forward_needs_a_recipient(gmail: GmailStyleServer) -> None:
    [(pin, message)] = run_block(
        GmailForwardBlock(), {"messageId": INVOICE_ID, "to": [""]}, google(GMAIL_TOKEN)
    )
    assert (pin, message) == ("error", "At least one recipient is required for forwarding")
    assert not gmail.requests


# --- GoogleCalendarReadEventsBlock -------------------------------------------------------------------
def calendar(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return run_block(GoogleCalendarReadEventsBlock(), data, google(GMAIL_TOKEN))


def test_calendar_reads_the_window_like_autogpt(gmail: GmailStyleServer) -> None:
    outputs = calendar({"start_time": "2025-06-04T00:00:00Z", "time_range_days": 2})
    *each, (pin, events) = outputs
    assert pin == "events" and each == [("event", e) for e in events]
    assert [(e["title"], e["start_time"]) for e in events] == [
        ("Board prep", "2025-06-04 10:00"),  # in the event's own offset (+01:00), as AutoGPT
        ("Partnership sync", "2025-06-04 15:00"),
        ("Company offsite", "2025-06-05"),
        ("Partnership sync", "2025-06-05 15:00"),
    ]
    board, sync, offsite, _ = events
    assert board["location"] == "Room 4" and board["has_video_call"] is False and board["video_link"] is None
    assert sync == {
        "id": "pship0sync0daily_20250604T150000Z",
        "title": "Partnership sync",
        "start_time": "2025-06-04 15:00",
        "end_time": "2025-06-04 15:30",
        "is_all_day": False,
        "location": None,
        "description": "Daily check-in on the Q3 partnership.",
        "organizer": USER_EMAIL,
        "attendees": [USER_EMAIL, "priya@acme.example", EXTERNAL_ATTENDEE],
        "has_video_call": True,
        "video_link": SYNC_MEET_LINK,
        "calendar_link": sync["calendar_link"],
        "is_recurring": False,  # an expanded instance carries recurringEventId, not recurrence
    }
    assert sync["calendar_link"].startswith("https://www.google.com/calendar/event?eid=")
    assert (
        offsite["is_all_day"] is True and offsite["end_time"] == "2025-06-06" and offsite["attendees"] == []
    )
    (request,) = gmail.requests
    assert (request["method"], request["path"]) == ("GET", "/calendar/v3/calendars/primary/events")
    assert {k: v[0] for k, v in request["query"].items()} == {
        "timeMin": "2025-06-04T00:00:00+00:00",
        "timeMax": "2025-06-06T00:00:00+00:00",
        "maxResults": "10",
        "singleEvents": "true",
        "orderBy": "startTime",
        "showDeleted": "false",
        "showHiddenInvitations": "false",
        "alt": "json",
    }


def test_calendar_filters_and_pages(gmail: GmailStyleServer) -> None:
    window = {"start_time": "2025-06-04T00:00:00Z", "time_range_days": 1}
    hidden = calendar({**window, "include_declined_events": True})
    assert [e["title"] for e in hidden[-1][1]] == ["Board prep", "Vendor demo", "Partnership sync"]
    assert gmail.requests[-1]["query"]["showHiddenInvitations"] == ["true"]
    assert [e["title"] for e in calendar({**window, "search_term": "board"})[-1][1]] == ["Board prep"]
    assert gmail.requests[-1]["query"]["q"] == ["board"]
    first = calendar({**window, "max_events": 1})
    assert first[0] == ("next_page_token", "1") and [e["title"] for e in first[-1][1]] == ["Board prep"]
    rest = calendar({**window, "max_events": 1, "page_token": "1"})
    assert [p for p, _ in rest] == ["event", "events"] and rest[-1][1][0]["title"] == "Partnership sync"
    assert gmail.requests[-1]["query"]["pageToken"] == ["1"]
    # another calendar id goes in the path
    [(pin, message)] = calendar({**window, "calendar_id": "team@group.calendar.google.com"})
    assert gmail.requests[-1]["path"] == "/calendar/v3/calendars/team%40group.calendar.google.com/events"
    assert (pin, message) == ("error", "Google Calendar read failed: HTTP 404: Not Found")


def test_calendar_time_without_an_offset_is_refused_like_google(gmail: GmailStyleServer) -> None:
    # As AutoGPT, the start time goes out as it is; Google wants RFC 3339 with an offset.
    [(pin, message)] = calendar({"start_time": "2025-06-04T00:00:00"})
    assert (pin, message) == ("error", "Google Calendar read failed: HTTP 400: Bad Request")


def test_calendar_unreachable_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_GOOGLE_API_URL", "http://127.0.0.1:9")
    [(pin, message)] = calendar({"start_time": "2025-06-04T00:00:00Z"})
    assert pin == "error" and "could not reach the Google Calendar API at http://127.0.0.1:9" in message
    assert GMAIL_TOKEN not in message


# --- the Smart Meeting Prep export -------------------------------------------------------------------
@pytest.mark.parametrize("compiled", [False, True], ids=["reference", "compiled"])
def test_smart_meeting_prep_export_briefs_on_tomorrows_meeting(
    servers: Any,  # noqa: F811
    gmail_server: GmailStyleServer,
    instance: DagsterInstance,  # noqa: F811
    compiled: bool,
) -> None:
    llm, _ = servers
    outputs = _run(MEETING_PREP, llm, compiled, instance)
    assert outputs == {
        "Meeting Prep Report Text": ["Jordan Lee (PartnerCo, Head of Partnerships): ask about Lisbon."],
        "Email Status": ["sent"],
    }
    calendar_request, listing, *gets, send = gmail_server.requests
    # tomorrow (GetCurrentDate with offset -1), midnight UTC, for one day
    time_min = calendar_request["query"]["timeMin"][0]
    assert time_min.endswith("T00:00:00+00:00") and calendar_request["query"]["maxResults"] == ["10"]
    # the one external attendee is looked up in Gmail
    assert listing["query"]["q"] == [
        f'from:{EXTERNAL_ATTENDEE} OR to:{EXTERNAL_ATTENDEE} OR "{EXTERNAL_ATTENDEE}"'
    ]
    assert listing["query"]["maxResults"] == ["30"]
    assert [g["path"].rsplit("/", 1)[1] for g in gets] == [KICKOFF_REPLY_ID, KICKOFF_ID]
    # what Gmail returned reached the LLM that identifies the attendee
    [identify] = [r for r in llm.requests if "Identify the owner of" in str(r["body"]["messages"])]
    assert "Lisbon until the 10th" in str(identify["body"]["messages"])
    (sent,) = gmail_server.sent
    assert send["path"] == "/gmail/v1/users/me/messages/send"
    assert sent["to"] == [USER_EMAIL] and sent["subject"] == "Attendee Backgrounds for your Meeting Tomorrow"
    assert sent["content_type"] == "text/html" and "Jordan Lee: ask about Lisbon." in sent["body"]
