"""The dead-letter list: a bounded record per entry that could not become a run, and the list itself
kept to a maximum length.

A record never embeds a whole entry (entries may be megabytes, or not text at all): it holds an
excerpt of the entry's first bytes, escaped so that any bytes read back as text, the entry's size in
bytes, and a reason cut to a readable length.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

DEFAULT_DEAD_LETTER_MAX = 10_000
EXCERPT_BYTES = 1_000
MAX_REASON_CHARS = 1_000

# One atomic step: acknowledge the entry and, only if it was still pending (so that two listeners
# settling the same entry record it once), record it and trim the list; then delete the entry.
# KEYS: stream, dead-letter list. ARGV: group, entry id, record, list max length.
DEAD_LETTER_SCRIPT = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
end
redis.call('XDEL', KEYS[1], ARGV[2])
return acked
"""


class DeadLetter(BaseModel):
    """A record in `<prefix>:dead_letter`: `raw` is an excerpt (at most `EXCERPT_BYTES` of the entry,
    non-UTF-8 bytes as `\\xNN` escapes), `size` the entry's length in bytes, `truncated` whether `raw`
    is only its beginning."""

    model_config = ConfigDict(extra="allow")

    raw: str
    reason: str
    entry_id: str
    at: str
    stream: str = "requests"
    size: int = 0
    truncated: bool = False


def excerpt(raw: bytes) -> tuple[str, bool]:
    """The first `EXCERPT_BYTES` of an entry as text that any JSON reader accepts, and whether it was
    cut. Undecodable bytes become `\\xNN`; a multi-byte character cut at the edge is escaped too."""
    head = raw[:EXCERPT_BYTES]
    return head.decode("utf-8", errors="backslashreplace"), len(raw) > EXCERPT_BYTES


def bounded_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


def record_for(raw: bytes, size: int, reason: str, entry_id: str, at: str, stream: str) -> DeadLetter:
    """`raw` is what the consumer kept of the entry (all of it, or already an excerpt); `size` is the
    entry's real length in bytes."""
    text, truncated = excerpt(raw)
    return DeadLetter(
        raw=text,
        reason=bounded_reason(reason),
        entry_id=entry_id,
        at=at,
        stream=stream,
        size=size,
        truncated=truncated or size > len(raw),
    )


def parse_record(text: str) -> DeadLetter:
    """A stored record; anything else someone pushed on the list is still shown, bounded."""
    try:
        return DeadLetter.model_validate_json(text)
    except ValueError:
        shown, truncated = excerpt(text.encode("utf-8", errors="surrogateescape"))
        return DeadLetter(
            raw=shown, reason="(not a dead-letter record)", entry_id="", at="", truncated=truncated
        )


def as_text(value: Any) -> str:
    return value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else str(value)
