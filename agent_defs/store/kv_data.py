"""Durable per-user key-value data for PersistInformation / RetrieveInformation (AutoGPT's execution
KV data): a Postgres table when the platform database is configured, else a SQLite file in the Dagster
home, so the embedded default keeps values between runs too. No Dagster.

Values are JSON. Both stores are safe to share between the run workers of one machine (SQLite locks
the file) and, for Postgres, between machines.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agent_defs.pgpool import PgPool
from blocks import KeyValueStore

TABLE = "agentflow_kv_data"
SQLITE_FILE = "agentflow_kv.sqlite"


class KeyValueStoreError(RuntimeError):
    """The store cannot be reached or the value cannot be stored."""


def _encode(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise KeyValueStoreError(f"the value cannot be stored as JSON: {exc}") from None


class _BlockingStore:
    """The async KeyValueStore face over a store's blocking `_get` / `_put` (run in a worker thread)."""

    def _get(self, user_id: str, key: str) -> Any | None:
        raise NotImplementedError

    def _put(self, user_id: str, key: str, data: str, node_exec_id: str) -> None:
        raise NotImplementedError

    async def get(self, user_id: str, key: str) -> Any | None:
        return await asyncio.to_thread(self._get, user_id, key)

    async def put(self, user_id: str, key: str, value: Any, node_exec_id: str) -> Any:
        data = _encode(value)
        await asyncio.to_thread(self._put, user_id, key, data, node_exec_id)
        return json.loads(data)


class SqliteKeyValueStore(_BlockingStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ready = False

    def __repr__(self) -> str:
        return f"SqliteKeyValueStore({self.path})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            with self._lock:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (user_id TEXT NOT NULL, key TEXT NOT NULL, "
                    "data TEXT NOT NULL, node_exec_id TEXT NOT NULL, updated_at REAL NOT NULL, "
                    "PRIMARY KEY (user_id, key))"
                )
                conn.commit()
                self._ready = True
        return conn

    def _get(self, user_id: str, key: str) -> Any | None:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT data FROM {TABLE} WHERE user_id = ? AND key = ?", (user_id, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def _put(self, user_id: str, key: str, data: str, node_exec_id: str) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {TABLE} (user_id, key, data, node_exec_id, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id, key) DO UPDATE SET data = excluded.data, "
                "node_exec_id = excluded.node_exec_id, updated_at = excluded.updated_at",
                (user_id, key, data, node_exec_id, time.time()),
            )


_PG_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    data JSONB NOT NULL,
    node_exec_id TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
)
"""


class PostgresKeyValueStore(_BlockingStore):
    def __init__(self, dsn: str) -> None:
        self._pool = PgPool(dsn, schema_sql=_PG_SCHEMA, error=KeyValueStoreError, what="key-value data")

    def __repr__(self) -> str:
        return "PostgresKeyValueStore()"  # never the DSN

    def _get(self, user_id: str, key: str) -> Any | None:
        with self._pool.transaction() as cur:
            cur.execute(f"SELECT data::text FROM {TABLE} WHERE user_id = %s AND key = %s", (user_id, key))
            row = cur.fetchone()
        return None if row is None else json.loads(row[0])

    def _put(self, user_id: str, key: str, data: str, node_exec_id: str) -> None:
        with self._pool.transaction() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (user_id, key, data, node_exec_id) VALUES (%s, %s, %s::jsonb, %s) "
                "ON CONFLICT (user_id, key) DO UPDATE SET data = EXCLUDED.data, "
                "node_exec_id = EXCLUDED.node_exec_id, updated_at = now()",
                (user_id, key, data, node_exec_id),
            )

    def close(self) -> None:
        self._pool.close()


def kv_store_for(database_url: str, home: Path | None) -> KeyValueStore | None:
    """The platform database's store when it is configured, else a SQLite file in `home` (None: no
    durable place, e.g. an ephemeral Dagster instance)."""
    if database_url:
        return PostgresKeyValueStore(database_url)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        return SqliteKeyValueStore(home / SQLITE_FILE)
    return None
