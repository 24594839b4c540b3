"""Wire formats of the Redis request streams: what producers push and what the sensor consumes."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

# Errors quoted back to producers (dead letters, CLI) stay on one readable line.
MAX_ERRORS_SHOWN = 3
MAX_ERROR_CHARS = 300

# Request limits (README "Request limits and trimming"). Ids end up in run tags, run keys, Redis keys and log lines,
# so they are short and printable; a priority is a small int because the run coordinator sorts on it.
MAX_ID_CHARS = 128
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+\-]*")
ID_RULE = f"1-{MAX_ID_CHARS} characters, letters, digits and . _ : @ + -, starting with a letter or digit"
MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_GRAPH_VERSION = 2**31 - 1
MAX_NAME_CHARS = 256  # an input name, a node id in input_masks, a pin name in a mask
MAX_NAMES = 1_000  # inputs, nodes in input_masks, pins in one node's mask


def _identifier(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"is {len(value)} characters long; an id is {ID_RULE}")
    if not ID_PATTERN.fullmatch(value):
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "._:@+-"))), value[0])
        raise ValueError(f"has a character not allowed in an id ({bad!a}); an id is {ID_RULE}")
    return value


def _names(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_NAMES:
        raise ValueError(f"has {len(value)} entries; at most {MAX_NAMES}")
    for name in value:
        if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise ValueError(f"key {name[:40]!a} is not a name (1-{MAX_NAME_CHARS} printable characters)")
    return value


def _masks(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    _names(value)
    for mask in value.values():
        _names(mask)
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


class _WireModel(BaseModel):
    # Strict: a wire format from other producers must say what it means ("2" is not a version, true is
    # not a priority); unknown keys are refused so that a typo ("graph_verison") is not silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ExecutionRequest(_WireModel):
    """Run `graph_id` (at `graph_version`, or its active version when None) for `user_id`.

    `request_id` is the idempotency key: it becomes at most one run, whatever the number of listeners
    and deliveries (see agent_defs.sensors.requests). `priority` becomes the run's Dagster priority tag (the
    stream itself is FIFO; the QueuedRunCoordinator orders queued runs)."""

    request_id: Identifier
    graph_id: Identifier
    graph_version: Annotated[int, Field(ge=1, le=MAX_GRAPH_VERSION)] | None = None
    user_id: Identifier
    inputs: Annotated[dict[str, Any], AfterValidator(_names)] = Field(default_factory=dict)
    # Which nodes exist is known only with the graph: the sensor checks the node ids before the run.
    input_masks: Annotated[dict[str, dict[str, Any]], AfterValidator(_masks)] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = 0

    def digest(self) -> str:
        """What the request asks for, as a short hash: a second entry with the same request id is a
        producer's retry when its digest is the same, and a conflicting duplicate when it is not."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class CancelRequest(_WireModel):
    """Stop a run, named either by the request that started it or by its Dagster run id."""

    request_id: Identifier | None = None
    run_id: Identifier | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.request_id is None) == (self.run_id is None):
            raise ValueError("give exactly one of request_id or run_id")
        return self


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's errors on one line, each prefixed by the field it is about (e.g. `user_id: Field
    required`), at most a few of them."""
    parts = []
    for error in exc.errors()[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(p) for p in error["loc"]) or "(request)"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - MAX_ERRORS_SHOWN
    text = "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
    return _shorten(text)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


M = TypeVar("M", bound="_WireModel")


def parse_wire(model: type[M], raw: str) -> tuple[M | None, str | None]:
    """(the message, None) or (None, why it is not one). JSON is parsed first so that "not JSON" and
    "not an object" read as such rather than as a pydantic error about the whole input."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return None, "not valid JSON: nested too deeply"
    if not isinstance(data, dict):
        return None, f"must be a JSON object, got {type(data).__name__}"
    try:
        return model.model_validate(data), None
    except ValidationError as exc:
        return None, describe_validation_error(exc)
