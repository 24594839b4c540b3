"""Structured logs: one JSON object per line, carrying the ids of what is running, secrets redacted.

Every line has `ts` (UTC, ISO 8601), `level`, `logger` and `message`, plus whichever of `user_id`,
`run_id`, `graph_id`, `graph_version`, `node_id`, `node_exec_id`, `block_id` and `block_name` are
known: from the record's `extra=` first, else from the ids bound with `log_context(...)` (a
contextvar, so threads and asyncio tasks each keep their own). Other `extra=` fields listed in
`EXTRA_FIELDS` are kept too.

Redaction: every string of a line is passed through the process-wide `Redactor` (`redactor()`;
add resolved secret values to it) and through any redactor bound with `log_context(redactor=...)`,
before it is serialised, so an escaped form of a secret cannot slip through either. No Dagster here.

`configure_json_logging()` installs the formatter on the root logger (services: `agentflow metrics`);
`node_logger()` is the `agentflow.node` logger the compiled ops write one line per node execution
to, on stderr, so that a run's compute logs carry parseable lines.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from agent_defs.credentials.redaction import Redactor

ID_FIELDS = (
    "user_id",
    "run_id",
    "graph_id",
    "graph_version",
    "node_id",
    "node_exec_id",
    "block_id",
    "block_name",
)
# Further `extra=` fields worth keeping on a line (they describe one node execution or a service).
EXTRA_FIELDS = ("status", "walltime_ms", "cost", "error", "step", "service", "port", "host", "source")
NODE_LOGGER = "agentflow.node"

_context: ContextVar[Mapping[str, Any] | None] = ContextVar("agentflow_log_context", default=None)
_redactor = Redactor()


def redactor() -> Redactor:
    """The process-wide redaction hook: every secret added here is masked in every JSON line."""
    return _redactor


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind ids (and optionally `redactor=`, a run's own Redactor) to every line logged inside."""
    merged = {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind_redactor(scrub: Redactor) -> None:
    """Apply `scrub` to every line logged from now on in the current asyncio task (or thread), as
    `log_context(redactor=...)` does, without a `with` block: for a task that ends with its work,
    such as the engine's task of one node execution."""
    _context.set({**(_context.get() or {}), "redactor": scrub})


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring."""

    def __init__(self, redactors: Iterable[Redactor] = ()) -> None:
        super().__init__()
        self.redactors = list(redactors)

    def format(self, record: logging.LogRecord) -> str:
        bound = _context.get() or {}
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ID_FIELDS + EXTRA_FIELDS:
            value = record.__dict__.get(key)
            if value is None:
                value = bound.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exception"] = record.exc_text
        redactors = [_redactor, *self.redactors]
        run_redactor = bound.get("redactor")
        if isinstance(run_redactor, Redactor):
            redactors.append(run_redactor)
        for scrub in redactors:
            line = scrub.redact_obj(line)
        return json.dumps(line, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (compute-log capture and pytest swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_MARK = "_agentflow_json"


def configure_json_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to `stream` (default: stderr at emit time) as JSON lines.
    Idempotent: a handler installed by an earlier call is replaced, others are left alone."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def node_logger() -> logging.Logger:
    """`agentflow.node`: JSON lines on stderr whatever the root logger does (it does not propagate,
    so a service that also configured JSON logging does not print each line twice)."""
    logger = logging.getLogger(NODE_LOGGER)
    if not any(getattr(h, _MARK, False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


def log_node_executions(
    executions: Iterable[Any],
    *,
    run_id: str,
    user_id: str | None,
    graph_id: str,
    graph_version: int | None = None,
    step: str | None = None,
) -> None:
    """One `agentflow.node` line per node execution (engine `NodeExecution`s): INFO when it
    completed, ERROR when it failed (its error, already redacted by the engine, and redacted again)."""
    logger = node_logger()
    if not logger.isEnabledFor(logging.ERROR):
        return
    for e in executions:
        failed = e.error is not None
        level = logging.ERROR if failed else logging.INFO
        if not logger.isEnabledFor(level):
            continue
        status = getattr(e.status, "value", e.status)
        logger.log(
            level,
            f"node {e.node_id} ({e.block_name}) {status}",
            extra={
                "user_id": user_id,
                "run_id": run_id,
                "graph_id": graph_id,
                "graph_version": graph_version,
                "node_id": e.node_id,
                "node_exec_id": e.id,
                "block_id": e.block_id,
                "block_name": e.block_name,
                "status": status,
                "walltime_ms": round(e.walltime * 1000, 3),
                "cost": e.cost,
                "error": e.error,
                "step": step,
            },
        )
