"""Choosing the graph store from the environment, read when asked (never at import)."""

from __future__ import annotations

import os

from agent_defs.paths import agents_dir
from agent_defs.store.base import GraphStore, GraphStoreError

STORE_VAR = "AGENTFLOW_GRAPH_STORE"
DATABASE_VAR = "AGENTFLOW_DATABASE_URL"
AGENTS_DIR_VAR = "AGENTFLOW_AGENTS_DIR"


def store_from_env() -> GraphStore:
    """`AGENTFLOW_GRAPH_STORE`: `directory` (default; AGENTFLOW_AGENTS_DIR or agents/) or `postgres`
    (AGENTFLOW_DATABASE_URL, a libpq DSN or URL)."""
    kind = os.environ.get(STORE_VAR, "").strip().lower() or "directory"
    if kind == "directory":
        from agent_defs.store.directory import DirectoryGraphStore

        return DirectoryGraphStore(agents_dir())  # AGENTFLOW_AGENTS_DIR is honoured there
    if kind == "postgres":
        from agent_defs.store.postgres import PostgresGraphStore

        dsn = os.environ.get(DATABASE_VAR, "").strip()
        if not dsn:
            raise GraphStoreError(
                f"{STORE_VAR}=postgres needs {DATABASE_VAR} (a libpq DSN or postgresql:// URL)"
            )
        return PostgresGraphStore(dsn)
    raise GraphStoreError(
        f"{STORE_VAR}={os.environ[STORE_VAR]!r} is not a graph store; use 'directory' or 'postgres'"
    )
