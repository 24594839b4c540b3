"""Circuit breakers per external provider, shared by every run process through Redis.

State of provider P lives in the hash `<prefix>:breaker:<P>` (fields state, failures, opened_at) and
a half-open probe is the key `<prefix>:breaker:<P>:probe`:

- closed: calls go through; each provider failure adds to `failures`, a success resets it;
- open: after `failure_threshold` consecutive failures; calls fail fast with CircuitOpenError naming
  the provider, until `cooldown_seconds` have passed since it opened;
- half-open: after the cool-down, the first caller to take the probe key (SET NX, expiring) makes one
  probe call while the others still fail fast; a success closes the breaker, a failure re-opens it.

Times are Redis server time (TIME inside the scripts), so all processes and pods agree. A Redis outage
means no breaker: every call is allowed (and the outage logged once per retry period), never a failed run.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import redis

from agent_defs.resilience.policy import CircuitOpenError

log = logging.getLogger(__name__)

FAILURES_VAR = "AGENTFLOW_BREAKER_FAILURES"
COOLDOWN_VAR = "AGENTFLOW_BREAKER_COOLDOWN_SECONDS"

# KEYS: hash, probe. ARGV: cooldown seconds, probe ttl ms, probe token.
# Returns {verdict, opened_at, failures, now} with verdict closed | open | probe | half-open.
_BEFORE_CALL = """
local s = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'failures')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if s[1] ~= 'open' then return {'closed', '0', tostring(s[3] or '0'), tostring(now)} end
local opened = tonumber(s[2]) or 0
if now - opened < tonumber(ARGV[1]) then return {'open', tostring(opened), tostring(s[3]), tostring(now)} end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
  return {'probe', tostring(opened), tostring(s[3]), tostring(now)}
end
return {'half-open', tostring(opened), tostring(s[3]), tostring(now)}
"""

# KEYS: hash, probe. ARGV: failure threshold, key ttl seconds. Returns the consecutive failures.
_FAILURE = """
local f = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'open' or f >= tonumber(ARGV[1]) then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000))
  redis.call('DEL', KEYS[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return f
"""


class CircuitBreakers:
    """The engine's `breakers` service (agent_defs.resilience.policy.BreakerService)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "agentflow",
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        probe_timeout_seconds: float = 60.0,
        retry_redis_after_seconds: float = 5.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        self.client = client
        self.prefix = prefix
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.probe_timeout_seconds = probe_timeout_seconds
        self.retry_redis_after_seconds = retry_redis_after_seconds
        self._before_call = client.register_script(_BEFORE_CALL)
        self._failure = client.register_script(_FAILURE)
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, prefix: str, **options: Any) -> CircuitBreakers:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=1.0, decode_responses=True
        )
        return cls(client, prefix, **options)

    @classmethod
    def from_env(cls, url: str, prefix: str) -> CircuitBreakers:
        return cls.from_url(
            url,
            prefix,
            failure_threshold=int(os.environ.get(FAILURES_VAR, "") or 5),
            cooldown_seconds=float(os.environ.get(COOLDOWN_VAR, "") or 30.0),
        )

    def _keys(self, provider: str) -> list[str]:
        key = f"{self.prefix}:breaker:{provider}"
        return [key, f"{key}:probe"]

    def _redis_ok(self) -> bool:
        return time.monotonic() >= self._down_until

    def _redis_failed(self, exc: Exception) -> None:
        if self._redis_ok():
            log.warning(
                "circuit breakers off for %gs: Redis is unavailable (%s: %s)",
                self.retry_redis_after_seconds,
                type(exc).__name__,
                exc,
            )
        self._down_until = time.monotonic() + self.retry_redis_after_seconds

    def before_call(self, provider: str) -> None:
        if not self._redis_ok():
            return
        try:
            verdict, opened_at, failures, now = self._before_call(
                keys=self._keys(provider),
                args=[self.cooldown_seconds, int(self.probe_timeout_seconds * 1000), uuid.uuid4().hex],
            )
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)
            return
        if verdict in ("closed", "probe"):
            return
        if verdict == "open":
            remaining = max(0.0, self.cooldown_seconds - (float(now) - float(opened_at)))
            raise CircuitOpenError(
                provider,
                f"circuit breaker for provider {provider!r} is open after {failures} consecutive "
                f"failures: failing fast without calling it (next probe in {remaining:.1f} s)",
            )
        raise CircuitOpenError(
            provider,
            f"circuit breaker for provider {provider!r} is half-open and another call is probing "
            "it: failing fast without calling it",
        )

    def record(self, provider: str, ok: bool) -> None:
        if not self._redis_ok():
            return
        keys = self._keys(provider)
        try:
            if ok:
                self.client.delete(*keys)  # closed, no failures
            else:
                ttl = int(max(3600.0, self.cooldown_seconds * 10))
                self._failure(keys=keys, args=[self.failure_threshold, ttl])
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)

    def state(self, provider: str) -> dict[str, str]:
        """The stored state (for tests and operators): {} when closed with no failures."""
        raw = self.client.hgetall(self._keys(provider)[0])
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
