"""Stored schedules: one JSON file per schedule in `agents/schedules/` (no Dagster here).

A schedule names a graph id and optionally a version (None = whatever version is active when the
code location loads), a cron expression with its timezone, the run's inputs and the user it runs as.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent_defs.paths import agents_dir

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class StoredSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique; letters, digits and underscores (a Dagster name)")
    cron: str
    timezone: str = "UTC"
    graph_id: str
    graph_version: int | None = Field(default=None, ge=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    user_id: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must use only letters, digits and underscores")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


def schedules_dir() -> Path:
    return agents_dir() / "schedules"


def load_schedules(directory: Path | None = None) -> tuple[list[StoredSchedule], list[str]]:
    """Every readable schedule, and a problem line (file and reason) for each unreadable one."""
    directory = directory or schedules_dir()
    schedules: list[StoredSchedule] = []
    problems: list[str] = []
    if not directory.is_dir():
        return schedules, problems
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            schedule = StoredSchedule.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            problems.append(f"schedule file {path}: {_describe(exc)}")
            continue
        if schedule.name in seen:
            problems.append(
                f"schedule file {path}: name {schedule.name!r} is already used by {seen[schedule.name]}"
            )
            continue
        seen[schedule.name] = path
        schedules.append(schedule)
    return schedules, problems


def save_schedule(schedule: StoredSchedule, directory: Path | None = None) -> Path:
    directory = directory or schedules_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{schedule.name}.json"
    path.write_text(schedule.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'schedule'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)
