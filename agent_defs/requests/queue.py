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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agent_defs.requests.dead_letters import (
    DEFAULT_DEAD_LETTER_MAX,
    DeadLetter,
    as_text,
    parse_record,
    record_for,
)
from agent_defs.requests.models import CancelRequest, ExecutionRequest, parse_wire
from agent_defs.requests.streams import GroupStream, PendingEntry, bytes_client, decode_entry

if TYPE_CHECKING:
    import redis

DEFAULT_GROUP = "launchers"
DEFAULT_RECLAIM_IDLE_MS = 60_000
# A request handed out this many times without becoming a run (its reader failed on it every time) is
# dead-lettered on its next delivery instead of being retried forever.
DEFAULT_MAX_DELIVERIES = 5
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
        self.client = bytes_client(redis_client)
        self.prefix = prefix
        self.requests_key = f"{prefix}:requests"
        self.cancels_key = f"{prefix}:cancels"
        self.dead_letter_key = f"{prefix}:dead_letter"
        self.claims_prefix = f"{prefix}:request_claims:"
        self._requests = GroupStream(self.client, self.requests_key, "request", group, reclaim_idle_ms)
        self._cancels = GroupStream(self.client, self.cancels_key, "cancel", group, reclaim_idle_ms)

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
            decoded = decode_entry(entry.raw, self.max_entry_bytes, entry.error)
            times = counts.get(entry.entry_id, 1)
            if times > self.max_deliveries:
                # A poison request (its reader failed on it every time) must not hold up the queue.
                error = (
                    f"handed out {times} times without becoming a run (limit {self.max_deliveries}); "
                    "its readers failed on it, or the listener holding its request id never created the run"
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
        """Trim both streams of acknowledged entries (never of unacknowledged ones); see `GroupStream.trim`."""
        return self._requests.trim() + self._cancels.trim()

    def dead_letter_depth(self) -> int:
        return int(self.client.llen(self.dead_letter_key))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The latest `limit` dead letters, newest first."""
        if limit < 1:
            return []
        return [
            parse_record(as_text(item)) for item in self.client.lrange(self.dead_letter_key, 0, limit - 1)
        ]

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
            decoded = decode_entry(entry.raw, self.max_entry_bytes, entry.error)
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
