"""Redis and webhook settings from the environment, read when asked (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent_defs.env_values import int_from_env

if TYPE_CHECKING:
    import redis

REDIS_URL_VAR = "AGENTFLOW_REDIS_URL"
REDIS_PREFIX_VAR = "AGENTFLOW_REDIS_PREFIX"
WEBHOOK_VAR = "AGENTFLOW_NOTIFY_WEBHOOK_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "agentflow"


def redis_url_from_env() -> str:
    return os.environ.get(REDIS_URL_VAR, "").strip() or DEFAULT_REDIS_URL


def redis_from_env(**options: Any) -> redis.Redis:
    """A client for `AGENTFLOW_REDIS_URL` (default redis://127.0.0.1:6379/0). No connection is made
    until the first command. A bounded connect timeout so that an unreachable Redis is an error in
    seconds, not a hang; no read timeout, because XREADGROUP BLOCK legitimately waits."""
    import redis

    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("decode_responses", True)
    return redis.Redis.from_url(redis_url_from_env(), **options)


def prefix_from_env() -> str:
    """`AGENTFLOW_REDIS_PREFIX` (default `agentflow`): the first part of every key, so that several
    deployments (or test runs) can share one Redis."""
    return os.environ.get(REDIS_PREFIX_VAR, "").strip() or DEFAULT_PREFIX


def webhook_from_env() -> str | None:
    """`AGENTFLOW_NOTIFY_WEBHOOK_URL`, or None when unset or empty (no webhook)."""
    return os.environ.get(WEBHOOK_VAR, "").strip() or None


def redact_url(url: str) -> str:
    """scheme://host:port of a URL, for messages: Redis URLs carry passwords and webhook URLs often
    carry their secret in the path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "(unparseable URL)"


@dataclass(frozen=True)
class QueueSettings:
    """The request queue's settings (README "Request limits and trimming"), read when a listener
    starts a tick."""

    reclaim_idle_ms: int = 60_000
    max_entry_bytes: int = 1024 * 1024
    dead_letter_max: int = 10_000
    claim_ttl_s: int = 30 * 24 * 3600
    listen_ms: int = 4_500

    @classmethod
    def from_env(cls) -> QueueSettings:
        defaults = cls()
        return cls(
            reclaim_idle_ms=int_from_env("AGENTFLOW_REQUEST_RECLAIM_MS", defaults.reclaim_idle_ms, 0),
            max_entry_bytes=int_from_env("AGENTFLOW_REQUEST_MAX_BYTES", defaults.max_entry_bytes, 1),
            dead_letter_max=int_from_env("AGENTFLOW_DEAD_LETTER_MAX", defaults.dead_letter_max, 1),
            claim_ttl_s=int_from_env("AGENTFLOW_REQUEST_CLAIM_TTL_S", defaults.claim_ttl_s, 1),
            listen_ms=int_from_env("AGENTFLOW_REQUEST_LISTEN_MS", defaults.listen_ms, 0),
        )
