"""The Redis request queue: execution requests and cancel requests from the outside world.

Keys (all under a prefix, default `agentflow`):

- `<prefix>:requests`: a stream; each entry has one field `request`, an `ExecutionRequest` as JSON.
- `<prefix>:cancels`: a stream; each entry has one field `cancel`, a `CancelRequest` as JSON.
- `<prefix>:dead_letter`: a list of bounded JSON records `{"raw" (an excerpt), "size", "truncated",
  "reason", "entry_id", "at", "stream"}`, newest first, at most `dead_letter_max` of them, for entries
  that could not be turned into a run (see `dead_letters.py`).
- `<prefix>:request_claims:<request_id>`: which listener turns a request id into a run (see
  `claims.py`), so that an id becomes at most one run whatever the number of listeners.

Entries are read as bytes and decoded one by one: an entry that is not UTF-8, or longer than
`max_entry_bytes`, is handed out with `error` set (and dead-lettered), never fails the read of the
others.

Both streams are read through the consumer group `group` (default `launchers`).

Delivery guarantee (why a stream with a consumer group and not a list): with BRPOP a request is gone
from Redis the moment it is read, so a process killed between reading it and creating its run loses
it. Here a read entry stays in the group's pending list until it is acknowledged, and the consumer
(the Dagster sensor) follows this protocol:

1. `read()` the deliveries; dead-letter every delivery whose `error` is set (`dead_letter()`).
2. Turn each valid delivery into a run request with `run_key=request_id`, unless a run with that
   request id exists or another listener holds the id's claim (`claims.py`).
3. Do not ack yet. On a later tick, `pending()` lists the entries read but not acked; ack each one
   whose run exists (a run with that run key / request id tag). Acking deletes the entry.

If the process dies after step 1 or 2, its entries stay pending; once they have been idle for
`reclaim_idle_ms`, the next `read()` (by any consumer of the group) claims and re-delivers them
(XAUTOCLAIM). An entry handed out more than `max_deliveries` times (a request its reader fails on
every time) comes back with `error` set, so step 1 dead-letters it. A re-delivered request whose run
was already created is only acknowledged, and the claim keeps a request id to one listener, so no
request is lost and none runs twice. Acked entries are deleted (XDEL), so
the stream length is exactly the number of requests not yet acknowledged (`depth()`). `trim()` also
removes acknowledged entries that other tools left behind (XTRIM MINID below the oldest entry that
is unread or pending in any group); the stream is never trimmed by length, since that would drop
requests nobody has run.

Validation happens at consumption, not in `enqueue()`: other producers push straight to the stream,
and a malformed request must end in the dead-letter list with its reason rather than vanish.

The queue is FIFO; `priority` is carried to the run's priority tag, where the run coordinator orders
queued runs. Redis errors (e.g. `redis.exceptions.ConnectionError`) propagate to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel

from agent_defs.requests.dead_letters import (
    DEAD_LETTER_SCRIPT,
    DEFAULT_DEAD_LETTER_MAX,
    DeadLetter,
    as_text,
    excerpt,
    parse_record,
    record_for,
)
from agent_defs.requests.models import CancelRequest, ExecutionRequest, parse_wire

if TYPE_CHECKING:
    import redis

DEFAULT_GROUP = "launchers"
DEFAULT_RECLAIM_IDLE_MS = 60_000
# A request handed out this many times without becoming a run (its reader failed on it every time) is
# dead-lettered on its next delivery instead of being retried forever.
DEFAULT_MAX_DELIVERIES = 5
# XAUTOCLAIM examines at most 10 x COUNT pending entries per call; a few calls cover a large pending
# list without letting one read() scan it without bound.
MAX_RECLAIM_SCANS = 10
# An entry longer than this is dead-lettered unread: requests carry inputs, not files.
DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    """One execution-request entry handed to a consumer: `request` when valid, else `error` says why
    (naming the bad field). `redelivered` is True when it was claimed from a consumer that read it
    and never acknowledged it."""

    entry_id: str
    raw: str
    request: ExecutionRequest | None
    error: str | None
    redelivered: bool = False
    size: int = -1  # the entry's length in bytes (-1: len(raw.encode())); raw is an excerpt if it errs


@dataclass(frozen=True)
class CancelDelivery:
    """One cancel-request entry handed to a consumer: `cancel` when valid, else `error`."""

    entry_id: str
    raw: str
    cancel: CancelRequest | None
    error: str | None
    redelivered: bool = False
    size: int = -1


class PendingEntry(NamedTuple):
    """An entry read by some consumer and not yet acknowledged."""

    entry_id: str
    raw: str


class _Entry(NamedTuple):
    entry_id: str
    raw: bytes
    redelivered: bool
    error: str | None = None  # the entry has no field the queue reads


class _Decoded(NamedTuple):
    """An entry's text, or (when it is too long or not UTF-8) an excerpt and why it cannot be read."""

    text: str
    size: int
    error: str | None


def _decode(raw: bytes, max_bytes: int, error: str | None = None) -> _Decoded:
    if error is not None:
        return _Decoded(excerpt(raw)[0], len(raw), error)
    if len(raw) > max_bytes:
        shown, _ = excerpt(raw)
        return _Decoded(shown, len(raw), f"entry is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        return _Decoded(raw.decode("utf-8"), len(raw), None)
    except UnicodeDecodeError as exc:
        shown, _ = excerpt(raw)
        return _Decoded(shown, len(raw), f"entry is not UTF-8: {exc.reason} at byte {exc.start}")


def _text(value: Any) -> str:
    return as_text(value)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", errors="surrogateescape")


def _bytes_client(client: redis.Redis) -> redis.Redis:
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


class _GroupStream:
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
        import redis as redis_module

        try:
            groups = self.client.xinfo_groups(self.key)
        except redis_module.exceptions.ResponseError:  # no stream yet
            return 0
        if not groups:
            return 0  # nobody has read anything: every entry is still needed
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


class RequestQueue:
    """Execution requests and cancel requests on Redis streams; see the module docstring for the
    delivery protocol."""

    def __init__(
        self,
        redis_client: redis.Redis,
        prefix: str = "agentflow",
        *,
        group: str = DEFAULT_GROUP,
        reclaim_idle_ms: int = DEFAULT_RECLAIM_IDLE_MS,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        dead_letter_max: int = DEFAULT_DEAD_LETTER_MAX,
    ):
        if reclaim_idle_ms < 0:
            raise ValueError(f"reclaim_idle_ms must be >= 0, got {reclaim_idle_ms}")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries}")
        if max_entry_bytes < 1 or dead_letter_max < 1:
            raise ValueError(
                f"max_entry_bytes and dead_letter_max must be >= 1, got {max_entry_bytes}, {dead_letter_max}"
            )
        self.max_deliveries = max_deliveries
        self.max_entry_bytes = max_entry_bytes
        self.dead_letter_max = dead_letter_max
        self.client = _bytes_client(redis_client)
        self.prefix = prefix
        self.requests_key = f"{prefix}:requests"
        self.cancels_key = f"{prefix}:cancels"
        self.dead_letter_key = f"{prefix}:dead_letter"
        self.claims_prefix = f"{prefix}:request_claims:"
        self._requests = _GroupStream(self.client, self.requests_key, "request", group, reclaim_idle_ms)
        self._cancels = _GroupStream(self.client, self.cancels_key, "cancel", group, reclaim_idle_ms)

    # --- execution requests ------------------------------------------------------------------------

    def enqueue(self, request: ExecutionRequest | dict[str, Any] | str) -> str:
        """Push a request as JSON, unvalidated (see the module docstring); returns the stream entry id.
        The request id, the key the run is known by, is the caller's own `request_id`."""
        return self._requests.add(_to_json(request))

    def enqueue_raw(self, text: str | bytes) -> str:
        """Push any text or bytes as a request, as a foreign producer might (tests of the dead-letter
        path)."""
        return self._requests.add(text)

    def read(self, consumer: str, count: int = 10, block_ms: int | None = None) -> list[Delivery]:
        """Up to `count` deliveries: first this group's entries pending and idle for more than
        `reclaim_idle_ms` (their reader died or stalled), then new ones. `block_ms` waits for new
        entries when there is nothing to reclaim (None: do not wait; 0: wait forever)."""
        entries = self._requests.read(consumer, count, block_ms)
        counts = self._requests.delivery_counts([e.entry_id for e in entries if e.redelivered])
        deliveries = []
        for entry in entries:
            decoded = _decode(entry.raw, self.max_entry_bytes, entry.error)
            times = counts.get(entry.entry_id, 1)
            if times > self.max_deliveries:
                # A poison request (its reader failed on it every time) must not hold up the queue.
                error = (
                    f"handed out {times} times without becoming a run (limit {self.max_deliveries}); "
                    "its reader failed on it every time"
                )
                deliveries.append(Delivery(entry.entry_id, decoded.text, None, error, True, decoded.size))
                continue
            request, error = (
                (None, decoded.error) if decoded.error else parse_wire(ExecutionRequest, decoded.text)
            )
            deliveries.append(
                Delivery(entry.entry_id, decoded.text, request, error, entry.redelivered, decoded.size)
            )
        return deliveries

    def ack(self, entry_ids: Iterable[str]) -> int:
        """Acknowledge (and delete) entries whose run exists; returns how many were pending."""
        return self._requests.ack(entry_ids)

    def pending(self, limit: int = 1000) -> list[PendingEntry]:
        """Entries read by any consumer of the group and not yet acknowledged, oldest first."""
        return self._requests.pending(limit)

    def depth(self) -> int:
        """Requests not yet acknowledged, read or unread."""
        return self._requests.depth()

    # --- dead letters ------------------------------------------------------------------------------

    def dead_letter(self, delivery: Delivery | CancelDelivery, reason: str) -> bool:
        """Record the entry (a bounded record: excerpt, size, reason) in the dead-letter list, trim
        the list to `dead_letter_max`, and remove the entry from its stream, in one atomic step so
        that it is never both gone and unrecorded, nor recorded and re-delivered, nor recorded twice.
        False when the entry was no longer pending (someone else settled it)."""
        stream = self._cancels if isinstance(delivery, CancelDelivery) else self._requests
        record = record_for(
            delivery.raw,
            delivery.size
            if delivery.size >= 0
            else len(delivery.raw.encode("utf-8", errors="surrogateescape")),
            reason,
            delivery.entry_id,
            datetime.now(UTC).isoformat(),
            stream.key.rsplit(":", 1)[-1],
        )
        return stream.dead_letter(
            self.dead_letter_key, delivery.entry_id, record.model_dump_json(), self.dead_letter_max
        )

    def trim(self) -> int:
        """Trim both streams of acknowledged entries (never of unacknowledged ones); see `_GroupStream.trim`."""
        return self._requests.trim() + self._cancels.trim()

    def dead_letter_depth(self) -> int:
        return int(self.client.llen(self.dead_letter_key))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The latest `limit` dead letters, newest first."""
        if limit < 1:
            return []
        return [parse_record(_text(item)) for item in self.client.lrange(self.dead_letter_key, 0, limit - 1)]

    # --- cancels -----------------------------------------------------------------------------------

    def request_cancel(self, cancel: CancelRequest | dict[str, Any] | str) -> str:
        """Push a cancel request (validated at consumption, like `enqueue`); returns the entry id."""
        return self._cancels.add(_to_json(cancel))

    def read_cancels(
        self, consumer: str, count: int = 10, block_ms: int | None = None
    ) -> list[CancelDelivery]:
        """Like `read`, for cancel requests."""
        deliveries = []
        for entry in self._cancels.read(consumer, count, block_ms):
            decoded = _decode(entry.raw, self.max_entry_bytes, entry.error)
            cancel, error = (
                (None, decoded.error) if decoded.error else parse_wire(CancelRequest, decoded.text)
            )
            deliveries.append(
                CancelDelivery(entry.entry_id, decoded.text, cancel, error, entry.redelivered, decoded.size)
            )
        return deliveries

    def ack_cancels(self, entry_ids: Iterable[str]) -> int:
        return self._cancels.ack(entry_ids)

    def pending_cancels(self, limit: int = 1000) -> list[PendingEntry]:
        return self._cancels.pending(limit)

    def cancel_depth(self) -> int:
        return self._cancels.depth()


def _to_json(message: BaseModel | dict[str, Any] | str) -> str:
    if isinstance(message, BaseModel):
        return message.model_dump_json()
    if isinstance(message, dict):
        return json.dumps(message, default=str)
    return message
