"""The Dagster code location `agent_defs`: assembles what the domain modules define."""

from dagster import repository

from agent_defs.jobs.catalog import PreflightCache, build_catalog
from agent_defs.schedules.definitions import build_schedules
from agent_defs.sensors.notifications import notification_sensors
from agent_defs.sensors.requests import request_sensors
from agent_defs.store.env import store_from_env


@repository(name="agentflow", description="Every stored agent graph version, compiled to a job")
def agentflow() -> dict:
    store = store_from_env()
    catalog = build_catalog(store, PreflightCache.in_dagster_home())
    schedules = build_schedules(catalog, store)
    sensors = [*request_sensors(catalog), *notification_sensors()]
    # Dicts of callables keep job construction lazy (Dagster's lazy-repository form).
    return {
        "jobs": catalog.jobs,
        "schedules": {s.name: s for s in schedules.schedules},
        "sensors": {s.name: s for s in sensors},
    }
