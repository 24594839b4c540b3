"""A small psycopg2 connection pool with one-transaction cursors, for the platform's own tables (the
graph store, the credit ledger, the credentials store): a few idle connections per
process (a forked child never reuses its parent's sockets), a broken connection is never reused, and
the tables are created on first use under a transaction-scoped advisory lock, because
`CREATE TABLE IF NOT EXISTS` still races between concurrent creators. No Dagster.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

# Advisory lock class of every agentflow lock; object 0 serialises schema creation, so every agentflow
# DDL statement runs one at a time, whichever module issues it.
LOCK_CLASS = 0x61676631  # "agf1"
SCHEMA_LOCK = 0


class PgPool:
    """Connections to one DSN; `transaction()` yields a cursor committed on success, else rolled back.

    Connection failures are raised as `error` (the caller's own exception class) with `what` naming
    the database's role, so a user sees "credit ledger database unreachable: ..." rather than a
    psycopg2 traceback. Other psycopg2 errors propagate for the caller to interpret.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema_sql: str,
        error: type[Exception],
        what: str,
        max_idle_connections: int = 4,
    ) -> None:
        self.dsn = dsn
        self._schema_sql = schema_sql
        self._error = error
        self._what = what
        self._max_idle = max_idle_connections
        self._idle: list[psycopg2.extensions.connection] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"PgPool({self._what})"  # never the DSN: it may hold a password

    def _connect(self) -> psycopg2.extensions.connection:
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not share its parent's sockets
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        try:
            return psycopg2.connect(self.dsn)
        except psycopg2.OperationalError as exc:
            raise self._error(f"{self._what} database unreachable: {str(exc).strip()}") from None

    def _release(self, conn: psycopg2.extensions.connection) -> None:
        healthy = not conn.closed and conn.status == psycopg2.extensions.STATUS_READY
        with self._lock:
            if healthy and self._pid == os.getpid() and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def transaction(self, ensure_schema: bool = True) -> Iterator[psycopg2.extensions.cursor]:
        if ensure_schema and not self._schema_ready:
            with self.transaction(ensure_schema=False) as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, SCHEMA_LOCK))
                cur.execute(self._schema_sql)
            self._schema_ready = True
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            conn.close()  # a broken connection is never reused
            raise self._error(f"{self._what} database error: {str(exc).strip()}") from None
        finally:
            self._release(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
