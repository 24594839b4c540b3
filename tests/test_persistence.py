"""PersistInformation / RetrieveInformation: values a user's runs keep between runs, in SQLite (the
embedded default, in the Dagster home) or Postgres (the platform database), on the reference engine,
in compiled Dagster jobs and through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from dagster import DagsterInstance

from agent_defs.engine import ReferenceEngine, RunOptions, RunStatus
from agent_defs.graph import Graph, load_graph_file
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import project_root
from agent_defs.store.kv_data import (
    TABLE,
    KeyValueStoreError,
    PostgresKeyValueStore,
    SqliteKeyValueStore,
    kv_store_for,
)
from blocks import KeyValueStore
from blocks.library.persistence import PersistInformationBlock, RetrieveInformationBlock

INPUT = "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b"
OUTPUT = "363ae599-353e-4804-937e-b2ee3cef3da4"


def _export(
    graph_id: str, nodes: list[dict[str, Any]], links: list[tuple[str, str, str, str]]
) -> dict[str, Any]:
    return {
        "id": graph_id,
        "version": 1,
        "name": graph_id,
        "description": "",
        "nodes": [{"metadata": {}, **n} for n in nodes],
        "links": [
            {
                "id": f"l{i}",
                "source_id": s,
                "source_name": sp,
                "sink_id": t,
                "sink_name": tp,
                "is_static": False,
            }
            for i, (s, sp, t, tp) in enumerate(links)
        ],
    }


def writer_export(scope: str = "across_agents") -> dict[str, Any]:
    """Stores its input `note` under the key "note"."""
    return _export(
        "kv-writer",
        [
            {"id": "in", "block_id": INPUT, "input_default": {"name": "note"}},
            {
                "id": "keep",
                "block_id": PersistInformationBlock.id,
                "input_default": {"key": "note", "scope": scope},
            },
            {"id": "out", "block_id": OUTPUT, "input_default": {"name": "stored"}},
        ],
        [("in", "result", "keep", "value"), ("keep", "value", "out", "value")],
    )


def reader_export(scope: str = "across_agents", graph_id: str = "kv-reader") -> dict[str, Any]:
    """Reads the key "note" (default "nothing yet")."""
    return _export(
        graph_id,
        [
            {
                "id": "recall",
                "block_id": RetrieveInformationBlock.id,
                "input_default": {"key": "note", "scope": scope, "default_value": "nothing yet"},
            },
            {"id": "out", "block_id": OUTPUT, "input_default": {"name": "note"}},
        ],
        [("recall", "value", "out", "value")],
    )


def _graph(tmp_path: Path, export: dict[str, Any]) -> Graph:
    path = tmp_path / f"{export['id']}.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    return load_graph_file(path)


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fresh_pg_schema: Callable[[], AbstractContextManager[str]],
) -> Iterator[KeyValueStore]:
    if request.param == "sqlite":
        yield SqliteKeyValueStore(tmp_path / "kv.sqlite")
        return
    with fresh_pg_schema() as dsn:
        pg = PostgresKeyValueStore(dsn)
        yield pg
        pg.close()


def test_store_round_trip_replace_and_isolation(store: KeyValueStore) -> None:
    async def go() -> None:
        assert await store.get("alice", "k") is None
        assert await store.put("alice", "k", {"a": [1, 2.5, None, "x"]}, "exec-1") == {
            "a": [1, 2.5, None, "x"]
        }
        assert await store.get("alice", "k") == {"a": [1, 2.5, None, "x"]}
        await store.put("alice", "k", "replaced", "exec-2")
        assert await store.get("alice", "k") == "replaced"
        assert await store.get("bob", "k") is None  # per user
        with pytest.raises(KeyValueStoreError, match="cannot be stored as JSON"):
            await store.put("alice", "k", object(), "exec-3")
        assert await store.get("alice", "k") == "replaced"  # a refused value changes nothing

    asyncio.run(go())


def test_values_outlive_the_run_per_user_and_scope(store: KeyValueStore, tmp_path: Path) -> None:
    engine = ReferenceEngine(kv_store=store)
    writer, reader = _graph(tmp_path, writer_export()), _graph(tmp_path, reader_export())

    first = engine.run_sync(reader, {}, RunOptions(user_id="alice"))
    assert first.outputs == {"note": ["nothing yet"]}
    wrote = engine.run_sync(writer, {"note": "buy milk"}, RunOptions(user_id="alice"))
    assert wrote.status is RunStatus.COMPLETED and wrote.outputs == {"stored": ["buy milk"]}
    # Another run, another agent (scope across_agents), the same user: the value is there.
    assert engine.run_sync(reader, {}, RunOptions(user_id="alice")).outputs == {"note": ["buy milk"]}
    # Another user sees nothing of it.
    assert engine.run_sync(reader, {}, RunOptions(user_id="bob")).outputs == {"note": ["nothing yet"]}
    # within_agent keys by graph: another agent does not see the writer's within-agent value.
    engine.run_sync(
        _graph(tmp_path, writer_export("within_agent")), {"note": "private"}, RunOptions(user_id="alice")
    )
    other = _graph(tmp_path, reader_export("within_agent", graph_id="kv-other"))
    assert engine.run_sync(other, {}, RunOptions(user_id="alice")).outputs == {"note": ["nothing yet"]}


def test_without_a_store_the_blocks_say_so(tmp_path: Path) -> None:
    result = ReferenceEngine().run_sync(_graph(tmp_path, writer_export()), {"note": "x"})
    (keep,) = [e for e in result.executions if e.node_id == "keep"]
    assert keep.error is not None and "no key-value store" in keep.error


def test_compiled_jobs_keep_values_in_the_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTFLOW_DATABASE_URL", raising=False)
    writer, reader = _graph(tmp_path, writer_export()), _graph(tmp_path, reader_export())
    home = tmp_path / "home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as instance:
        for graph, inputs in ((writer, {"note": "from a job"}), (reader, {})):
            run = compile_graph(graph).execute_in_process(
                run_config={"inputs": inputs, "user_id": "carol"}, instance=instance, raise_on_error=False
            )
            summary = read_run_summary(instance, run.run_id)
            assert summary["status"] == "COMPLETED", summary
    assert summary["outputs"] == {"note": ["from a job"]}
    assert (home / "agentflow_kv.sqlite").is_file()


def test_compiled_jobs_use_the_platform_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_pg_schema: Callable[[], AbstractContextManager[str]],
) -> None:
    writer = _graph(tmp_path, writer_export())
    with fresh_pg_schema() as dsn, DagsterInstance.ephemeral() as instance:
        monkeypatch.setenv("AGENTFLOW_DATABASE_URL", dsn)
        run = compile_graph(writer).execute_in_process(
            run_config={"inputs": {"note": "in postgres"}, "user_id": "dave"},
            instance=instance,
            raise_on_error=False,
        )
        assert read_run_summary(instance, run.run_id)["status"] == "COMPLETED"
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT user_id, key, data FROM {TABLE}")
            assert cur.fetchall() == [("dave", "global#note", "in postgres")]
        conn.close()


def test_an_ephemeral_instance_without_a_database_has_no_store() -> None:
    assert kv_store_for("", None) is None


def test_cli_runs_share_values(tmp_path: Path) -> None:
    writer = tmp_path / "writer.json"
    reader = tmp_path / "reader.json"
    writer.write_text(json.dumps(writer_export()), encoding="utf-8")
    reader.write_text(json.dumps(reader_export()), encoding="utf-8")
    env = {**os.environ, "AGENTFLOW_DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("AGENTFLOW_DATABASE_URL", None)
    cli = Path(sys.executable).parent / "agentflow"

    def run(*args: str) -> str:
        proc = subprocess.run(
            [str(cli), "run", *args, "--user", "erin"],
            capture_output=True,
            text=True,
            env=env,
            cwd=project_root(),
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    run(str(writer), "--input", "note=remember me")
    assert 'note = "remember me"' in run(str(reader))
    assert 'note = "remember me"' in run(str(reader), "--engine", "dagster")
