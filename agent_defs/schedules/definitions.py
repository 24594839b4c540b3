"""Stored schedules as Dagster schedules; a schedule whose graph is missing or invalid, or whose
inputs do not fit the graph, is reported and left out without affecting the others."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dagster import DefaultScheduleStatus, ScheduleDefinition
from dagster._utils.schedules import is_valid_cron_string

from agent_defs.graph.io_nodes import graph_input_spec
from agent_defs.jobs.catalog import JobCatalog
from agent_defs.jobs.compiler import TAG_PREFIX
from agent_defs.schedules.store import StoredSchedule, load_schedules
from agent_defs.store.base import GraphStore

log = logging.getLogger("agentflow.schedules")


@dataclass
class ScheduleSet:
    schedules: list[ScheduleDefinition] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def job_for_schedule(schedule: StoredSchedule, catalog: JobCatalog) -> str | None:
    matches = [
        (ref.version, name, ref.active)
        for name, ref in catalog.refs.items()
        if ref.graph_id == schedule.graph_id
        and (schedule.graph_version is None or ref.version == schedule.graph_version)
    ]
    if schedule.graph_version is None:
        matches = [m for m in matches if m[2]] or matches[-1:]
    return max(matches)[1] if matches else None


def schedule_problems(schedule: StoredSchedule, catalog: JobCatalog, store: GraphStore) -> list[str]:
    where = f"schedule {schedule.name!r}"
    problems = []
    if not is_valid_cron_string(schedule.cron):
        problems.append(f"{where}: cron expression {schedule.cron!r} is not valid")
    job = job_for_schedule(schedule, catalog)
    version = f" v{schedule.graph_version}" if schedule.graph_version else ""
    if job is None:
        problems.append(f"{where}: graph {schedule.graph_id}{version} is not stored or does not validate")
        return problems
    ref = catalog.refs[job]
    spec = graph_input_spec(store.load(ref.graph_id, ref.version))
    unknown = sorted(set(schedule.inputs) - set(spec))
    if unknown:
        problems.append(f"{where}: graph {ref.name!r} has no input {', '.join(map(repr, unknown))}")
    missing = sorted(n for n, s in spec.items() if s["required"] and n not in schedule.inputs)
    if missing:
        problems.append(f"{where}: required input {', '.join(map(repr, missing))} is not given")
    return problems


def build_schedules(catalog: JobCatalog, store: GraphStore) -> ScheduleSet:
    stored, problems = load_schedules()
    result = ScheduleSet(problems=problems)
    for schedule in stored:
        found = schedule_problems(schedule, catalog, store)
        if found:
            result.problems.extend(found)
            continue
        job = job_for_schedule(schedule, catalog)
        assert job is not None
        result.schedules.append(
            ScheduleDefinition(
                name=schedule.name,
                cron_schedule=schedule.cron,
                execution_timezone=schedule.timezone,
                job_name=job,
                run_config={"inputs": schedule.inputs, "user_id": schedule.user_id},
                tags={f"{TAG_PREFIX}user_id": schedule.user_id, f"{TAG_PREFIX}schedule": schedule.name},
                description=schedule.description or f"{schedule.graph_id} for {schedule.user_id}",
                default_status=DefaultScheduleStatus.RUNNING,
            )
        )
    for problem in result.problems:
        log.warning("schedule skipped: %s", problem)
    return result
