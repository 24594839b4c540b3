"""Where agent graphs are kept: a directory of export files, or a Postgres table. No Dagster."""

from agent_defs.store.base import (
    GraphNotFound,
    GraphRef,
    GraphStore,
    GraphStoreError,
    content_key,
)
from agent_defs.store.directory import DirectoryGraphStore
from agent_defs.store.env import store_from_env
from agent_defs.store.postgres import PostgresGraphStore

__all__ = [
    "DirectoryGraphStore",
    "GraphNotFound",
    "GraphRef",
    "GraphStore",
    "GraphStoreError",
    "PostgresGraphStore",
    "content_key",
    "store_from_env",
]
