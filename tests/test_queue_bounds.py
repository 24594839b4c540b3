"""The request queue's bounds against a real Redis (issue 11, defects 2 and 10): entries that are not
UTF-8 or too large are set aside one by one, dead-letter records stay small whatever the entry and the
reason, the dead-letter list is trimmed to its maximum, and the streams lose acknowledged entries only."""

from __future__ import annotations

import json

import pytest
import redis

from agent_defs.requests import ExecutionRequest, RequestQueue
from agent_defs.requests.env import QueueSettings


def request(request_id: str) -> ExecutionRequest:
    return ExecutionRequest(request_id=request_id, graph_id="g-1", user_id="user-1")


def test_entries_that_are_not_utf8_or_too_large_are_set_aside_one_by_one(
    client: redis.Redis, prefix: str
) -> None:
    """Defect 2 at the queue: the client decodes replies, yet one bad entry fails only itself."""
    queue = RequestQueue(client, prefix, max_entry_bytes=1_000)
    first = queue.enqueue(request("before"))
    binary = queue.enqueue_raw(b"\xff\xfe\x00garbage")
    large = queue.enqueue_raw("x" * 1_001)
    last = queue.enqueue(request("after"))
    cancel = queue.request_cancel(b"\xc3\x28")

    got = queue.read("A", count=10)
    assert [d.entry_id for d in got] == [first, binary, large, last]
    assert [d.request.request_id for d in got if d.request] == ["before", "after"]
    assert got[1].error == "entry is not UTF-8: invalid start byte at byte 0"
    assert got[1].raw == "\\xff\\xfe\x00garbage"
    assert got[2].error == "entry is 1001 bytes; the limit is 1000"
    (bad_cancel,) = queue.read_cancels("A", count=10)
    assert (bad_cancel.entry_id, bad_cancel.error) == (
        cancel,
        "entry is not UTF-8: invalid continuation byte at byte 0",
    )
    for delivery in (got[1], got[2], bad_cancel):
        assert queue.dead_letter(delivery, delivery.error or "")
    letters = queue.dead_letters()
    assert [(d.stream, d.entry_id, d.size) for d in letters] == [
        ("cancels", cancel, 2),
        ("requests", large, 1_001),
        ("requests", binary, 10),
    ]
    assert letters[1].truncated and len(letters[1].raw) == 1_000
    assert [p.entry_id for p in queue.pending()] == [first, last]


def test_a_dead_letter_record_is_bounded_whatever_the_entry_and_the_reason(
    client: redis.Redis, prefix: str
) -> None:
    """Defect 10: before, the record embedded the whole entry and the whole reason (10 MB each)."""
    queue = RequestQueue(client, prefix, max_entry_bytes=32 * 1024 * 1024)
    huge = json.dumps(
        {"request_id": "r", "graph_id": "g", "user_id": "u", "inputs": {"x": "A" * 10_000_000}, "colour": 1}
    )
    entry_id = queue.enqueue_raw(huge)
    (delivery,) = queue.read("A", count=1)
    assert delivery.error == "colour: Extra inputs are not permitted"
    assert queue.dead_letter(delivery, "inputs do not fit: " + "B" * 10_000_000)
    assert not queue.dead_letter(delivery, "again")  # already settled: not recorded twice
    stored = client.lrange(queue.dead_letter_key, 0, -1)
    assert len(stored) == 1 and len(stored[0]) < 3_000
    (letter,) = queue.dead_letters()
    assert (letter.entry_id, letter.size, letter.truncated) == (entry_id, len(huge), True)
    assert letter.raw == huge[:1_000]
    assert letter.reason == ("inputs do not fit: " + "B" * 1_000)[:997] + "..."
    assert queue.depth() == 0


def test_the_dead_letter_list_keeps_its_newest_records_up_to_its_maximum(
    client: redis.Redis, prefix: str
) -> None:
    queue = RequestQueue(client, prefix, dead_letter_max=3)
    ids = [queue.enqueue_raw(f"not json {i}") for i in range(5)]
    for delivery in queue.read("A", count=10):
        queue.dead_letter(delivery, delivery.error or "")
    assert queue.dead_letter_depth() == 3
    assert [d.entry_id for d in queue.dead_letters()] == ids[:1:-1]  # newest first: 4, 3, 2


def _ack_only(client: redis.Redis, queue: RequestQueue, *entry_ids: str) -> None:
    """Acknowledge without deleting, as another tool (or a script predating XDEL-on-ack) would."""
    client.xack(queue.requests_key, "launchers", *entry_ids)


def test_trim_removes_acknowledged_entries_and_never_unacknowledged_ones(
    client: redis.Redis, prefix: str
) -> None:
    queue = RequestQueue(client, prefix)
    ids = [queue.enqueue(request(f"r{i}")) for i in range(5)]
    client.xgroup_create(queue.requests_key, "monitor", id="$")  # another tool's group, reading new entries
    assert queue.trim() == 0  # the listeners have read nothing yet
    assert len(queue.read("A", count=3)) == 3  # r0, r1, r2 pending; r3, r4 unread
    _ack_only(client, queue, ids[0], ids[1])
    assert queue.trim() == 2
    assert [e[0] for e in client.xrange(queue.requests_key)] == ids[2:]
    _ack_only(client, queue, ids[2])
    assert queue.trim() == 1  # r3 and r4 were never delivered: they stay
    assert [e[0] for e in client.xrange(queue.requests_key)] == ids[3:]

    # Another group that has read nothing yet: nothing may go, even what launchers acknowledged.
    client.xgroup_create(queue.requests_key, "audit", id="0")
    assert [d.entry_id for d in queue.read("A", count=10)] == ids[3:]
    _ack_only(client, queue, *ids[3:])
    assert queue.trim() == 0
    assert [e[0] for e in client.xrange(queue.requests_key)] == ids[3:]
    assert len(client.xreadgroup("audit", "x", {queue.requests_key: ">"})[0][1]) == 2


def test_trim_covers_the_cancel_stream(client: redis.Redis, prefix: str) -> None:
    queue = RequestQueue(client, prefix)
    ids = [queue.request_cancel({"run_id": f"run-{i}"}) for i in range(3)]
    assert len(queue.read_cancels("A", count=2)) == 2
    client.xack(queue.cancels_key, "launchers", ids[0])
    assert queue.trim() == 1
    assert [e[0] for e in client.xrange(queue.cancels_key)] == ids[1:]


def test_queue_settings_are_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTFLOW_REQUEST_MAX_BYTES", "AGENTFLOW_DEAD_LETTER_MAX", "AGENTFLOW_REQUEST_CLAIM_TTL_S"):
        monkeypatch.delenv(name, raising=False)
    assert QueueSettings.from_env().max_entry_bytes == 1024 * 1024
    monkeypatch.setenv("AGENTFLOW_DEAD_LETTER_MAX", "50")
    assert QueueSettings.from_env().dead_letter_max == 50
    monkeypatch.setenv("AGENTFLOW_REQUEST_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="AGENTFLOW_REQUEST_MAX_BYTES='lots': not a whole number"):
        QueueSettings.from_env()
    monkeypatch.setenv("AGENTFLOW_REQUEST_MAX_BYTES", "0")
    with pytest.raises(ValueError, match="AGENTFLOW_REQUEST_MAX_BYTES='0': must be at least 1"):
        QueueSettings.from_env()
