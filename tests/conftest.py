"""Shared fixtures: fresh Postgres schemas, and the local LLM and Jina-style servers
(tests/support_servers.py)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support_servers import JinaStyleServer, ScriptedLLMServer

BASE_DSN = os.environ.get("AGENTFLOW_TEST_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@contextmanager
def _fresh_schema() -> Iterator[str]:
    """A DSN whose search_path is a new, empty schema, dropped afterwards."""
    import psycopg2

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(BASE_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{BASE_DSN} options='-csearch_path={schema}'"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture(scope="session")
def fresh_pg_schema() -> Callable[[], AbstractContextManager[str]]:
    return _fresh_schema


@pytest.fixture(scope="module")
def pg_dsn(fresh_pg_schema: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    with fresh_pg_schema() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ScriptedLLMServer]:
    server = ScriptedLLMServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jina_server() -> Iterator[JinaStyleServer]:
    server = JinaStyleServer()
    server.start()
    yield server
    server.stop()
