"""The dead-letter list: a bounded record per entry that could not become a run, and the list itself
kept to a maximum length.

A record never embeds a whole entry (entries may be megabytes, or not text at all): it holds an
excerpt, the entry's first `EXCERPT_CHARS` characters with bytes that are not UTF-8 written as
`\\xNN`, the entry's size in bytes, and a reason cut to `MAX_REASON_CHARS`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

DEFAULT_DEAD_LETTER_MAX = 10_000
EXCERPT_CHARS = 1_000
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
    """A record in `<prefix>:dead_letter`: `raw` is an excerpt (see the module docstring), `size` the
    entry's length in bytes, `truncated` whether `raw` is only its beginning."""

    model_config = ConfigDict(extra="allow")

    raw: str
    reason: str
    entry_id: str
    at: str
    stream: str = "requests"
    size: int = 0
    truncated: bool = False


def excerpt(raw: bytes) -> tuple[str, bool]:
    """The first `EXCERPT_CHARS` characters of an entry, and whether that is not all of it. Bytes that
    are not UTF-8 become `\\xNN` (a multi-byte character cut at the edge too), so any bytes read back
    as text. Cutting an excerpt again changes nothing."""
    text = raw[: EXCERPT_CHARS * 4].decode("utf-8", errors="backslashreplace")
    return text[:EXCERPT_CHARS], len(text) > EXCERPT_CHARS or len(raw) > EXCERPT_CHARS * 4


def bounded_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


def record_for(text: str, size: int, reason: str, entry_id: str, at: str, stream: str) -> DeadLetter:
    """`text` is what the consumer kept of the entry (all of it, or already an excerpt); `size` is the
    entry's real length in bytes."""
    shown = text[:EXCERPT_CHARS]
    return DeadLetter(
        raw=shown,
        reason=bounded_reason(reason),
        entry_id=entry_id,
        at=at,
        stream=stream,
        size=size,
        truncated=len(shown) < len(text) or size > len(shown.encode("utf-8", errors="surrogateescape")),
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
