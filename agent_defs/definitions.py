"""The Dagster code location `agent_defs`: assembles what the domain modules define."""

from dagster import repository

from agent_defs.jobs.catalog import PreflightCache, build_catalog
from agent_defs.store.env import store_from_env


@repository(name="agentflow", description="Every stored agent graph version, compiled to a job")
def agentflow() -> dict:
    # A dict of callables keeps job construction lazy (Dagster's documented lazy-repository form).
    return {"jobs": build_catalog(store_from_env(), PreflightCache.in_dagster_home()).jobs}
