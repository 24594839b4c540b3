"""Live execution updates on Redis pub/sub, in AutoGPT's shape (`data/event_bus.py`).

Channel `execution_event/{user_id}/{graph_id}/{graph_exec_id}`, message JSON `{"payload": event}`;
events are `node_execution_update` and `graph_execution_update` dicts (see the builders below).

Publishing is best effort: pub/sub has no delivery guarantee anyway, and a Redis outage must never
fail or stall a run. Errors are logged once when an outage starts (not once per event), and after a
failure events are dropped without trying for a cool-down (5 s, doubling while Redis stays down, at
most 60 s), so that a run does not pay a connect timeout and the client's retries per event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024 * 1024  # a pub/sub message is copied to every subscriber's buffer
DEFAULT_COOLDOWN_S = 5.0
MAX_COOLDOWN_S = 60.0
NODE_EXECUTION_UPDATE = "node_execution_update"
GRAPH_EXECUTION_UPDATE = "graph_execution_update"


def event_channel(user_id: str, graph_id: str, run_id: str) -> str:
    return f"execution_event/{user_id}/{graph_id}/{run_id}"


class EventPublisher:
    """Publishes execution events; `publish` never raises (see the module docstring)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        max_bytes: int = MAX_MESSAGE_BYTES,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = redis_client
        self.max_bytes = max_bytes
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failing = False
        self._retry_at = 0.0
        self._next_cooldown_s = cooldown_s
        self.dropped = 0  # events not published because Redis failed (or was cooling down)

    def publish(self, user_id: str, graph_id: str, run_id: str, event: Mapping[str, Any]) -> bool:
        """Publish `{"payload": event}`; True when Redis accepted it (whether or not anyone listens)."""
        try:
            message = encode_event(event, self.max_bytes)
        except Exception as exc:  # an unserialisable event is a bug, but never the run's failure
            self.dropped += 1
            logger.warning("execution event for run %s not published: cannot encode it (%s)", run_id, exc)
            return False
        if self._failing and self._clock() < self._retry_at:
            self.dropped += 1
            return False
        try:
            self.client.publish(event_channel(user_id, graph_id, run_id), message)
        except Exception as exc:  # any Redis or socket error: best effort by design
            self.dropped += 1
            self._retry_at = self._clock() + self._next_cooldown_s
            self._next_cooldown_s = min(self._next_cooldown_s * 2, max(MAX_COOLDOWN_S, self.cooldown_s))
            if not self._failing:
                self._failing = True
                logger.warning(
                    "execution events are not being published (Redis: %s: %s); runs continue, "
                    "events are dropped until Redis answers again",
                    type(exc).__name__,
                    exc,
                )
            return False
        if self._failing:
            self._failing = False
            self._next_cooldown_s = self.cooldown_s
            logger.info("execution events are published again (%d dropped meanwhile)", self.dropped)
        return True


def encode_event(event: Mapping[str, Any], max_bytes: int = MAX_MESSAGE_BYTES) -> str:
    """`{"payload": event}` as JSON of at most `max_bytes` UTF-8 bytes. An oversized event keeps its
    small fields (ids, status, times) and has its largest fields replaced, one at a time, by a marker
    `{"truncated": true, "original_bytes": n}`; the payload then carries `"truncated": true`."""
    message = _dumps({"payload": dict(event)})
    size = len(message.encode("utf-8"))
    if size <= max_bytes:
        return message
    payload: dict[str, Any] = {**event, "truncated": True, "original_bytes": size}
    sizes = {key: len(_dumps(value).encode("utf-8")) for key, value in event.items()}
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        payload[key] = {"truncated": True, "original_bytes": sizes[key]}
        message = _dumps({"payload": payload})
        if len(message.encode("utf-8")) <= max_bytes:
            return message
    # Only if max_bytes is absurdly small or the event has thousands of keys.
    return _dumps({"payload": {"truncated": True, "original_bytes": size}})


def _dumps(value: Any) -> str:
    # default=str: block outputs may hold datetimes, UUIDs, Decimals...; a live view wants text.
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _time(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def node_execution_update(
    *,
    user_id: str,
    graph_id: str,
    graph_version: int,
    graph_exec_id: str,
    node_exec_id: str,
    node_id: str,
    block_id: str,
    status: str,
    input_data: Mapping[str, Any] | None = None,
    output_data: Mapping[str, list[Any]] | None = None,
    add_time: datetime | str | None = None,
    queue_time: datetime | str | None = None,
    start_time: datetime | str | None = None,
    end_time: datetime | str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A node execution's state, as AutoGPT's NodeExecutionEvent: `output_data` maps each output pin
    to the list of values yielded on it so far; status is INCOMPLETE, QUEUED, RUNNING, COMPLETED,
    TERMINATED or FAILED."""
    return {
        "event_type": NODE_EXECUTION_UPDATE,
        "user_id": user_id,
        "graph_id": graph_id,
        "graph_version": graph_version,
        "graph_exec_id": graph_exec_id,
        "node_exec_id": node_exec_id,
        "node_id": node_id,
        "block_id": block_id,
        "status": status,
        "input_data": dict(input_data or {}),
        "output_data": {pin: list(values) for pin, values in (output_data or {}).items()},
        "add_time": _time(add_time),
        "queue_time": _time(queue_time),
        "start_time": _time(start_time),
        "end_time": _time(end_time),
        "error": error,
    }


def graph_execution_update(
    *,
    user_id: str,
    graph_id: str,
    graph_version: int,
    graph_exec_id: str,
    status: str,
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, list[Any]] | None = None,
    add_time: datetime | str | None = None,
    start_time: datetime | str | None = None,
    end_time: datetime | str | None = None,
    stats: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A run's state, as AutoGPT's GraphExecutionEvent (`id` is the run id there; `graph_exec_id`
    repeats it so that node and graph events share the key). `stats` e.g. node_count,
    node_error_count, walltime, cost."""
    return {
        "event_type": GRAPH_EXECUTION_UPDATE,
        "id": graph_exec_id,
        "graph_exec_id": graph_exec_id,
        "user_id": user_id,
        "graph_id": graph_id,
        "graph_version": graph_version,
        "status": status,
        "inputs": dict(inputs or {}),
        "outputs": {name: list(values) for name, values in (outputs or {}).items()},
        "add_time": _time(add_time),
        "start_time": _time(start_time),
        "end_time": _time(end_time),
        "stats": dict(stats or {}),
        "error": error,
    }
