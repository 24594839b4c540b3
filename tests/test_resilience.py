"""Retries, timeouts, circuit breakers and the output cache (issue 5, items 3, 4 and 6).

A local flaky HTTP server (127.0.0.1, fails its first K requests with 500) drives SendWebRequest;
breakers and the cache use the local Redis under a fresh key prefix per test.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from agent_defs.credits.ledger import CreditLedger
from agent_defs.engine import EngineLimits, ExecStatus, NodeExecution, ReferenceEngine, RunOptions
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from agent_defs.platform.observer import PlatformObserver
from agent_defs.resilience import cache as cache_module
from agent_defs.resilience.breaker import CircuitBreakers
from agent_defs.resilience.cache import OutputCache
from agent_defs.resilience.policy import CircuitOpenError, node_guard
from blocks import REGISTRY, Block, BlockCost, BlockInput, BlockOutput, BlockRegistry, RetryPolicy, RunContext
from blocks.library.http import SendWebRequestBlock
from blocks.library.io import AgentOutputBlock
from blocks.library.llm import AITextGeneratorBlock

REDIS_URL = "redis://127.0.0.1:6379/0"
SETTINGS = {"allow_private_addresses": True}


# --- the flaky server -------------------------------------------------------------------------------
class FlakyServer:
    """Answers 500 to its first `fail_first` requests, then 200 with a JSON body; `delay` slows it."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.delay = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                    n = server.requests
                if server.delay:
                    time.sleep(server.delay)
                status = 500 if n <= server.fail_first else 200
                body = b'{"ok": false}' if status == 500 else b'{"ok": true}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/flaky"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reset(self, fail_first: int = 0, delay: float = 0.0) -> None:
        with self._lock:
            self.fail_first, self.delay, self.requests = fail_first, delay, 0


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[FlakyServer]:
    server = FlakyServer()
    server._thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def flaky(flaky_server: FlakyServer) -> FlakyServer:
    flaky_server.reset()
    return flaky_server


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"test-resilience-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- observers ---------------------------------------------------------------------------------------
class CountingObserver:
    def __init__(self) -> None:
        self.before: list[tuple[str, int]] = []
        self.outputs: list[tuple[str, str]] = []

    def before_node(self, execution: NodeExecution, block: Block) -> None:
        self.before.append((execution.node_id, execution.cost))

    def on_output(self, execution: NodeExecution, pin: str, value: Any) -> None:
        self.outputs.append((execution.node_id, pin))

    def after_node(self, execution: NodeExecution, block: Block) -> None:
        pass


# --- graphs ------------------------------------------------------------------------------------------
def web_graph(url: str, agentflow: dict[str, Any]) -> Graph:
    b = GraphBuilder("flaky web")
    web = b.node(SendWebRequestBlock, node_id="web", url=url, method="GET")
    b.metadata(web, agentflow=agentflow)
    ok = b.node(AgentOutputBlock, node_id="out_ok", name="ok")
    bad = b.node(AgentOutputBlock, node_id="out_bad", name="bad")
    err = b.node(AgentOutputBlock, node_id="out_err", name="error")
    b.link(web, "response", ok, "value").link(web, "server_error", bad, "value")
    b.link(web, "error", err, "value")
    return b.build()


def web_execution(result: Any) -> NodeExecution:
    (ex,) = [e for e in result.executions if e.node_id == "web"]
    return ex


FAST_RETRY = {"attempts": 4, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "jitter": 0.5}


# --- retries and timeouts ------------------------------------------------------------------------------
def test_retried_until_success_fires_links_once_and_records_attempts(flaky: FlakyServer) -> None:
    flaky.reset(fail_first=2)
    observer = CountingObserver()
    engine = ReferenceEngine(observer_factory=lambda graph, options: observer)
    result = engine.run_sync(
        web_graph(flaky.url, {"retry": FAST_RETRY}), options=RunOptions(settings=SETTINGS)
    )
    assert flaky.requests == 3
    assert result.outputs == {"ok": [{"ok": True}]}  # the two 500s never reached the server_error link
    ex = web_execution(result)
    assert ex.status is ExecStatus.COMPLETED and ex.attempts == 3
    assert ex.outputs == [("response", {"ok": True})]
    assert ex.summary()["attempts"] == 3 and ex.summary()["cached"] is False
    assert result.execution_counts() == {"web": 1, "out_ok": 1}
    assert [n for n, _ in observer.before].count("web") == 1
    assert observer.outputs.count(("web", "response")) == 1
    assert ("web", "server_error") not in observer.outputs


def test_retries_exhausted_route_the_last_attempt_once(flaky: FlakyServer) -> None:
    flaky.reset(fail_first=100)
    result = ReferenceEngine().run_sync(
        web_graph(flaky.url, {"retry": {**FAST_RETRY, "attempts": 3}}), options=RunOptions(settings=SETTINGS)
    )
    assert flaky.requests == 3
    assert result.outputs == {"bad": [{"ok": False}]}
    assert web_execution(result).attempts == 3


def test_without_a_node_retry_the_http_block_makes_one_attempt(flaky: FlakyServer) -> None:
    flaky.reset(fail_first=1)
    result = ReferenceEngine().run_sync(web_graph(flaky.url, {}), options=RunOptions(settings=SETTINGS))
    assert flaky.requests == 1
    assert result.outputs == {"bad": [{"ok": False}]}
    assert web_execution(result).attempts == 1


def test_a_retried_node_is_charged_once(flaky: FlakyServer, pg_dsn: str) -> None:
    flaky.reset(fail_first=2)
    user = f"user-{uuid.uuid4().hex[:8]}"
    pricing = {SendWebRequestBlock.id: [BlockCost(5)]}
    with CreditLedger(pg_dsn) as ledger:
        ledger.grant(user, 100)
        engine = ReferenceEngine(
            observer_factory=lambda graph, options: PlatformObserver(graph, user, "run-1", ledger, None),
            pricing=pricing,
        )
        result = engine.run_sync(
            web_graph(flaky.url, {"retry": FAST_RETRY}),
            options=RunOptions(run_id="run-1", user_id=user, settings=SETTINGS),
        )
        assert flaky.requests == 3 and web_execution(result).attempts == 3
        assert result.cost == 5
        assert ledger.balance(user) == 95
        assert len([t for t in ledger.transactions(user) if t.amount < 0]) == 1


def test_timeout_fails_the_node_with_a_clear_error(flaky: FlakyServer) -> None:
    flaky.reset(delay=1.0)
    started = time.monotonic()
    result = ReferenceEngine().run_sync(
        web_graph(flaky.url, {"timeout_seconds": 0.2}), options=RunOptions(settings=SETTINGS)
    )
    assert time.monotonic() - started < 0.9
    ex = web_execution(result)
    assert ex.status is ExecStatus.FAILED
    assert ex.error == (
        "node web (SendWebRequestBlock) timed out after 0.2 s (timeout_seconds) on attempt 1 of 1"
    )
    assert result.outputs == {"error": [ex.error]}  # the error pin's link fired


def test_timeouts_are_retried(flaky: FlakyServer) -> None:
    flaky.reset(delay=0.5)
    result = ReferenceEngine().run_sync(
        web_graph(flaky.url, {"timeout_seconds": 0.1, "retry": {**FAST_RETRY, "attempts": 2}}),
        options=RunOptions(settings=SETTINGS),
    )
    ex = web_execution(result)
    assert ex.attempts == 2
    assert ex.error is not None and "timed out after 0.1 s" in ex.error and "attempt 2 of 2" in ex.error
    assert result.outputs == {"error": [ex.error]}


def test_bad_node_metadata_fails_that_node_naming_it() -> None:
    graph = web_graph("http://127.0.0.1:9/", {"retry": {"attempts": 0}})
    result = ReferenceEngine().run_sync(graph, options=RunOptions(settings=SETTINGS))
    error = web_execution(result).error
    assert error is not None and "node web (SendWebRequestBlock)" in error and "attempts" in error


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(attempts=5, backoff_seconds=1.0, max_backoff_seconds=3.0, jitter=0.1)
    assert [policy.delay(n, lambda: 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, lambda: 0.0) == pytest.approx(0.9)
    assert policy.delay(1, lambda: 0.999999) == pytest.approx(1.1, rel=1e-4)


# --- circuit breakers --------------------------------------------------------------------------------
def breakers(prefix: str, cooldown: float = 0.5) -> CircuitBreakers:
    """A fresh client each time: like another run process sharing the Redis state."""
    return CircuitBreakers.from_url(REDIS_URL, prefix, failure_threshold=3, cooldown_seconds=cooldown)


def test_breaker_opens_across_runs_fails_fast_and_half_opens(flaky: FlakyServer, prefix: str) -> None:
    provider = "http:127.0.0.1"
    flaky.reset(fail_first=100)
    graph = web_graph(flaky.url, {"retry": {**FAST_RETRY, "attempts": 2}})
    options = RunOptions(settings=SETTINGS)

    first = ReferenceEngine(breakers=breakers(prefix)).run_sync(graph, options=options)
    assert flaky.requests == 2 and first.outputs == {"bad": [{"ok": False}]}
    assert breakers(prefix).state(provider)["failures"] == "2"

    # A second run (another process' view of the same Redis state): the third failure opens it, and
    # the retry fails fast without calling the server.
    second = ReferenceEngine(breakers=breakers(prefix)).run_sync(graph, options=options)
    assert flaky.requests == 3
    ex = web_execution(second)
    assert ex.status is ExecStatus.FAILED and ex.attempts == 2
    assert ex.error is not None
    assert ex.error.startswith("circuit breaker for provider 'http:127.0.0.1' is open after 3 consecutive")
    # Only the final attempt's outputs are routed: the earlier attempt's 500 was held back.
    assert second.outputs == {"error": [ex.error]}

    third = ReferenceEngine(breakers=breakers(prefix)).run_sync(web_graph(flaky.url, {}), options=options)
    assert flaky.requests == 3  # fail fast: the provider was not called
    assert "'http:127.0.0.1' is open" in (web_execution(third).error or "")
    assert web_execution(third).attempts == 0  # nothing was attempted

    # After the cool-down one probe goes through; the provider has recovered, so the breaker closes.
    flaky.reset(fail_first=0)
    time.sleep(0.6)
    fourth = ReferenceEngine(breakers=breakers(prefix)).run_sync(graph, options=options)
    assert fourth.outputs == {"ok": [{"ok": True}]} and flaky.requests == 1
    assert breakers(prefix).state(provider) == {}


def test_half_open_lets_one_probe_through_and_a_failed_probe_reopens(prefix: str) -> None:
    a, b = breakers(prefix, cooldown=0.3), breakers(prefix, cooldown=0.3)
    for _ in range(3):
        a.record("openai", ok=False)
    with pytest.raises(CircuitOpenError, match="provider 'openai' is open"):
        b.before_call("openai")
    time.sleep(0.35)
    a.before_call("openai")  # the probe
    with pytest.raises(CircuitOpenError, match="provider 'openai' is half-open"):
        b.before_call("openai")
    a.record("openai", ok=False)  # the probe failed: open again, for a new cool-down
    with pytest.raises(CircuitOpenError, match="is open"):
        b.before_call("openai")
    time.sleep(0.35)
    b.before_call("openai")
    b.record("openai", ok=True)
    a.before_call("openai")
    assert a.state("openai") == {}
    # Other providers were never affected.
    a.before_call("http:example.com")


def test_redis_outage_means_no_breaker(flaky: FlakyServer) -> None:
    dead = CircuitBreakers.from_url(f"redis://127.0.0.1:{closed_port()}/0", "x", failure_threshold=1)
    flaky.reset(fail_first=100)
    graph = web_graph(flaky.url, {})
    engine = ReferenceEngine(breakers=dead)
    for _ in range(3):
        result = engine.run_sync(graph, options=RunOptions(settings=SETTINGS))
        assert result.outputs == {"bad": [{"ok": False}]}
    assert flaky.requests == 3


# --- output cache -------------------------------------------------------------------------------------
class PureBlock(Block):
    """A pure, costly block that counts its calls."""

    id = "00000000-0000-4000-8000-0000000000c1"
    description = "Doubles a number (pure, cacheable, counted)."
    cacheable = True
    costs = (BlockCost(3),)
    calls = 0

    class Input(BlockInput):
        value: int

    class Output(BlockOutput):
        doubled: int
        parts: list[int]

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        type(self).calls += 1
        yield "doubled", input.value * 2
        yield "parts", [input.value, input.value]


TEST_REGISTRY = BlockRegistry([*(type(b) for b in REGISTRY), PureBlock])


def pure_graph(value: int, agentflow: dict[str, Any] | None = None) -> Graph:
    b = GraphBuilder("pure")
    node = b.node(PureBlock, node_id="pure", value=value)
    if agentflow is not None:
        b.metadata(node, agentflow=agentflow)
    out = b.node(AgentOutputBlock, node_id="out", name="doubled")
    b.link(node, "doubled", out, "value")
    return b.build()


def cached_engine(cache: OutputCache | None, observer: CountingObserver | None = None) -> ReferenceEngine:
    return ReferenceEngine(
        registry=TEST_REGISTRY,
        limits=EngineLimits(),
        cache=cache,
        observer_factory=(lambda graph, options: observer) if observer else None,
    )


def pure_execution(result: Any) -> NodeExecution:
    (ex,) = [e for e in result.executions if e.node_id == "pure"]
    return ex


def test_cache_hit_reuses_outputs_without_running_or_charging(prefix: str) -> None:
    PureBlock.calls = 0
    stats_before = dict(cache_module.STATS)
    observer = CountingObserver()
    first = cached_engine(OutputCache.from_url(REDIS_URL, prefix), observer).run_sync(pure_graph(21))
    miss = pure_execution(first)
    assert PureBlock.calls == 1 and not miss.cached and miss.cost == 3

    # Another process (its own LRU is empty): the entry comes from Redis.
    other = OutputCache.from_url(REDIS_URL, prefix)
    second = cached_engine(other, observer).run_sync(pure_graph(21))
    hit = pure_execution(second)
    assert PureBlock.calls == 1
    assert second.outputs == first.outputs == {"doubled": [42]}
    assert hit.outputs == miss.outputs == [("doubled", 42), ("parts", [21, 21])]
    assert hit.cached and hit.cost == 0 and hit.attempts == 0
    assert hit.summary()["cached"] is True and hit.summary()["cost"] == 0
    assert observer.before == [("pure", 3), ("out", 0), ("pure", 0), ("out", 0)]
    assert second.cost == 0

    # The same process again: served by its LRU.
    third = cached_engine(other).run_sync(pure_graph(21))
    assert pure_execution(third).cached and PureBlock.calls == 1

    # Different input: a miss.
    fourth = cached_engine(other).run_sync(pure_graph(22))
    assert not pure_execution(fourth).cached and PureBlock.calls == 2
    assert fourth.outputs == {"doubled": [44]}

    assert other.counts() == {"hits": 2, "misses": 2}
    assert cache_module.STATS["hits"] - stats_before["hits"] == 2
    assert cache_module.STATS["misses"] - stats_before["misses"] == 2


def test_cache_is_per_user(prefix: str) -> None:
    PureBlock.calls = 0
    cache = OutputCache.from_url(REDIS_URL, prefix)
    cached_engine(cache).run_sync(pure_graph(5), options=RunOptions(user_id="alice"))
    result = cached_engine(cache).run_sync(pure_graph(5), options=RunOptions(user_id="bob"))
    assert not pure_execution(result).cached and PureBlock.calls == 2


def test_cache_entries_expire_after_their_jittered_ttl(prefix: str) -> None:
    PureBlock.calls = 0
    cache = OutputCache.from_url(REDIS_URL, prefix)
    graph = pure_graph(7, {"cache_ttl_seconds": 0.3})
    cached_engine(cache).run_sync(graph)
    assert pure_execution(cached_engine(cache).run_sync(graph)).cached
    time.sleep(0.4)  # past 0.3 s + 10 %
    result = cached_engine(cache).run_sync(graph)
    assert not pure_execution(result).cached and PureBlock.calls == 2
    # The jitter spreads TTLs by +-10 %.
    low = OutputCache(cache.client, prefix, random_fraction=lambda: 0.0)
    high = OutputCache(cache.client, prefix, random_fraction=lambda: 1.0)
    assert (low.jittered(100), high.jittered(100)) == (pytest.approx(90), pytest.approx(110))


def test_node_can_opt_out_and_llm_blocks_need_an_opt_in() -> None:
    PureBlock.calls = 0
    assert node_guard("n", {"agentflow": {"cache": False}}, PureBlock()) is None
    llm = AITextGeneratorBlock()
    plain = node_guard("n", {}, llm)
    assert plain is not None and plain.cache_ttl_seconds is None and plain.breaker
    opted = node_guard("n", {"agentflow": {"cache": True}}, llm)
    assert opted is not None and opted.cache_ttl_seconds == llm.cache_ttl_seconds


def test_redis_outage_degrades_to_no_cache() -> None:
    PureBlock.calls = 0
    dead = OutputCache.from_url(f"redis://127.0.0.1:{closed_port()}/0", "x")
    for _ in range(2):
        result = cached_engine(dead).run_sync(pure_graph(3))
        ex = pure_execution(result)
        assert ex.status is ExecStatus.COMPLETED and not ex.cached and ex.cost == 3
        assert result.outputs == {"doubled": [6]}
    assert PureBlock.calls == 2
