"""The output cache: outputs of an identical earlier execution of a cacheable block, within a TTL.

Entries live in Redis (`<prefix>:cache:out:<sha256>`, the key computed by
agent_defs.resilience.policy.cache_key) so that every run process and pod shares them, behind a small
per-process LRU that keeps each entry until the Redis entry expires. TTLs are spread by +-10 % so that
entries written together do not expire together. Hits and misses are counted twice: in this module
(`STATS`, per process) and in Redis (`<prefix>:cache:hits`, `<prefix>:cache:misses`, for a metrics
endpoint that must add up every process).

A Redis outage degrades to no cache: lookups miss, nothing is stored (not even in the LRU, so the
processes never disagree), and the outage is logged once per retry period. Never a failed run.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis

log = logging.getLogger(__name__)

LRU_SIZE_VAR = "AGENTFLOW_CACHE_LRU_SIZE"
CACHE_SWITCH_VAR = "AGENTFLOW_OUTPUT_CACHE"  # "0", "false", "off": no output cache

# Per-process counters (read by the metrics exporter): hits, misses, and Redis errors.
STATS: dict[str, int] = {"hits": 0, "misses": 0, "errors": 0}
_stats_lock = threading.Lock()


def _count(name: str) -> None:
    with _stats_lock:
        STATS[name] += 1


def cache_enabled_from_env() -> bool:
    return os.environ.get(CACHE_SWITCH_VAR, "").strip().lower() not in ("0", "false", "off", "no")


class OutputCache:
    """The engine's `cache` service (agent_defs.resilience.policy.OutputCacheService)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "agentflow",
        lru_size: int = 256,
        ttl_jitter: float = 0.1,
        retry_redis_after_seconds: float = 5.0,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lru_size = lru_size
        self.ttl_jitter = ttl_jitter
        self.retry_redis_after_seconds = retry_redis_after_seconds
        self._random = random_fraction
        self._lru: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (monotonic expiry, payload)
        self._lock = threading.Lock()
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, prefix: str, **options: Any) -> OutputCache:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
        options.setdefault("lru_size", int(os.environ.get(LRU_SIZE_VAR, "") or 256))
        return cls(client, prefix, **options)

    # --- service ---------------------------------------------------------------------------------
    def get(self, key: str) -> list[tuple[str, Any]] | None:
        payload = self._lru_get(key)
        if payload is None and self._redis_ok():
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.get(self._entry(key))
                pipe.pttl(self._entry(key))
                payload, pttl = pipe.execute()
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)
                payload = None
            else:
                if payload is not None and isinstance(pttl, int) and pttl > 0:
                    self._lru_put(key, payload, pttl / 1000)
        hit = payload is not None
        self._count(hit)
        if payload is None:
            return None
        return [(str(pin), value) for pin, value in orjson.loads(payload)]

    def put(self, key: str, outputs: Sequence[tuple[str, Any]], ttl_seconds: float) -> None:
        if not self._redis_ok():
            return
        try:
            payload = orjson.dumps([[pin, value] for pin, value in outputs])
        except (TypeError, orjson.JSONEncodeError):
            return  # outputs with no JSON form are not cached
        ttl = self.jittered(ttl_seconds)
        try:
            self.client.set(self._entry(key), payload, px=max(1, int(ttl * 1000)))
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)
            return
        self._lru_put(key, payload, ttl)

    def jittered(self, ttl_seconds: float) -> float:
        """The TTL spread by +-ttl_jitter, so entries written together expire apart."""
        return ttl_seconds * (1 + self.ttl_jitter * (2 * self._random() - 1))

    def counts(self) -> dict[str, int]:
        """Hits and misses of every process (the Redis counters)."""
        values = self.client.mget(self._counter("hits"), self._counter("misses"))
        return {"hits": int(values[0] or 0), "misses": int(values[1] or 0)}

    def clear_local(self) -> None:
        with self._lock:
            self._lru.clear()

    # --- internals ---------------------------------------------------------------------------------
    def _entry(self, key: str) -> str:
        return f"{self.prefix}:cache:out:{key}"

    def _counter(self, name: str) -> str:
        return f"{self.prefix}:cache:{name}"

    def _count(self, hit: bool) -> None:
        name = "hits" if hit else "misses"
        _count(name)
        if self._redis_ok():
            try:
                self.client.incr(self._counter(name))
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)

    def _lru_get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._lru.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._lru[key]
                return None
            self._lru.move_to_end(key)
            return entry[1]

    def _lru_put(self, key: str, payload: bytes, ttl_seconds: float) -> None:
        if self.lru_size <= 0:
            return
        with self._lock:
            self._lru[key] = (time.monotonic() + ttl_seconds, payload)
            self._lru.move_to_end(key)
            while len(self._lru) > self.lru_size:
                self._lru.popitem(last=False)

    def _redis_ok(self) -> bool:
        return time.monotonic() >= self._down_until

    def _redis_failed(self, exc: Exception) -> None:
        _count("errors")
        if self._redis_ok():
            log.warning(
                "output cache off for %gs: Redis is unavailable (%s: %s)",
                self.retry_redis_after_seconds,
                type(exc).__name__,
                exc,
            )
        self._down_until = time.monotonic() + self.retry_redis_after_seconds
