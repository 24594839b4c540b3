"""dagster-postgres event log storage that keeps its connections.

Stock dagster-postgres uses SQLAlchemy's NullPool: every event it writes opens and closes a new
PostgreSQL connection, and a step writes about six events. This subclass is the same storage with
a small connection pool per process, selected in the instance config as
`event_log_storage: {module: agent_defs.storage.pooled_postgres, class: PooledPostgresEventLogStorage}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import pool as db_pool

# Per process: a run worker writes from one thread; the webserver and daemon read from a few.
POOL_SIZE = 2
MAX_OVERFLOW = 4


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            poolclass=db_pool.QueuePool,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_pre_ping=True,  # a server restart must not break a long-lived process
            pool_recycle=600,
        )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
