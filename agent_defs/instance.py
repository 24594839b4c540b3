"""The project's own Dagster home: the repo's dagster.yaml, plus dagster-postgres storage when the
Postgres settings are in the environment. Chosen by environment, never by editing files."""

from __future__ import annotations

import os
from pathlib import Path

from agent_defs.paths import project_root

PG_URL_VAR = "DAGSTER_PG_URL"
HOME_VAR = "AGENTFLOW_DAGSTER_HOME"

# dagster-postgres reads the URL from the environment at instance start, so no secret is written here.
# The event log uses a pooled variant of dagster-postgres's storage (see agent_defs/storage).
_POSTGRES_STORAGE = f"""
run_storage:
  module: dagster_postgres.run_storage
  class: PostgresRunStorage
  config:
    postgres_url:
      env: {PG_URL_VAR}
event_log_storage:
  module: agent_defs.storage.pooled_postgres
  class: PooledPostgresEventLogStorage
  config:
    postgres_url:
      env: {PG_URL_VAR}
schedule_storage:
  module: dagster_postgres.schedule_storage
  class: PostgresScheduleStorage
  config:
    postgres_url:
      env: {PG_URL_VAR}
"""


def instance_yaml() -> str:
    base = (project_root() / "dagster.yaml").read_text(encoding="utf-8")
    return base + (_POSTGRES_STORAGE if os.environ.get(PG_URL_VAR) else "")


def prepare_dagster_home() -> Path:
    """Create (or refresh) the Dagster home and point DAGSTER_HOME at it; returns its path."""
    home = Path(os.environ.get(HOME_VAR) or project_root() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_yaml()
    if not config.exists() or config.read_text(encoding="utf-8") != wanted:
        config.write_text(wanted, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def main() -> None:
    """`python -m agent_defs.instance`: prints the home, for shells (export DAGSTER_HOME=$(...))."""
    print(prepare_dagster_home())


if __name__ == "__main__":
    main()
