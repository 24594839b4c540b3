"""What the engine needs to guard a node execution: the node's effective retry policy, timeout and
cache settings (block defaults, overridden by the node's stored metadata), the errors it raises, the
service interfaces of breakers and the cache, and the cache key. No Redis, no Dagster.

Node metadata (stored graph, `metadata.agentflow`):

    {"retry": {"attempts": 3, "backoff_seconds": 0.5, "max_backoff_seconds": 30, "jitter": 0.1},
     "timeout_seconds": 10,
     "cache": true, "cache_ttl_seconds": 600}
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from blocks.sdk import Block, Credentials, RetryPolicy

METADATA_KEY = "agentflow"
_RETRY_FIELDS = {
    "attempts": int,
    "backoff_seconds": float,
    "max_backoff_seconds": float,
    "jitter": float,
}


class CircuitOpenError(Exception):
    """A provider's circuit breaker is open: the call is not made (never retried by the engine)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(message)
        self.provider = provider


class NodeTimeoutError(TimeoutError):
    """An attempt of a node execution ran past its timeout and was cancelled."""


class BreakerService(Protocol):
    """Circuit breakers shared by all run processes (agent_defs.resilience.breaker)."""

    def before_call(self, provider: str) -> None:
        """Raises CircuitOpenError when the provider's breaker is open (or half-open and probing)."""

    def record(self, provider: str, ok: bool) -> None: ...


class OutputCacheService(Protocol):
    """Outputs of earlier identical executions (agent_defs.resilience.cache)."""

    def get(self, key: str) -> list[tuple[str, Any]] | None: ...

    def put(self, key: str, outputs: Sequence[tuple[str, Any]], ttl_seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeGuard:
    """A node's resilience settings, computed once per run plan. A node without any has no guard and
    runs on the engine's plain fast path."""

    retry: RetryPolicy | None = None
    timeout_seconds: float | None = None
    cache_ttl_seconds: float | None = None  # None: not cached
    breaker: bool = False  # the block names a provider a breaker may guard
    config_error: str | None = None  # bad node metadata: the node fails with this message

    @property
    def buffered(self) -> bool:
        """Whether attempts' yields are held back until the attempt is final (only when it may retry)."""
        return self.retry is not None and self.retry.attempts > 1


def _number(value: Any, where: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, not {value!r}")
    if kind is int:
        if not float(value).is_integer():
            raise ValueError(f"{where} must be a whole number, not {value!r}")
        return int(value)
    return float(value)


def node_guard(node_id: str, metadata: Mapping[str, Any] | None, block: Block) -> NodeGuard | None:
    """The node's guard, or None when neither the block nor the node asks for any resilience."""
    try:
        return _node_guard(node_id, metadata, block)
    except ValueError as exc:
        return NodeGuard(config_error=f"node {node_id} ({block.name}): metadata.{METADATA_KEY}: {exc}")


def _node_guard(node_id: str, metadata: Mapping[str, Any] | None, block: Block) -> NodeGuard | None:
    settings = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"must be an object, not {settings!r}")

    retry = block.retry_policy
    overrides = settings.get("retry")
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise ValueError(f"retry must be an object, not {overrides!r}")
        unknown = set(overrides) - set(_RETRY_FIELDS)
        if unknown:
            raise ValueError(f"retry has unknown keys {sorted(unknown)} (known: {sorted(_RETRY_FIELDS)})")
        values = {k: _number(v, f"retry.{k}", _RETRY_FIELDS[k]) for k, v in overrides.items()}
        # A block without a policy of its own: on a node that asks for retries, every failure is retried.
        base = retry if retry is not None else RetryPolicy(retry_all=True)
        retry = dataclasses.replace(base, **values)  # __post_init__ checks the numbers

    timeout = block.timeout_seconds
    if "timeout_seconds" in settings:
        raw = settings["timeout_seconds"]
        timeout = None if raw is None else _number(raw, "timeout_seconds", float)
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout_seconds must be positive, not {timeout!r}")

    cache_ttl: float | None = None
    if block.cacheable:
        opted = settings.get("cache")
        if opted is not None and not isinstance(opted, bool):
            raise ValueError(f"cache must be true or false, not {opted!r}")
        if opted is True or (opted is None and not block.cache_requires_opt_in):
            cache_ttl = block.cache_ttl_seconds
            if "cache_ttl_seconds" in settings:
                cache_ttl = _number(settings["cache_ttl_seconds"], "cache_ttl_seconds", float)
            if cache_ttl <= 0:
                raise ValueError(f"cache_ttl_seconds must be positive, not {cache_ttl!r}")

    breaker = (
        block.provider is not None
        or bool(block.credentials)
        or type(block).breaker_key is not Block.breaker_key
    )
    if retry is None and timeout is None and cache_ttl is None and not breaker:
        return None
    return NodeGuard(retry=retry, timeout_seconds=timeout, cache_ttl_seconds=cache_ttl, breaker=breaker)


def cache_key(block: Block, model: Any, user_id: str, credentials: Mapping[str, Credentials]) -> str | None:
    """sha256 of the block id, the validated input (canonical JSON), the run's user and the owners of
    the credentials it runs with; None when the input has no JSON form (such an execution is not cached)."""
    try:
        payload = orjson.dumps(
            [
                block.id,
                user_id,
                sorted((pin, c.id, c.owner_user_id) for pin, c in credentials.items()),
                model.model_dump(mode="json"),
            ],
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        )
    except (TypeError, ValueError, orjson.JSONEncodeError, AttributeError):
        return None
    return hashlib.sha256(payload).hexdigest()
