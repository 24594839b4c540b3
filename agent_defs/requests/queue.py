"""The Redis request queue: execution requests and cancel requests from the outside world.

Keys (all under a prefix, default `agentflow`):

- `<prefix>:requests`: a stream; each entry has one field `request`, an `ExecutionRequest` as JSON.
- `<prefix>:cancels`: a stream; each entry has one field `cancel`, a `CancelRequest` as JSON.
- `<prefix>:dead_letter`: a list of JSON records `{"raw", "reason", "entry_id", "at", "stream"}`,
  newest first, for entries that could not be turned into a run.

Both streams are read through the consumer group `group` (default `launchers`).

Delivery guarantee (why a stream with a consumer group and not a list): with BRPOP a request is gone
from Redis the moment it is read, so a process killed between reading it and creating its run loses
it. Here a read entry stays in the group's pending list until it is acknowledged, and the consumer
(the Dagster sensor) follows this protocol:

1. `read()` the deliveries; dead-letter every delivery whose `error` is set (`dead_letter()`).
2. Turn each valid delivery into a run request with `run_key=request_id`.
3. Do not ack yet. On a later tick, `pending()` lists the entries read but not acked; ack each one
   whose run exists (a run with that run key / request id tag). Acking deletes the entry.

If the process dies after step 1 or 2, its entries stay pending; once they have been idle for
`reclaim_idle_ms`, the next `read()` (by any consumer of the group) claims and re-delivers them
(XAUTOCLAIM). An entry handed out more than `max_deliveries` times (a request its reader fails on
every time) comes back with `error` set, so step 1 dead-letters it. A re-delivered request whose run was already created is a no-op because Dagster runs a
run key at most once, so no request is lost and none runs twice. Acked entries are deleted (XDEL), so
the stream length is exactly the number of requests not yet acknowledged (`depth()`); the stream is
never trimmed by length, since trimming would drop requests nobody has run.

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

from pydantic import BaseModel, ConfigDict, ValidationError

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


@dataclass(frozen=True)
class CancelDelivery:
    """One cancel-request entry handed to a consumer: `cancel` when valid, else `error`."""

    entry_id: str
    raw: str
    cancel: CancelRequest | None
    error: str | None
    redelivered: bool = False


class PendingEntry(NamedTuple):
    """An entry read by some consumer and not yet acknowledged."""

    entry_id: str
    raw: str


class DeadLetter(BaseModel):
    """A record in `<prefix>:dead_letter`."""

    model_config = ConfigDict(extra="allow")

    raw: str
    reason: str
    entry_id: str
    at: str
    stream: str = "requests"


class _Entry(NamedTuple):
    entry_id: str
    raw: str
    redelivered: bool


def _text(value: Any) -> str:
    # The client may or may not decode responses; entries from other producers may not be UTF-8.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class _GroupStream:
    """One stream read through one consumer group: add, read (reclaimed first, then new), ack."""

    def __init__(self, client: redis.Redis, key: str, field: str, group: str, reclaim_idle_ms: int):
        self.client = client
        self.key = key
        self.field = field
        self.group = group
        self.reclaim_idle_ms = reclaim_idle_ms
        self._group_ready = False

    def add(self, raw: str) -> str:
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
            found += [
                _Entry(_text(eid), self._raw(fields), True) for eid, fields in claimed if eid is not None
            ]
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
            _Entry(_text(eid), self._raw(fields), False)
            for batch in batches
            for eid, fields in batch
            if eid is not None
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

    def _raw(self, fields: Mapping[Any, Any] | None) -> str:
        fields = fields or {}
        for name, value in fields.items():
            if _text(name) == self.field:
                return _text(value)
        # Keep what the producer sent, so the dead letter shows it; validation will reject it.
        return json.dumps({_text(k): _text(v) for k, v in fields.items()})

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
                found.append(PendingEntry(eid, self._raw(hit[0][1])))
        return found

    def depth(self) -> int:
        return int(self.client.xlen(self.key))

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
    ):
        if reclaim_idle_ms < 0:
            raise ValueError(f"reclaim_idle_ms must be >= 0, got {reclaim_idle_ms}")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries}")
        self.max_deliveries = max_deliveries
        self.client = redis_client
        self.prefix = prefix
        self.requests_key = f"{prefix}:requests"
        self.cancels_key = f"{prefix}:cancels"
        self.dead_letter_key = f"{prefix}:dead_letter"
        self._requests = _GroupStream(redis_client, self.requests_key, "request", group, reclaim_idle_ms)
        self._cancels = _GroupStream(redis_client, self.cancels_key, "cancel", group, reclaim_idle_ms)

    # --- execution requests ------------------------------------------------------------------------

    def enqueue(self, request: ExecutionRequest | dict[str, Any] | str) -> str:
        """Push a request as JSON, unvalidated (see the module docstring); returns the stream entry id.
        The request id, the key the run is known by, is the caller's own `request_id`."""
        return self._requests.add(_to_json(request))

    def enqueue_raw(self, text: str) -> str:
        """Push any text as a request, as a foreign producer might (tests of the dead-letter path)."""
        return self._requests.add(text)

    def read(self, consumer: str, count: int = 10, block_ms: int | None = None) -> list[Delivery]:
        """Up to `count` deliveries: first this group's entries pending and idle for more than
        `reclaim_idle_ms` (their reader died or stalled), then new ones. `block_ms` waits for new
        entries when there is nothing to reclaim (None: do not wait; 0: wait forever)."""
        entries = self._requests.read(consumer, count, block_ms)
        counts = self._requests.delivery_counts([e.entry_id for e in entries if e.redelivered])
        deliveries = []
        for entry in entries:
            times = counts.get(entry.entry_id, 1)
            if times > self.max_deliveries:
                # A poison request (its reader failed on it every time) must not hold up the queue.
                error = (
                    f"handed out {times} times without becoming a run (limit {self.max_deliveries}); "
                    "its reader failed on it every time"
                )
                deliveries.append(Delivery(entry.entry_id, entry.raw, None, error, True))
                continue
            request, error = parse_wire(ExecutionRequest, entry.raw)
            deliveries.append(Delivery(entry.entry_id, entry.raw, request, error, entry.redelivered))
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

    def dead_letter(self, delivery: Delivery | CancelDelivery, reason: str) -> None:
        """Record the entry with its reason in the dead-letter list and remove it from its stream,
        in one MULTI so that it is never both gone and unrecorded, nor recorded and re-delivered."""
        stream = self._cancels if isinstance(delivery, CancelDelivery) else self._requests
        record = DeadLetter(
            raw=delivery.raw,
            reason=reason,
            entry_id=delivery.entry_id,
            at=datetime.now(UTC).isoformat(),
            stream=stream.key.rsplit(":", 1)[-1],
        )
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self.dead_letter_key, record.model_dump_json())
        stream.queue_ack(pipe, [delivery.entry_id])
        pipe.execute()

    def dead_letter_depth(self) -> int:
        return int(self.client.llen(self.dead_letter_key))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The latest `limit` dead letters, newest first."""
        if limit < 1:
            return []
        letters = []
        for item in self.client.lrange(self.dead_letter_key, 0, limit - 1):
            text = _text(item)
            try:
                letters.append(DeadLetter.model_validate_json(text))
            except ValidationError:  # pushed by someone else; still show it
                letters.append(DeadLetter(raw=text, reason="(not a dead-letter record)", entry_id="", at=""))
        return letters

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
            cancel, error = parse_wire(CancelRequest, entry.raw)
            deliveries.append(CancelDelivery(entry.entry_id, entry.raw, cancel, error, entry.redelivered))
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
