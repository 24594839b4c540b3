"""Graphs as rows of one Postgres table, for deployments where several processes share the graphs.

    agentflow_graph_versions(graph_id, version, name, body jsonb, is_active, created_at)

The table lives in the connection's search_path (so a schema can be chosen with
`options=-csearch_path=...` in the DSN). A partial unique index allows one active row per graph id.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2.extras import Json

from agent_defs.graph import Graph, GraphProblem, parse_graph
from agent_defs.pgpool import LOCK_CLASS, PgPool
from agent_defs.store.base import (
    GraphNotFound,
    GraphRef,
    GraphStoreError,
    checked_export,
    choose_version,
    content_key,
)

TABLE = "agentflow_graph_versions"

_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    graph_id text NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    name text NOT NULL,
    body jsonb NOT NULL,
    is_active boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (graph_id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_one_active ON {TABLE} (graph_id) WHERE is_active;
"""


class PostgresGraphStore:
    def __init__(self, dsn: str, max_idle_connections: int = 4) -> None:
        self.dsn = dsn
        self._pool = PgPool(
            dsn,
            schema_sql=_SCHEMA_SQL,
            error=GraphStoreError,
            what="graph store",
            max_idle_connections=max_idle_connections,
        )

    def __repr__(self) -> str:
        return f"PostgresGraphStore(table {TABLE})"  # never the DSN: it may hold a password

    def _transaction(self) -> AbstractContextManager[psycopg2.extensions.cursor]:
        """A cursor in one transaction: committed on success, rolled back on any error."""
        return self._pool.transaction()

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------------

    def _source(self, graph_id: str, version: int) -> str:
        return f"postgres {TABLE} row ({graph_id}, v{version})"

    def refs(self) -> list[GraphRef]:
        with self._transaction() as cur:
            cur.execute(f"SELECT graph_id, version, name, is_active FROM {TABLE} ORDER BY graph_id, version")
            rows = cur.fetchall()
        return [GraphRef(g, v, name, active, self._source(g, v)) for g, v, name, active in rows]

    def problems(self) -> list[GraphProblem]:
        # Rows written by hand may not be exports; the loader reports the details when loaded.
        with self._transaction() as cur:
            cur.execute(
                f"""SELECT graph_id, version, jsonb_typeof(body), jsonb_typeof(body->'nodes'),
                           body->>'id', body->'version'
                    FROM {TABLE}
                    WHERE jsonb_typeof(body) <> 'object'
                       OR jsonb_typeof(body->'nodes') IS DISTINCT FROM 'array'
                       OR body->>'id' IS DISTINCT FROM graph_id
                       OR (body ? 'version' AND body->'version' <> to_jsonb(version))
                    ORDER BY graph_id, version"""
            )
            rows = cur.fetchall()
        problems = []
        for graph_id, version, body_type, nodes_type, body_id, body_version in rows:
            if body_type != "object":
                reason = f"body must be a JSON object, got {body_type}"
            elif nodes_type != "array":
                reason = "body has no 'nodes' list"
            elif body_id != graph_id:
                reason = f"body id {body_id!r} differs from the row's graph_id"
            else:
                reason = f"body version {body_version!r} differs from the row's version"
            problems.append(GraphProblem(self._source(graph_id, version), reason))
        return problems

    def _row(self, graph_id: str, version: int) -> tuple[Any, bool]:
        with self._transaction() as cur:
            cur.execute(
                f"SELECT body, is_active FROM {TABLE} WHERE graph_id = %s AND version = %s",
                (graph_id, version),
            )
            row = cur.fetchone()
        if row is None:
            raise GraphNotFound(graph_id, version, f"postgres table {TABLE}")
        return row[0], bool(row[1])

    def load_raw(self, graph_id: str, version: int) -> dict[str, Any]:
        """The stored export, with `is_active` set from the row."""
        body, active = self._row(graph_id, version)
        if not isinstance(body, dict):
            return {"body": body}  # parse_graph then reports the row as not a graph
        body["is_active"] = active
        return body

    def load(self, graph_id: str, version: int) -> Graph:
        body, _ = self._row(graph_id, version)
        return parse_graph(body, source=self._source(graph_id, version))

    # --- writing -------------------------------------------------------------------------------------

    def save(self, export: Mapping[str, Any]) -> GraphRef:
        body, graph = checked_export(export)
        key = content_key(body)
        with self._transaction() as cur:
            # Serialises saves of one graph even before it has a row to lock.
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, graph.id))
            cur.execute(
                f"SELECT version, body, is_active FROM {TABLE} WHERE graph_id = %s FOR UPDATE",
                (graph.id,),
            )
            rows = cur.fetchall()
            stored = {v: content_key(b) if isinstance(b, dict) else None for v, b, _ in rows}
            version, exists = choose_version(graph.version, key, stored)
            if exists:
                # The same graph again: nothing is written, activation is left as it is.
                active = any(v == version and a for v, _, a in rows)
                name = next(b.get("name") for v, b, _ in rows if v == version) or graph.id
                return GraphRef(graph.id, version, str(name), active, self._source(graph.id, version))
            body["version"] = version
            body.pop("is_active", None)  # the column says which version is active
            # Deactivate first: the one-active index is checked row by row, not at commit.
            cur.execute(
                f"UPDATE {TABLE} SET is_active = false WHERE graph_id = %s AND is_active", (graph.id,)
            )
            cur.execute(
                f"INSERT INTO {TABLE} (graph_id, version, name, body, is_active) VALUES (%s, %s, %s, %s, true)",
                (graph.id, version, graph.name, Json(body)),
            )
        return GraphRef(graph.id, version, graph.name, True, self._source(graph.id, version))
