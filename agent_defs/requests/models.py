"""Wire formats of the Redis request streams: what producers push and what the sensor consumes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

# Errors quoted back to producers (dead letters, CLI) stay on one readable line.
MAX_ERRORS_SHOWN = 3
MAX_ERROR_CHARS = 300


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_not_blank)]


class _WireModel(BaseModel):
    # Strict: a wire format from other producers must say what it means ("2" is not a version, true is
    # not a priority); unknown keys are refused so that a typo ("graph_verison") is not silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ExecutionRequest(_WireModel):
    """Run `graph_id` (at `graph_version`, or its active version when None) for `user_id`.

    `request_id` is the idempotency key: the sensor launches the run with run_key=request_id, so a
    request delivered twice still runs once. `priority` becomes the run's Dagster priority tag (the
    stream itself is FIFO; the QueuedRunCoordinator orders queued runs)."""

    request_id: NonEmptyStr
    graph_id: NonEmptyStr
    graph_version: Annotated[int, Field(ge=1)] | None = None
    user_id: NonEmptyStr
    inputs: dict[str, Any] = Field(default_factory=dict)
    input_masks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    priority: int = 0


class CancelRequest(_WireModel):
    """Stop a run, named either by the request that started it or by its Dagster run id."""

    request_id: NonEmptyStr | None = None
    run_id: NonEmptyStr | None = None

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
