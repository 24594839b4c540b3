"""The engine's blocking calls (observer hooks: credits in Postgres, events in Redis; circuit breakers
and the output cache in Redis) run off the event loop, and a streaming node's live events carry each
output once, not all earlier ones again."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import uuid4

import redis

from agent_defs.engine import NodeExecution, ReferenceEngine, RunOptions
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from agent_defs.platform.observer import PlatformObserver
from agent_defs.requests.events import EventPublisher
from blocks import REGISTRY, Block, BlockInput, BlockOutput, BlockRegistry, RunContext
from blocks.library.io import AgentOutputBlock
from blocks.library.iteration import StepThroughItemsBlock

ITEMS = ["a", "b", "c", "d", "e"]


def streaming_graph() -> Graph:
    b = GraphBuilder("streaming")
    src = b.node(StepThroughItemsBlock, node_id="src", items=ITEMS)
    b.link(src, "item", b.node(AgentOutputBlock, node_id="out", name="out"), "value")
    return b.build()


class ThreadRecorder:
    """A blocking observer noting, for each hook, whether it ran on a thread with an event loop."""

    blocking = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, int]] = []

    def _note(self, hook: str) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        self.calls.append((hook, on_loop, threading.get_ident()))

    def before_node(self, execution: NodeExecution, block: Block) -> None:
        self._note("before_node")

    def on_output(self, execution: NodeExecution, pin: str, value: Any) -> None:
        self._note("on_output")

    def after_node(self, execution: NodeExecution, block: Block) -> None:
        self._note("after_node")


def test_blocking_observer_hooks_run_off_the_event_loop_in_order() -> None:
    recorder = ThreadRecorder()
    engine = ReferenceEngine(observer_factory=lambda graph, options: recorder)
    result = engine.run_sync(streaming_graph())
    assert result.outputs["out"] == ITEMS
    assert [hook for hook, _, _ in recorder.calls if hook != "on_output"].count("before_node") == 6
    assert not [call for call in recorder.calls if call[1]], "a hook ran on the event loop"  # before: all
    assert threading.get_ident() not in {thread for _, _, thread in recorder.calls}


def test_streaming_node_events_carry_each_output_once(client: redis.Redis) -> None:
    user = f"user-{uuid4().hex}"
    pubsub = client.pubsub()
    pubsub.psubscribe(f"execution_event/{user}/*")
    try:
        pubsub.get_message(timeout=1.0)  # the psubscribe confirmation
        publisher = EventPublisher(client)
        engine = ReferenceEngine(
            observer_factory=lambda graph, options: PlatformObserver(
                graph, user, options.run_id, ledger=None, publisher=publisher
            )
        )
        result = engine.run_sync(streaming_graph(), options=RunOptions(run_id="r1", user_id=user))
        assert result.outputs["out"] == ITEMS
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (events and events[-1]["status"] == "COMPLETED"):
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                payload = json.loads(message["data"])["payload"]
                if payload["node_id"] == "src":
                    events.append(payload)
    finally:
        pubsub.close()
    statuses = [e["status"] for e in events]
    assert statuses == ["RUNNING"] * 11 + ["COMPLETED"]  # started, then one per output (item, key)
    per_output = [e["output_data"] for e in events[1:-1]]
    assert per_output[:2] == [{"item": ["a"]}, {"key": [0]}]  # before: every event resent all earlier ones
    assert sum(len(values) for outputs in per_output for values in outputs.values()) == 10
    assert events[-1]["output_data"] == {"item": ITEMS, "key": [0, 1, 2, 3, 4]}


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ProviderBlock(Block):
    """Calls a (pretend) provider: guarded by a breaker, and its outputs cacheable."""

    id = "00000000-0000-4000-8000-0000000000e1"
    description = "Echoes its input."
    provider = "test-provider"
    cacheable = True

    class Input(BlockInput):
        value: int

    class Output(BlockOutput):
        echo: int

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "echo", input.value


class RecordingBreakers:
    """A breaker service (the BreakerService interface) that notes where it is called from."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    def before_call(self, provider: str) -> None:
        self.on_loop.append(_on_loop())

    def record(self, provider: str, ok: bool) -> None:
        self.on_loop.append(_on_loop())


class RecordingCache:
    """An output cache (the OutputCacheService interface) in a dict, noting where it is called from."""

    def __init__(self) -> None:
        self.entries: dict[str, list[tuple[str, Any]]] = {}
        self.on_loop: list[bool] = []

    def get(self, key: str) -> list[tuple[str, Any]] | None:
        self.on_loop.append(_on_loop())
        return self.entries.get(key)

    def put(self, key: str, outputs: Sequence[tuple[str, Any]], ttl_seconds: float) -> None:
        self.on_loop.append(_on_loop())
        self.entries[key] = list(outputs)


def test_breaker_and_cache_calls_run_off_the_event_loop() -> None:
    b = GraphBuilder("provider")
    node = b.node(ProviderBlock, node_id="p", value=3)
    b.link(node, "echo", b.node(AgentOutputBlock, node_id="out", name="out"), "value")
    breakers, cache = RecordingBreakers(), RecordingCache()
    engine = ReferenceEngine(
        registry=BlockRegistry([*(type(block) for block in REGISTRY), ProviderBlock]),
        breakers=breakers,
        cache=cache,
    )
    assert engine.run_sync(b.build()).outputs["out"] == [3]
    assert engine.run_sync(b.build()).outputs["out"] == [3]  # from the cache this time
    assert len(breakers.on_loop) == 2 and len(cache.on_loop) == 3  # get, put; get (a hit)
    assert not any(breakers.on_loop + cache.on_loop), "a Redis call ran on the event loop"  # before: all
