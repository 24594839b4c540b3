"""One Redis stream read through one consumer group, as bytes: add, read (reclaimed entries first,
then new ones), acknowledge, dead-letter, trim. The request queue (queue.py) runs one for execution
requests and one for cancels."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from agent_defs.requests.dead_letters import DEAD_LETTER_SCRIPT, as_text, excerpt

if TYPE_CHECKING:
    import redis

# XAUTOCLAIM examines at most 10 x COUNT pending entries per call; a few calls cover a large pending
# list without letting one read() scan it without bound.
MAX_RECLAIM_SCANS = 10


class PendingEntry(NamedTuple):
    """An entry read by some consumer and not yet acknowledged."""

    entry_id: str
    raw: str


class _Entry(NamedTuple):
    entry_id: str
    raw: bytes
    redelivered: bool
    error: str | None = None  # the entry has no field the queue reads


class DecodedEntry(NamedTuple):
    """An entry's text, or (when it is too long or not UTF-8) an excerpt and why it cannot be read."""

    text: str
    size: int
    error: str | None


def decode_entry(raw: bytes, max_bytes: int, error: str | None = None) -> DecodedEntry:
    if error is not None:
        return DecodedEntry(excerpt(raw)[0], len(raw), error)
    if len(raw) > max_bytes:
        shown, _ = excerpt(raw)
        return DecodedEntry(shown, len(raw), f"entry is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        return DecodedEntry(raw.decode("utf-8"), len(raw), None)
    except UnicodeDecodeError as exc:
        shown, _ = excerpt(raw)
        return DecodedEntry(shown, len(raw), f"entry is not UTF-8: {exc.reason} at byte {exc.start}")


def _text(value: Any) -> str:
    return as_text(value)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", errors="surrogateescape")


def bytes_client(client: redis.Redis) -> redis.Redis:
    """A client on the same server whose replies are bytes. A client that decodes replies raises on
    the first entry that is not UTF-8, before the queue can set that one entry aside; so the queue
    always reads bytes and decodes each entry itself."""
    import redis as redis_module

    pool = client.connection_pool
    if not pool.connection_kwargs.get("decode_responses"):
        return client
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis_module.Redis(
        connection_pool=redis_module.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


class GroupStream:
    """One stream read through one consumer group: add, read (reclaimed first, then new), ack."""

    def __init__(self, client: redis.Redis, key: str, field: str, group: str, reclaim_idle_ms: int):
        self.client = client
        self.key = key
        self.field = field
        self.group = group
        self.reclaim_idle_ms = reclaim_idle_ms
        self._group_ready = False

    def add(self, raw: str | bytes) -> str:
        return _text(self.client.xadd(self.key, {self.field: raw}))

    def read(self, consumer: str, count: int, block_ms: int | None) -> list[_Entry]:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        entries = self._with_group(lambda: self._reclaim(consumer, count))
        if len(entries) < count:
            # Block only when nothing was reclaimed: reclaimed work is ready now.
            block = block_ms if not entries else None
            entries += self._with_group(lambda: self._read_new(consumer, count - len(entries), block))
        return entries

    def _reclaim(self, consumer: str, count: int) -> list[_Entry]:
        found: list[_Entry] = []
        start = "0-0"
        for _ in range(MAX_RECLAIM_SCANS):
            reply = self.client.xautoclaim(
                self.key, self.group, consumer, self.reclaim_idle_ms, start_id=start, count=count - len(found)
            )
            cursor, claimed = _text(reply[0]), reply[1]
            # Redis 6.2 reports entries deleted while pending as (None, None); 7 drops them itself.
            found += [self._entry(eid, fields, True) for eid, fields in claimed if eid is not None]
            if len(found) >= count or cursor == "0-0":
                break
            start = cursor
        return found

    def _read_new(self, consumer: str, count: int, block_ms: int | None) -> list[_Entry]:
        reply = self.client.xreadgroup(self.group, consumer, {self.key: ">"}, count=count, block=block_ms)
        if not reply:
            return []
        # RESP2 (the default): [[stream, entries]]; RESP3 clients get {stream: [entries]}.
        batches = [v[0] for v in reply.values() if v] if isinstance(reply, Mapping) else [r[1] for r in reply]
        return [
            self._entry(eid, fields, False) for batch in batches for eid, fields in batch if eid is not None
        ]

    def delivery_counts(self, entry_ids: list[str]) -> dict[str, int]:
        """How many times each pending entry has been handed out (XPENDING's delivery counter)."""
        if not entry_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for eid in entry_ids:
            pipe.xpending_range(self.key, self.group, min=eid, max=eid, count=1)
        counts = {}
        for eid, rows in zip(entry_ids, pipe.execute(), strict=True):
            if rows:
                counts[eid] = int(rows[0]["times_delivered"])
        return counts

    def _entry(self, entry_id: Any, fields: Mapping[Any, Any] | None, redelivered: bool) -> _Entry:
        raw = self._raw(fields)
        if raw is not None:
            return _Entry(_text(entry_id), raw, redelivered)
        names = ", ".join(repr(_text(k))[:60] for k in list(fields or {})[:5]) or "none"
        # Keep what the producer sent, so that the dead letter shows it.
        sent = json.dumps({_text(k): _text(v) for k, v in (fields or {}).items()}).encode()
        return _Entry(
            _text(entry_id), sent, redelivered, f"entry has no field {self.field!r} (its fields: {names})"
        )

    def _raw(self, fields: Mapping[Any, Any] | None) -> bytes | None:
        for name, value in (fields or {}).items():
            if _text(name) == self.field:
                return _as_bytes(value)
        return None

    def ack(self, entry_ids: Iterable[str]) -> int:
        ids = list(entry_ids)
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=True)
        self.queue_ack(pipe, ids)
        acked, _deleted = pipe.execute()
        return int(acked)

    def queue_ack(self, pipe: Any, ids: list[str]) -> None:
        # Deleting acked entries keeps XLEN equal to "not yet acknowledged" and the stream bounded.
        pipe.xack(self.key, self.group, *ids)
        pipe.xdel(self.key, *ids)

    def pending(self, limit: int) -> list[PendingEntry]:
        rows = self._with_group(
            lambda: self.client.xpending_range(self.key, self.group, min="-", max="+", count=limit)
        )
        if not rows:
            return []
        ids = [_text(row["message_id"]) for row in rows]
        pipe = self.client.pipeline(transaction=False)
        for eid in ids:
            pipe.xrange(self.key, min=eid, max=eid, count=1)
        found = []
        for eid, hit in zip(ids, pipe.execute(), strict=True):
            if hit:  # an entry deleted while pending has nothing left to launch
                found.append(
                    PendingEntry(
                        eid, (self._raw(hit[0][1]) or b"").decode("utf-8", errors="backslashreplace")
                    )
                )
        return found

    def depth(self) -> int:
        return int(self.client.xlen(self.key))

    def dead_letter(self, dead_letter_key: str, entry_id: str, record: str, max_length: int) -> bool:
        """Record and remove an entry in one atomic step; False when it was no longer pending (another
        consumer settled it first), in which case nothing is recorded twice."""
        return bool(
            self.client.eval(
                DEAD_LETTER_SCRIPT, 2, self.key, dead_letter_key, self.group, entry_id, record, max_length
            )
        )

    def trim(self) -> int:
        """Remove acknowledged entries left in the stream: XTRIM MINID to the oldest entry that some
        group still needs (pending, or not yet delivered). Returns how many were removed."""
        # Our group first: created from id 0, it needs every entry that is already there, even when
        # another tool's group has read them all.
        groups = self._with_group(lambda: self.client.xinfo_groups(self.key))
        keep_from: list[tuple[int, int]] = []
        for group in groups:
            name = _text(group["name"])
            summary = self.client.xpending(self.key, name)
            if summary and summary.get("pending"):
                keep_from.append(_stream_id(_text(summary["min"])))
            last = _stream_id(_text(group["last-delivered-id"]))
            keep_from.append((last[0], last[1] + 1))  # everything after the last delivered entry
        minid = min(keep_from)
        return int(self.client.xtrim(self.key, minid=f"{minid[0]}-{minid[1]}", approximate=False))

    def _with_group(self, call: Any) -> Any:
        import redis

        if not self._group_ready:
            self._create_group()
        try:
            return call()
        except redis.exceptions.ResponseError as exc:
            # The stream (and its group) was deleted since: recreate and retry once.
            if "NOGROUP" not in str(exc):
                raise
            self._create_group()
            return call()

    def _create_group(self) -> None:
        import redis

        try:
            # From id 0: requests pushed before any consumer existed are read too.
            self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True


def _stream_id(text: str) -> tuple[int, int]:
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
