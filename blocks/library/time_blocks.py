"""Time blocks: GetCurrentDate, GetCurrentDateAndTime and CountdownTimer (AutoGPT blocks/time_blocks.py).

`format_type` is AutoGPT's discriminated union: {"discriminator": "strftime", "format", "timezone",
"use_user_timezone"} or {"discriminator": "iso8601", "timezone", "use_user_timezone", ...}. A plain string
is taken as a strftime format, a dict without a discriminator as strftime, and the older flat `format`
pin is honoured when `format_type` is not given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, Field

from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    RunContext,
)


def _timezone(name: str, use_user_timezone: bool, ctx: RunContext) -> tzinfo:
    """The format's timezone, or the user's when asked and known (ctx.settings["user_timezone"])."""
    if use_user_timezone and ctx.settings.get("user_timezone"):
        name = str(ctx.settings["user_timezone"])
    if name in ("UTC", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def _with_discriminator(value: Any) -> Any:
    if isinstance(value, str):
        return {"discriminator": "strftime", "format": value}
    if isinstance(value, dict) and "discriminator" not in value:
        return {**value, "discriminator": "strftime"}
    return value


def _parse_count(name: str, value: int | str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from exc


class _TimezoneFields(BaseModel):
    timezone: str = "UTC"
    use_user_timezone: bool = False


# --- GetCurrentDateBlock -----------------------------------------------------------------------------


class DateStrftimeFormat(_TimezoneFields):
    discriminator: Literal["strftime"] = "strftime"
    format: str = "%Y-%m-%d"


class DateISO8601Format(_TimezoneFields):
    discriminator: Literal["iso8601"]


DateFormat = Annotated[
    DateStrftimeFormat | DateISO8601Format,
    Field(discriminator="discriminator"),
    BeforeValidator(_with_discriminator),
]


class GetCurrentDateBlock(Block):
    id = "b29c1b50-5d0e-4d9f-8f9d-1b0e6fcbf0b1"
    repeated_output_pins = frozenset()
    description = "This block outputs the current date with an optional offset."
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        trigger: str = Field(description="Trigger any data to output the current date")
        offset: int | str = Field(default=0, description="Offset in days from the current date")
        format_type: DateFormat = Field(
            default_factory=DateStrftimeFormat, description="strftime with a custom format, or ISO 8601"
        )
        format: str | None = Field(default=None, description="Legacy strftime format (old exports)")

    class Output(BlockOutput):
        date: str = Field(description="Current date in the specified format (default: YYYY-MM-DD)")

    self_tests = (
        BlockSelfTest(
            input={"trigger": "Hello", "offset": "7"},
            output=[
                (
                    "date",
                    lambda t: (
                        abs(datetime.now(UTC).date() - datetime.strptime(t, "%Y-%m-%d").date())
                        <= timedelta(days=8)
                    ),
                )
            ],
        ),
        BlockSelfTest(
            input={
                "trigger": "Hello",
                "offset": "7",
                "format_type": {"discriminator": "strftime", "format": "%m/%d/%Y"},
            },
            output=[
                (
                    "date",
                    lambda t: (
                        abs(datetime.now(UTC).date() - datetime.strptime(t, "%m/%d/%Y").date())
                        <= timedelta(days=8)
                    ),
                )
            ],
        ),
        BlockSelfTest(
            input={
                "trigger": "Hello",
                "offset": "0",
                "format_type": {"discriminator": "iso8601", "timezone": "UTC"},
            },
            output=[("date", lambda t: len(t) == 10 and t[4] == "-" and t[7] == "-")],
        ),
        BlockSelfTest(
            input={"trigger": "go", "offset": 0, "format": "%Y"},
            output=[("date", lambda t: t == str(datetime.now(UTC).year))],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            offset = int(input.offset)
        except ValueError:
            offset = 0
        fmt = input.format_type
        if input.format and "format_type" not in input.model_fields_set:
            fmt = DateStrftimeFormat(format=input.format)
        try:
            tz = _timezone(fmt.timezone, fmt.use_user_timezone, ctx)
        except ValueError as exc:
            yield "error", str(exc)
            return
        day = datetime.now(tz) - timedelta(days=offset)
        if isinstance(fmt, DateISO8601Format):
            yield "date", day.date().isoformat()
        else:
            yield "date", day.strftime(fmt.format)


# --- GetCurrentDateAndTimeBlock ------------------------------------------------------------------------


class StrftimeFormat(_TimezoneFields):
    discriminator: Literal["strftime"] = "strftime"
    format: str = "%Y-%m-%d %H:%M:%S"


class ISO8601Format(_TimezoneFields):
    discriminator: Literal["iso8601"]
    include_microseconds: bool = False


DateTimeFormat = Annotated[
    StrftimeFormat | ISO8601Format,
    Field(discriminator="discriminator"),
    BeforeValidator(_with_discriminator),
]


class GetCurrentDateAndTimeBlock(Block):
    id = "716a67b3-6760-42e7-86dc-18645c6e00fc"
    repeated_output_pins = frozenset()
    description = "This block outputs the current date and time."
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        trigger: str = Field(description="Trigger any data to output the current date and time")
        format_type: DateTimeFormat = Field(
            default_factory=StrftimeFormat, description="strftime with a custom format, or ISO 8601"
        )
        format: str | None = Field(default=None, description="Legacy strftime format (old exports)")

    class Output(BlockOutput):
        date_time: str = Field(description="Current date and time in the specified format")

    self_tests = (
        BlockSelfTest(
            input={"trigger": "Hello"},
            output=[
                (
                    "date_time",
                    lambda t: (
                        abs(datetime.now(UTC) - datetime.strptime(t + "+00:00", "%Y-%m-%d %H:%M:%S%z"))
                        < timedelta(seconds=10)
                    ),
                )
            ],
        ),
        BlockSelfTest(
            input={"trigger": "Hello", "format_type": {"discriminator": "strftime", "format": "%Y/%m/%d"}},
            output=[
                (
                    "date_time",
                    lambda t: (
                        abs(datetime.now(UTC).date() - datetime.strptime(t, "%Y/%m/%d").date())
                        <= timedelta(days=1)
                    ),
                )
            ],
        ),
        BlockSelfTest(
            input={
                "trigger": "Hello",
                "format_type": {"discriminator": "iso8601", "timezone": "UTC", "include_microseconds": False},
            },
            output=[
                (
                    "date_time",
                    lambda t: abs(datetime.now(UTC) - datetime.fromisoformat(t)) < timedelta(seconds=10),
                )
            ],
        ),
        BlockSelfTest(
            input={"trigger": "x", "format_type": {"discriminator": "strftime", "timezone": "Mars/Olympus"}},
            output=[("error", "unknown timezone 'Mars/Olympus'")],
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        fmt = input.format_type
        if input.format and "format_type" not in input.model_fields_set:
            fmt = StrftimeFormat(format=input.format)
        try:
            tz = _timezone(fmt.timezone, fmt.use_user_timezone, ctx)
        except ValueError as exc:
            yield "error", str(exc)
            return
        now = datetime.now(tz)
        if isinstance(fmt, ISO8601Format):
            yield (
                "date_time",
                now.isoformat() if fmt.include_microseconds else now.isoformat(timespec="seconds"),
            )
        else:
            yield "date_time", now.strftime(fmt.format)


# --- CountdownTimerBlock -----------------------------------------------------------------------------


class CountdownTimerBlock(Block):
    id = "d67a9c52-5e4e-11e2-bcfd-0800200c9a71"
    repeated_output_pins = frozenset({"output_message"})
    description = "This block triggers after a specified duration."
    categories = frozenset({BlockCategory.TEXT})

    class Input(BlockInput):
        input_message: Any = Field(default="timer finished", description="Message to output after the timer")
        seconds: int | str = Field(default=0, description="Duration in seconds")
        minutes: int | str = Field(default=0, description="Duration in minutes")
        hours: int | str = Field(default=0, description="Duration in hours")
        days: int | str = Field(default=0, description="Duration in days")
        repeat: int = Field(default=1, description="Number of times to repeat the timer")

    class Output(BlockOutput):
        output_message: Any = Field(description="Message after the timer finishes")

    self_tests = (
        BlockSelfTest(
            input={"seconds": 1},
            output=[("output_message", "timer finished")],
            mocks={"_sleep": lambda s: _no_sleep(s)},
        ),
        BlockSelfTest(
            input={"input_message": "Custom message"}, output=[("output_message", "Custom message")]
        ),
        BlockSelfTest(
            input={"input_message": "tick", "seconds": "15", "minutes": 1, "repeat": 2},
            output=[("output_message", "tick"), ("output_message", "tick")],
            mocks={"_sleep": lambda s: _no_sleep(s, expect=75)},
        ),
        BlockSelfTest(
            input={"seconds": "soon"}, output=[("error", "seconds must be a whole number, got 'soon'")]
        ),
    )

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            total = (
                _parse_count("seconds", input.seconds)
                + _parse_count("minutes", input.minutes) * 60
                + _parse_count("hours", input.hours) * 3600
                + _parse_count("days", input.days) * 86400
            )
        except ValueError as exc:
            yield "error", str(exc)
            return
        for _ in range(input.repeat):
            if total > 0:
                await self._sleep(total)
            yield "output_message", input.input_message


async def _no_sleep(seconds: float, expect: float | None = None) -> None:
    """Self-test stand-in for CountdownTimerBlock._sleep: checks the duration, does not wait."""
    if expect is not None and seconds != expect:
        raise AssertionError(f"timer slept {seconds}s, expected {expect}s")
