"""The Redis-side platform pieces against a real Redis (127.0.0.1:6379): the request queue, live
execution events, notifications, and the `enqueue` / `cancel` commands. Every test uses its own key
prefix and deletes its keys at the end."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from support_processes import free_port

from agent_defs.requests import (
    CancelRequest,
    EventPublisher,
    ExecutionRequest,
    NotificationKind,
    Notifier,
    RequestQueue,
    encode_event,
    event_channel,
    graph_execution_update,
    node_execution_update,
    redis_from_env,
    webhook_from_env,
)

ROOT = Path(__file__).resolve().parent.parent
AGENTFLOW = Path(sys.executable).parent / "agentflow"
RECLAIM_MS = 200


@pytest.fixture
def queue(client: redis.Redis, prefix: str) -> RequestQueue:
    return RequestQueue(client, prefix, reclaim_idle_ms=RECLAIM_MS)


def request(request_id: str, **extra: Any) -> ExecutionRequest:
    return ExecutionRequest(request_id=request_id, graph_id="g-1", user_id="user-1", **extra)


# --- request model --------------------------------------------------------------------------------


def test_request_model_rules() -> None:
    full = ExecutionRequest(
        request_id="r",
        graph_id="g",
        graph_version=3,
        user_id="u",
        inputs={"limit": 3},
        input_masks={"node-1": {"x": 1}},
        priority=5,
    )
    assert ExecutionRequest.model_validate_json(full.model_dump_json()) == full
    minimal = request("r")
    assert (minimal.graph_version, minimal.inputs, minimal.input_masks, minimal.priority) == (None, {}, {}, 0)
    for bad, field in [
        ({"colour": "red"}, "colour"),
        ({"graph_version": 0}, "graph_version"),
        ({"graph_version": "2"}, "graph_version"),  # strict: a string is not a version
        ({"input_masks": {"n": 1}}, "input_masks"),
        ({"request_id": " "}, "request_id"),
    ]:
        data = {"request_id": "r", "graph_id": "g", "user_id": "u", **bad}
        with pytest.raises(ValidationError, match=field):
            ExecutionRequest.model_validate(data)


def test_cancel_model_needs_exactly_one_id() -> None:
    assert CancelRequest(request_id="r").run_id is None
    assert CancelRequest(run_id="x").request_id is None
    for bad in ({}, {"request_id": "r", "run_id": "x"}):
        with pytest.raises(ValidationError, match="exactly one of request_id or run_id"):
            CancelRequest.model_validate(bad)


# --- queue ----------------------------------------------------------------------------------------


def test_enqueue_read_ack_round_trip(queue: RequestQueue) -> None:
    sent = [request("r1", inputs={"limit": 3}, graph_version=2), request("r2", priority=7)]
    entry_ids = [queue.enqueue(sent[0]), queue.enqueue(sent[1].model_dump())]
    as_text = queue.enqueue(request("r3").model_dump_json())
    assert queue.depth() == 3

    got = queue.read("sensor-1", count=10)
    assert [d.entry_id for d in got] == [*entry_ids, as_text]
    assert [d.request for d in got] == [*sent, request("r3")]
    assert all(d.error is None and not d.redelivered for d in got)

    assert [p.entry_id for p in queue.pending()] == [d.entry_id for d in got]
    assert json.loads(queue.pending()[0].raw)["request_id"] == "r1"
    assert queue.read("sensor-1", count=10) == []  # read once, not again while pending

    assert queue.ack([d.entry_id for d in got]) == 3
    assert (queue.depth(), queue.pending()) == (0, [])
    assert queue.ack([d.entry_id for d in got]) == 0  # acking twice is harmless


def test_read_blocks_for_new_requests(client: redis.Redis, prefix: str) -> None:
    queue = RequestQueue(client, prefix)
    started = time.monotonic()
    assert queue.read("sensor-1", count=1, block_ms=150) == []
    assert time.monotonic() - started >= 0.1
    producer = threading.Timer(0.1, lambda: queue.enqueue(request("late")))
    producer.start()
    got = queue.read("sensor-1", count=1, block_ms=5000)
    producer.join()
    assert [d.request.request_id for d in got if d.request] == ["late"]


def test_malformed_requests_are_dead_lettered_and_the_rest_still_read(
    client: redis.Redis, queue: RequestQueue
) -> None:
    queue.enqueue_raw("this is not JSON")
    queue.enqueue({"request_id": "r-bad-1", "graph_id": "g"})  # no user_id
    queue.enqueue({"request_id": "r-bad-2", "graph_id": "g", "user_id": "u", "graph_version": "two"})
    queue.enqueue_raw("[1, 2]")
    client.xadd(queue.requests_key, {"body": "{}"})  # a foreign producer using another field
    queue.enqueue(request("good-1"))
    queue.enqueue(request("good-2"))

    got = queue.read("sensor-1", count=100)
    assert len(got) == 7
    bad, good = got[:5], got[5:]
    assert all(d.request is None and d.error for d in bad)
    assert bad[0].error.startswith("not valid JSON")
    assert "user_id" in bad[1].error and "required" in bad[1].error.lower()
    assert "graph_version" in bad[2].error
    assert "JSON object" in bad[3].error
    assert "request" in bad[4].error and "body" in bad[4].raw
    assert [d.request.request_id for d in good if d.request] == ["good-1", "good-2"]

    for delivery in bad:
        queue.dead_letter(delivery, delivery.error or "")
    assert queue.dead_letter_depth() == 5
    letters = queue.dead_letters(limit=10)
    assert [letter.entry_id for letter in letters] == [d.entry_id for d in reversed(bad)]  # newest first
    by_entry = {letter.entry_id: letter for letter in letters}
    for delivery in bad:
        assert by_entry[delivery.entry_id].raw == delivery.raw
        assert by_entry[delivery.entry_id].reason == delivery.error
        assert by_entry[delivery.entry_id].at
    raw_record = json.loads(client.lindex(queue.dead_letter_key, 0))
    assert {"raw", "reason", "entry_id", "at"} <= set(raw_record)
    assert len(queue.dead_letters(limit=2)) == 2

    # Dead-lettered entries are gone from the stream: only the good ones remain, pending.
    assert queue.depth() == 2
    assert [p.entry_id for p in queue.pending()] == [d.entry_id for d in good]
    time.sleep(RECLAIM_MS / 1000 + 0.1)
    assert [d.entry_id for d in queue.read("sensor-2", count=100)] == [d.entry_id for d in good]


def test_a_consumer_that_dies_between_read_and_ack_loses_nothing(
    client: redis.Redis, prefix: str, queue: RequestQueue
) -> None:
    entry_id = queue.enqueue(request("r-crash"))
    queue.enqueue(request("r-later"))
    # Consumer A is a real process that reads one request and is killed before acknowledging it.
    script = (
        "import os, signal, redis\n"
        "from agent_defs.requests import RequestQueue\n"
        f"q = RequestQueue(redis.Redis(decode_responses=True), {prefix!r}, reclaim_idle_ms={RECLAIM_MS})\n"
        "got = q.read('consumer-A', count=1)\n"
        "print(got[0].request.request_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "r-crash", proc.stderr
    assert proc.returncode == -9

    # Before reclaim_idle_ms, consumer B gets only the unread request, not A's in-flight one.
    first = queue.read("consumer-B", count=10)
    assert [d.request.request_id for d in first if d.request] == ["r-later"]
    assert not first[0].redelivered
    queue.ack([first[0].entry_id])
    assert [p.entry_id for p in queue.pending()] == [entry_id]
    assert queue.depth() == 1

    time.sleep(RECLAIM_MS / 1000 + 0.1)
    again = queue.read("consumer-B", count=10)
    assert [(d.entry_id, d.request.request_id if d.request else None) for d in again] == [
        (entry_id, "r-crash")
    ]
    assert again[0].redelivered
    assert queue.ack([entry_id]) == 1

    time.sleep(RECLAIM_MS / 1000 + 0.1)
    assert queue.read("consumer-A", count=10) == []
    assert queue.read("consumer-B", count=10) == []
    assert (queue.depth(), queue.pending()) == (0, [])


def test_a_request_its_readers_fail_on_every_time_is_dead_lettered(client: redis.Redis, prefix: str) -> None:
    """A poison request (the reader crashes on it, so it is never acked) comes back after each reclaim;
    past `max_deliveries` it is handed out with an error, dead-lettered, and the queue moves on."""
    queue = RequestQueue(client, prefix, reclaim_idle_ms=RECLAIM_MS, max_deliveries=2)
    poison = queue.enqueue(request("r-poison"))
    for attempt in (1, 2):
        got = queue.read(f"reader-{attempt}", count=1)
        assert [(d.entry_id, d.error) for d in got] == [(poison, None)]  # the reader dies: no ack
        time.sleep(RECLAIM_MS / 1000 + 0.1)
    healthy = queue.enqueue(request("r-healthy"))
    third = queue.read("reader-3", count=10)
    assert [d.entry_id for d in third] == [poison, healthy]
    assert third[0].request is None and third[0].error is not None
    assert "handed out 3 times" in third[0].error and "limit 2" in third[0].error
    assert third[1].request is not None and third[1].error is None
    queue.dead_letter(third[0], third[0].error)
    (letter,) = queue.dead_letters()
    assert letter.entry_id == poison and "r-poison" in letter.raw
    queue.ack([healthy])
    assert (queue.depth(), queue.pending()) == (0, [])


def test_reclaimed_entries_come_before_new_ones_and_respect_count(queue: RequestQueue) -> None:
    ids = [queue.enqueue(request(f"r{i}")) for i in range(5)]
    assert len(queue.read("A", count=3)) == 3
    time.sleep(RECLAIM_MS / 1000 + 0.1)
    got = queue.read("B", count=4)
    assert [d.entry_id for d in got] == ids[:4]
    assert [d.redelivered for d in got] == [True, True, True, False]


def test_depth_counts_unread_and_unacked(queue: RequestQueue) -> None:
    assert (queue.depth(), queue.dead_letter_depth()) == (0, 0)
    for i in range(3):
        queue.enqueue(request(f"r{i}"))
    queue.enqueue_raw("{broken")
    assert queue.depth() == 4
    got = queue.read("A", count=2)
    assert queue.depth() == 4  # read but not acked still counts
    queue.ack([got[0].entry_id])
    assert queue.depth() == 3
    rest = queue.read("A", count=10)
    broken = [d for d in rest if d.error]
    assert len(broken) == 1
    queue.dead_letter(broken[0], broken[0].error or "")
    assert (queue.depth(), queue.dead_letter_depth()) == (2, 1)


def test_queue_survives_its_stream_being_deleted(client: redis.Redis, queue: RequestQueue) -> None:
    queue.enqueue(request("r1"))
    assert len(queue.read("A", count=10)) == 1
    client.delete(queue.requests_key)  # the group goes with it
    queue.enqueue(request("r2"))
    assert [d.request.request_id for d in queue.read("A", count=10) if d.request] == ["r2"]


def test_cancel_round_trip(queue: RequestQueue) -> None:
    first = queue.request_cancel(CancelRequest(request_id="r1"))
    queue.request_cancel({"run_id": "run-9"})
    queue.request_cancel({"request_id": "r2", "run_id": "run-2"})  # both: invalid
    assert queue.cancel_depth() == 3
    got = queue.read_cancels("sensor-1", count=10)
    assert got[0].entry_id == first
    assert [d.cancel for d in got[:2]] == [CancelRequest(request_id="r1"), CancelRequest(run_id="run-9")]
    assert got[2].cancel is None and "exactly one" in (got[2].error or "")
    assert len(queue.pending_cancels()) == 3
    queue.dead_letter(got[2], got[2].error or "")
    assert queue.dead_letters()[0].stream == "cancels"
    assert queue.ack_cancels([d.entry_id for d in got[:2]]) == 2
    assert queue.cancel_depth() == 0
    assert queue.read_cancels("sensor-1", count=10) == []
    assert queue.depth() == 0  # cancels never mix with execution requests


# --- events ---------------------------------------------------------------------------------------


def _next_message(pubsub: redis.client.PubSub, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            return message
    raise AssertionError("no message published")


def test_event_publisher_delivers_on_the_run_channel(client: redis.Redis, prefix: str) -> None:
    user = f"user-{prefix}"
    pubsub = client.pubsub()
    pubsub.psubscribe(f"execution_event/{user}/*")
    try:
        _next_message_or_none(pubsub)  # the psubscribe confirmation
        event = node_execution_update(
            user_id=user,
            graph_id="g-1",
            graph_version=2,
            graph_exec_id="run-1",
            node_exec_id="ne-1",
            node_id="n-1",
            block_id="b-1",
            status="COMPLETED",
            input_data={"x": 1},
            output_data={"result": [2]},
        )
        publisher = EventPublisher(client)
        assert publisher.publish(user, "g-1", "run-1", event) is True
        message = _next_message(pubsub)
        assert (
            message["channel"] == event_channel(user, "g-1", "run-1") == f"execution_event/{user}/g-1/run-1"
        )
        assert json.loads(message["data"]) == {"payload": event}

        done = graph_execution_update(
            user_id=user, graph_id="g-1", graph_version=2, graph_exec_id="run-1", status="COMPLETED"
        )
        publisher.publish(user, "g-1", "run-1", done)
        payload = json.loads(_next_message(pubsub)["data"])["payload"]
        assert (payload["event_type"], payload["id"], payload["status"]) == (
            "graph_execution_update",
            "run-1",
            "COMPLETED",
        )
    finally:
        pubsub.close()


def _next_message_or_none(pubsub: redis.client.PubSub) -> None:
    pubsub.get_message(timeout=1.0)


def test_oversized_events_are_truncated_with_a_marker(client: redis.Redis, prefix: str) -> None:
    big = node_execution_update(
        user_id="u",
        graph_id="g",
        graph_version=1,
        graph_exec_id="run",
        node_exec_id="ne",
        node_id="n",
        block_id="b",
        status="COMPLETED",
        input_data={"text": "é" * 100},
        output_data={"result": ["x" * (2 * 1024 * 1024)]},
    )
    message = encode_event(big)
    assert len(message.encode("utf-8")) <= 1024 * 1024
    payload = json.loads(message)["payload"]
    assert payload["truncated"] is True and payload["original_bytes"] > 2 * 1024 * 1024
    assert payload["output_data"]["truncated"] is True
    assert (payload["node_exec_id"], payload["status"], payload["input_data"]) == (
        "ne",
        "COMPLETED",
        {"text": "é" * 100},
    )
    assert json.loads(encode_event({"a": 1})) == {"payload": {"a": 1}}
    assert EventPublisher(client).publish(f"u-{prefix}", "g", "run", big) is True


def test_event_publisher_never_raises_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    now = [0.0]
    publisher = EventPublisher(dead, cooldown_s=5.0, clock=lambda: now[0])
    try:
        with caplog.at_level(logging.WARNING, logger="agent_defs.requests.events"):
            # Tries at t=0 (cool-down 5 s) and t=6 (cool-down 10 s); the others are dropped untried.
            for step in range(5):
                now[0] = step * 3.0
                assert publisher.publish("u", "g", "run", {"event_type": "x", "n": step}) is False
        assert publisher.dropped == 5
        assert publisher._retry_at == 16.0
        warnings = [r for r in caplog.records if r.name == "agent_defs.requests.events"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "not being published" in warnings[0].getMessage()
    finally:
        dead.close()


# --- notifications --------------------------------------------------------------------------------


class Webhook:
    """A local HTTP server recording POST bodies and answering with the given statuses in turn."""

    def __init__(self, statuses: list[int]):
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                status = hook.statuses.pop(0) if len(hook.statuses) > 1 else hook.statuses[0]
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def webhook_ok() -> Iterator[Webhook]:
    hook = Webhook([200])
    yield hook
    hook.close()


def test_notifier_stores_and_posts(client: redis.Redis, prefix: str, webhook_ok: Webhook) -> None:
    notifier = Notifier(client, webhook_ok.url, prefix=prefix)
    result = notifier.notify("user-1", NotificationKind.RUN_SUCCEEDED, {"run_id": "run-1"})
    assert result.ok and result.stored
    assert (result.webhook, result.webhook_attempts, result.webhook_status) == ("sent", 1, 200)
    assert webhook_ok.bodies == [json.loads(result.notification.model_dump_json())]
    assert webhook_ok.bodies[0]["kind"] == "RUN_SUCCEEDED"
    assert webhook_ok.bodies[0]["payload"] == {"run_id": "run-1"}

    notifier.notify("user-1", "LOW_BALANCE", {"balance": 400})
    stored = notifier.notifications("user-1")
    assert [n.kind for n in stored] == [NotificationKind.LOW_BALANCE, NotificationKind.RUN_SUCCEEDED]
    assert json.loads(client.lindex(f"{prefix}:notifications:user-1", 0))["payload"] == {"balance": 400}
    assert notifier.notifications("user-1", limit=1)[0].kind == "LOW_BALANCE"
    assert notifier.notifications("someone-else") == []
    with pytest.raises(ValueError):
        notifier.notify("user-1", "NOT_A_KIND", {})


def test_notifier_keeps_the_latest_thousand(client: redis.Redis, prefix: str) -> None:
    notifier = Notifier(client, None, prefix=prefix)
    for i in range(1005):
        assert notifier.notify("u", NotificationKind.RUN_FAILED, {"i": i}).webhook == "not configured"
    assert client.llen(f"{prefix}:notifications:u") == 1000
    assert notifier.notifications("u", limit=1)[0].payload == {"i": 1004}


def test_notifier_retries_a_failing_webhook_and_reports_it(
    client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = Webhook([500])
    sleeps: list[float] = []
    try:
        notifier = Notifier(client, hook.url, prefix=prefix, sleep=sleeps.append)
        with caplog.at_level(logging.WARNING, logger="agent_defs.requests.notifications"):
            result = notifier.notify("u", NotificationKind.RUN_FAILED, {"error": "boom"})
    finally:
        hook.close()
    assert result.stored and not result.ok
    assert (result.webhook, result.webhook_attempts, result.webhook_status) == ("failed", 3, 500)
    assert len(hook.bodies) == 3
    assert sleeps == [0.5, 1.0]  # backoff between attempts
    assert "secret" not in caplog.text  # the webhook's token is not logged


def test_notifier_recovers_when_the_webhook_comes_back(client: redis.Redis, prefix: str) -> None:
    hook = Webhook([503, 200])
    try:
        result = Notifier(client, hook.url, prefix=prefix, sleep=lambda _s: None).notify(
            "u", NotificationKind.ZERO_BALANCE, {}
        )
    finally:
        hook.close()
    assert (result.webhook, result.webhook_attempts) == ("sent", 2)


def test_notifier_survives_an_unreachable_webhook_and_redis(client: redis.Redis, prefix: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    result = Notifier(client, url, prefix=prefix, sleep=lambda _s: None).notify(
        "u", NotificationKind.RUN_FAILED, {}
    )
    assert result.stored and result.webhook == "failed" and result.webhook_attempts == 3
    assert result.webhook_error and "Connect" in result.webhook_error

    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    try:
        down = Notifier(dead, None, prefix=prefix).notify("u", NotificationKind.RUN_FAILED, {})
    finally:
        dead.close()
    assert not down.stored and down.store_error and "ConnectionError" in down.store_error


# --- environment ----------------------------------------------------------------------------------


def test_settings_are_read_from_the_environment_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFLOW_REDIS_URL", raising=False)
    monkeypatch.delenv("AGENTFLOW_NOTIFY_WEBHOOK_URL", raising=False)
    default = redis_from_env()
    assert default.connection_pool.connection_kwargs["port"] == 6379
    assert default.ping()
    default.close()
    assert webhook_from_env() is None

    monkeypatch.setenv("AGENTFLOW_REDIS_URL", "redis://127.0.0.1:6390/3")
    monkeypatch.setenv("AGENTFLOW_NOTIFY_WEBHOOK_URL", "https://hooks.example/x")
    configured = redis_from_env()
    assert (
        configured.connection_pool.connection_kwargs["port"],
        configured.connection_pool.connection_kwargs["db"],
    ) == (6390, 3)
    configured.close()
    assert webhook_from_env() == "https://hooks.example/x"


# --- CLI ------------------------------------------------------------------------------------------


def agentflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(AGENTFLOW), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **env},
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_cli_enqueue_and_cancel(client: redis.Redis, prefix: str) -> None:
    env = {"AGENTFLOW_REDIS_PREFIX": prefix, "AGENTFLOW_REDIS_URL": "redis://127.0.0.1:6379/0"}
    proc = agentflow(
        "enqueue", "graph-7", "--version", "2", "--user", "alice",
        "--inputs-json", '{"ticket": {"title": "Typo"}}', "--input", "limit=3", "--input", "name=Bob",
        "--request-id", "req-1", "--priority", "4",
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "req-1"

    generated = agentflow("enqueue", "graph-7", "--user", "alice", env=env)
    assert generated.returncode == 0, generated.stderr
    new_id = generated.stdout.strip()
    assert len(new_id) >= 16

    queue = RequestQueue(client, prefix)
    got = queue.read("test", count=10)
    assert [d.request for d in got] == [
        ExecutionRequest(
            request_id="req-1",
            graph_id="graph-7",
            graph_version=2,
            user_id="alice",
            inputs={"ticket": {"title": "Typo"}, "limit": 3, "name": "Bob"},
            priority=4,
        ),
        ExecutionRequest(request_id=new_id, graph_id="graph-7", user_id="alice"),
    ]

    for flag, value in (("--request-id", "req-1"), ("--run-id", "run-abc")):
        proc = agentflow("cancel", flag, value, env=env)
        assert proc.returncode == 0, proc.stderr
        assert value in proc.stdout
    cancels = queue.read_cancels("test", count=10)
    assert [d.cancel for d in cancels] == [CancelRequest(request_id="req-1"), CancelRequest(run_id="run-abc")]

    assert agentflow("cancel", env=env).returncode == 2  # neither id: a usage error
    bad = agentflow("enqueue", "graph-7", "--user", "alice", "--version", "0", env=env)
    assert bad.returncode == 1 and "graph_version" in bad.stderr


def test_cli_reports_an_unreachable_redis(prefix: str) -> None:
    env = {
        "AGENTFLOW_REDIS_PREFIX": prefix,
        "AGENTFLOW_REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0",
    }
    for args in (("enqueue", "graph-7", "--user", "alice"), ("cancel", "--run-id", "run-1")):
        proc = agentflow(*args, env=env)
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:"), proc.stderr
        assert "AGENTFLOW_REDIS_URL" in proc.stderr
        assert "hunter2" not in proc.stderr
        assert proc.stdout == ""


def test_queue_works_with_a_client_that_does_not_decode(prefix: str) -> None:
    raw_client = redis.Redis(host="127.0.0.1", port=6379)  # replies are bytes
    try:
        queue = RequestQueue(raw_client, prefix)
        entry_id = queue.enqueue(request("r-bytes", inputs={"text": "héllo"}))
        queue.enqueue_raw("\xff not json")
        got = queue.read("A", count=10)
        assert got[0].entry_id == entry_id and got[0].request == request("r-bytes", inputs={"text": "héllo"})
        assert got[1].error and got[1].error.startswith("not valid JSON")
        assert [p.entry_id for p in queue.pending()] == [d.entry_id for d in got]
        queue.dead_letter(got[1], got[1].error)
        assert queue.dead_letters()[0].raw == "\xff not json"
        assert queue.ack([entry_id]) == 1 and queue.depth() == 0
    finally:
        raw_client.close()
