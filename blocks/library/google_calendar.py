"""GoogleCalendarReadEventsBlock (AutoGPT blocks/google/calendar.py): upcoming events of a Google Calendar.

Like AutoGPT it uses google-api-python-client: `build("calendar", "v3", ...)` from the bundled static
discovery document, then `events().list(calendarId, timeMin=start_time, timeMax=start_time +
time_range_days, maxResults=max_events, singleEvents=True, orderBy="startTime", showDeleted=False,
showHiddenInvitations=include_declined_events[, pageToken][, q=search_term])`, i.e.
GET `<base>/calendar/v3/calendars/<calendar_id>/events`. Each event becomes AutoGPT's `CalendarEvent`
(times as "YYYY-MM-DD HH:MM" in the event's own offset, or the date of an all-day event; attendee
emails; the video link from conferenceData). It yields `next_page_token` when there is one, every
event on `event`, then the list on `events`.

The token, the base URL (AGENTFLOW_GOOGLE_API_URL, default https://www.googleapis.com, the calendar
API's root) and the address checks are the Gmail blocks' (blocks/library/gmail.py). As there, a failure
is yielded on `error` without the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, Field

from blocks.library.gmail import (
    GOOGLE_OAUTH,
    GOOGLE_TEST_ADDRESS,
    TEST_CREDENTIALS,
    TEST_TOKEN,
    TRANSIENT_ERRORS,
    GoogleApiBlock,
    _credentials_input,
    _refusal_tests,
)
from blocks.provider_http import ProviderError, mock_wire
from blocks.sdk import BlockCategory, BlockInput, BlockOutput, BlockSelfTest, RetryPolicy, RunContext

DEFAULT_CALENDAR_URL = "https://www.googleapis.com"
CALENDAR_READONLY_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"


class CalendarEvent(BaseModel):
    """AutoGPT's structured representation of a Google Calendar event."""

    id: str
    title: str
    start_time: str
    end_time: str
    is_all_day: bool
    location: str | None
    description: str | None
    organizer: str | None
    attendees: list[str]
    has_video_call: bool
    video_link: str | None
    calendar_link: str
    is_recurring: bool


def _clock(value: str) -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")


def format_events(items: list[dict[str, Any]]) -> list[CalendarEvent]:
    """AutoGPT's `_format_events` (a timed event without a parseable dateTime is a ValueError)."""
    events = []
    for item in items:
        start, end = item.get("start", {}), item.get("end", {})
        is_all_day = "date" in start
        if is_all_day:
            start_time, end_time = start.get("date", ""), end.get("date", "")
        else:
            start_time, end_time = _clock(start.get("dateTime", "")), _clock(end.get("dateTime", ""))
        video_link: str | None = None
        has_video_call = False
        conference = item.get("conferenceData") or {}
        if conference.get("conferenceUrl"):
            has_video_call, video_link = True, conference["conferenceUrl"]
        else:
            for entry in conference.get("entryPoints", []):
                if entry.get("entryPointType") == "video":
                    has_video_call, video_link = True, entry.get("uri")
                    break
        events.append(
            CalendarEvent(
                id=item.get("id", ""),
                title=item.get("summary", "Untitled Event"),
                start_time=start_time,
                end_time=end_time,
                is_all_day=is_all_day,
                location=item.get("location"),
                description=item.get("description"),
                organizer=item.get("organizer", {}).get("email"),
                attendees=[a["email"] for a in item.get("attendees", []) if a.get("email")],
                has_video_call=has_video_call,
                video_link=video_link,
                calendar_link=item.get("htmlLink", ""),
                is_recurring=bool(item.get("recurrence")),
            )
        )
    return events


# --- self-test wire -------------------------------------------------------------------------------
_TEST_ITEM = {
    "id": "event1id",
    "summary": "Team Meeting",
    "start": {"dateTime": "2025-06-05T10:00:00Z", "timeZone": "UTC"},
    "end": {"dateTime": "2025-06-05T11:00:00Z", "timeZone": "UTC"},
    "location": "Conference Room A",
    "description": "Weekly team sync",
    "organizer": {"email": "manager@example.com"},
    "attendees": [{"email": "colleague1@example.com"}, {"email": "colleague2@example.com"}],
    "conferenceData": {"entryPoints": [{"entryPointType": "video", "uri": "https://meet.google.com/abc"}]},
    "htmlLink": "https://calendar.google.com/calendar/event?eid=event1id",
    "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=10"],
}
_TEST_EVENT = {
    "id": "event1id",
    "title": "Team Meeting",
    "start_time": "2025-06-05 10:00",
    "end_time": "2025-06-05 11:00",
    "is_all_day": False,
    "location": "Conference Room A",
    "description": "Weekly team sync",
    "organizer": "manager@example.com",
    "attendees": ["colleague1@example.com", "colleague2@example.com"],
    "has_video_call": True,
    "video_link": "https://meet.google.com/abc",
    "calendar_link": "https://calendar.google.com/calendar/event?eid=event1id",
    "is_recurring": True,
}


def _fake_calendar(request: httpx.Request) -> httpx.Response:
    """events.list like Google for the self-tests: the bearer token, then the window AutoGPT asks for."""
    if request.headers.get("Authorization") != f"Bearer {TEST_TOKEN}":
        return httpx.Response(401, json={"error": {"code": 401, "message": "Invalid Credentials"}})
    if request.method != "GET" or request.url.path != "/calendar/v3/calendars/primary/events":
        return httpx.Response(404, json={"error": {"code": 404, "message": "Not Found"}})
    params = request.url.params
    expected = {
        "timeMin": "2025-06-04T00:00:00+00:00",
        "timeMax": "2025-06-11T00:00:00+00:00",
        "maxResults": "5",
        "singleEvents": "true",
        "orderBy": "startTime",
    }
    if any(params.get(k) != v for k, v in expected.items()):
        return httpx.Response(400, json={"error": {"code": 400, "message": f"Bad Request: {params}"}})
    return httpx.Response(200, json={"kind": "calendar#events", "items": [_TEST_ITEM]})


_SELF_TEST_INPUT = {
    "calendar_id": "primary",
    "max_events": 5,
    "start_time": "2025-06-04T00:00:00Z",
    "time_range_days": 7,
}
_WIRE = mock_wire(lambda: _fake_calendar, GOOGLE_TEST_ADDRESS)


class GoogleCalendarReadEventsBlock(GoogleApiBlock):
    id = "80bc3ed1-e9a4-449e-8163-a8fc86f74f6a"
    description = "Retrieves upcoming events from a Google Calendar with filtering options"
    categories = frozenset({BlockCategory.DATA})
    credentials = GOOGLE_OAUTH
    repeated_output_pins = frozenset({"event"})
    # Reading is idempotent: the provider's transient failures are retried.
    retry_policy = RetryPolicy(attempts=3, retry_on_errors=TRANSIENT_ERRORS)
    api_name = "calendar"
    api_version = "v3"
    service_path = "calendar/v3/"
    api_label = "Google Calendar API"
    default_api_url = DEFAULT_CALENDAR_URL
    oauth_scopes = (CALENDAR_READONLY_SCOPE,)

    class Input(BlockInput):
        credentials: Any = _credentials_input(CALENDAR_READONLY_SCOPE)
        calendar_id: str = Field(
            default="primary", description="Calendar ID (use 'primary' for your main calendar)"
        )
        max_events: int = Field(default=10, description="Maximum number of events to retrieve")
        start_time: datetime = Field(
            default_factory=lambda: datetime.now(tz=UTC),
            description="Retrieve events starting from this time",
        )
        time_range_days: int = Field(default=30, description="Number of days to look ahead for events")
        search_term: str | None = Field(default=None, description="Optional search term to filter events by")
        page_token: str | None = Field(
            default=None,
            description="Page token from previous request to get the next batch of events. You can use "
            "this if you have lots of events you want to process in a loop",
        )
        include_declined_events: bool = Field(default=False, description="Include events you've declined")

    class Output(BlockOutput):
        events: list[CalendarEvent] = Field(
            default_factory=list, description="List of calendar events in the requested time range"
        )
        event: CalendarEvent = Field(description="One of the calendar events in the requested time range")
        next_page_token: str | None = Field(
            default=None, description="Token for retrieving the next page of events if more exist"
        )
        error: str = Field(default="", description="Error message if the request failed")

    self_tests = (
        BlockSelfTest(
            input=_SELF_TEST_INPUT,
            output=[("event", _TEST_EVENT), ("events", [_TEST_EVENT])],
            mocks=_WIRE,
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        *_refusal_tests(_SELF_TEST_INPUT, _WIRE),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self._endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        end_time = input.start_time + timedelta(days=input.time_range_days)
        params: dict[str, Any] = {
            "calendarId": input.calendar_id,
            "timeMin": input.start_time.isoformat(),
            "timeMax": end_time.isoformat(),
            "maxResults": input.max_events,
            "singleEvents": True,
            "orderBy": "startTime",
            "showDeleted": False,
            "showHiddenInvitations": input.include_declined_events,
        }
        if input.page_token:
            params["pageToken"] = input.page_token
        if input.search_term:
            params["q"] = input.search_term

        def read(service: Any) -> dict[str, Any]:
            return service.events().list(**params).execute()

        try:
            result = await self._call(ctx, endpoint, read)
            events = format_events(result.get("items", []))
        except Exception as exc:
            yield "error", self._failure(endpoint, "Google Calendar read", exc)
            return
        if next_page_token := result.get("nextPageToken"):
            yield "next_page_token", next_page_token
        for event in events:
            yield "event", event
        yield "events", events
