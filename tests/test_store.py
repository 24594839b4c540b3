"""The graph store: a directory of export files and a Postgres table, with the same behaviours.

Postgres tests use the real server at 127.0.0.1:5432 (database `test`), each test in a fresh schema
chosen through the DSN's search_path, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from agent_defs.graph import GraphLoadError
from agent_defs.graph.validation import validate_graph
from agent_defs.paths import agents_dir, project_root
from agent_defs.store import (
    DirectoryGraphStore,
    GraphNotFound,
    GraphRef,
    GraphStore,
    GraphStoreError,
    PostgresGraphStore,
    store_from_env,
)
from agent_defs.store.postgres import TABLE

ROOT = project_root()
AGENTFLOW = Path(sys.executable).parent / "agentflow"
BAD_GRAPHS = project_root() / "tests" / "corpus" / "bad_graphs"
STORE_BLOCK = "1ff065e9-88e8-4358-9d82-8dc91f622ba9"  # StoreValueBlock


def export(graph_id: str = "g-1", version: int = 1, name: str = "Demo", value: Any = "x") -> dict[str, Any]:
    """A small valid export; `value` changes its content."""
    return {
        "id": graph_id,
        "version": version,
        "name": name,
        "description": "test graph",
        "nodes": [
            {"id": "a", "block_id": STORE_BLOCK, "input_default": {"input": value}, "metadata": {}},
            {"id": "b", "block_id": STORE_BLOCK, "input_default": {}, "metadata": {}},
        ],
        "links": [
            {
                "id": "l1",
                "source_id": "a",
                "source_name": "output",
                "sink_id": "b",
                "sink_name": "input",
                "is_static": False,
            }
        ],
        "sub_graphs": [],
    }


def actives(store: GraphStore) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for ref in store.refs():
        if ref.active:
            found.setdefault(ref.graph_id, []).append(ref.version)
    return found


@pytest.fixture
def pg_dsn(fresh_pg_schema: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    with fresh_pg_schema() as dsn:  # one schema per test here: each test counts versions from zero
        yield dsn


@pytest.fixture
def pg_store(pg_dsn: str) -> Iterator[PostgresGraphStore]:
    with PostgresGraphStore(pg_dsn) as store:
        yield store


@pytest.fixture(params=["directory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> GraphStore:
    if request.param == "directory":
        return DirectoryGraphStore(tmp_path / "graphs")
    pg: PostgresGraphStore = request.getfixturevalue("pg_store")
    return pg


# --- behaviours of both stores -----------------------------------------------------------------------


def test_round_trip(store: GraphStore) -> None:
    assert isinstance(store, GraphStore)
    assert store.refs() == []
    ref = store.save(export())
    assert (ref.graph_id, ref.version, ref.name, ref.active) == ("g-1", 1, "Demo", True)
    assert store.refs() == [ref]
    graph = store.load("g-1", 1)
    assert (graph.id, graph.version, graph.name) == ("g-1", 1, "Demo")
    assert [n.id for n in graph.nodes] == ["a", "b"]
    assert graph.nodes[0].input_default == {"input": "x"}
    assert [(lk.source_id, lk.sink_name) for lk in graph.links] == [("a", "input")]
    assert validate_graph(graph) == []
    raw = store.load_raw("g-1", 1)
    assert raw.pop("is_active") is True
    assert raw == export()
    assert store.problems() == []


def test_missing_graph_is_a_clear_key_error(store: GraphStore) -> None:
    store.save(export())
    for graph_id, version in (("g-1", 2), ("nope", 1)):
        with pytest.raises(GraphNotFound) as caught:
            store.load(graph_id, version)
        assert isinstance(caught.value, KeyError)
        assert f"{graph_id} v{version}" in str(caught.value)
        with pytest.raises(GraphNotFound):
            store.load_raw(graph_id, version)


def test_save_rejects_what_is_not_a_graph(store: GraphStore) -> None:
    with pytest.raises(GraphLoadError, match="version"):
        store.save({**export(), "version": "one"})
    assert store.refs() == []


def test_different_content_becomes_the_next_version(store: GraphStore) -> None:
    first = store.save(export(value="one"))
    assert store.load_raw("g-1", 1)["is_active"] is True
    second = store.save(export(value="two"))
    assert (first.version, second.version) == (1, 2)
    assert second.active
    assert store.load_raw("g-1", 1)["is_active"] is False
    assert store.load_raw("g-1", 2)["version"] == 2  # the body says the version it is stored as
    assert store.load("g-1", 2).nodes[0].input_default == {"input": "two"}
    assert store.load("g-1", 1).nodes[0].input_default == {"input": "one"}  # v1 unchanged
    third = store.save(export(value="three"))
    assert third.version == 3
    assert [(r.version, r.active) for r in store.refs()] == [(1, False), (2, False), (3, True)]


def test_reimport_is_idempotent(store: GraphStore) -> None:
    ref = store.save(export())
    reordered = dict(reversed(list(export().items())))  # key order is not content
    again = store.save(reordered)
    assert again.graph_id == ref.graph_id and again.version == ref.version and again.active
    assert len(store.refs()) == 1
    # An edited export saved as v2; importing the same edited file again stores nothing new.
    edited = store.save(export(value="edited"))
    assert edited.version == 2
    assert store.save(export(value="edited")).version == 2
    assert [r.version for r in store.refs()] == [1, 2]


def test_exactly_one_active_version(store: GraphStore) -> None:
    store.save(export(version=5, value="five"))
    store.save(export(version=3, value="three"))  # a free version is stored as given, and activated
    store.save(export(graph_id="g-2", name="Other"))
    assert actives(store) == {"g-1": [3], "g-2": [1]}
    store.save(export(version=3, value="changed"))  # taken: becomes v6
    assert actives(store) == {"g-1": [6], "g-2": [1]}
    # Re-importing an old version changes nothing, activation included.
    assert store.save(export(version=5, value="five")) == next(r for r in store.refs() if r.version == 5)
    assert actives(store) == {"g-1": [6], "g-2": [1]}
    assert [r.version for r in store.refs() if r.graph_id == "g-1"] == [3, 5, 6]
    assert store.load_raw("g-1", 6)["is_active"] is True
    assert store.load_raw("g-1", 5)["is_active"] is False


def test_concurrent_saves_get_distinct_versions(store: GraphStore) -> None:
    """8 threads save 8 different graphs under one (id, version): 8 consecutive versions, one active."""
    barrier = threading.Barrier(8)

    def save(i: int) -> GraphRef:
        barrier.wait()
        return store.save(export(value=f"content {i}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        refs = list(pool.map(save, range(8)))
    assert sorted(r.version for r in refs) == list(range(1, 9))
    listed = store.refs()
    assert [r.version for r in listed] == list(range(1, 9))
    assert sum(r.active for r in listed) == 1
    contents = {store.load("g-1", v).nodes[0].input_default["input"] for v in range(1, 9)}
    assert contents == {f"content {i}" for i in range(8)}


# --- directory store ---------------------------------------------------------------------------------


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_directory_bad_files_are_problems_and_the_rest_is_listed(tmp_path: Path) -> None:
    write(tmp_path / "good1.json", export("g-1"))
    write(tmp_path / "broken.json", '{"id": "g-x", "nodes": [')
    write(tmp_path / "list.json", [1, 2])
    write(tmp_path / "noid.json", {"name": "no id", "nodes": []})
    write(tmp_path / "good2.json", export("g-2", version=4, name="Second"))
    write(tmp_path / "_block_ids.json", "not even json")  # `_` files are not graphs
    write(tmp_path / "notes.txt", "not a graph file")
    store = DirectoryGraphStore(tmp_path)
    assert [(r.graph_id, r.version, r.name, r.active) for r in store.refs()] == [
        ("g-1", 1, "Demo", True),
        ("g-2", 4, "Second", True),
    ]
    assert store.refs()[1].source == f"file {tmp_path / 'good2.json'}"
    problems = {p.graph: p.message for p in store.problems()}
    assert set(problems) == {f"file {tmp_path / n}" for n in ("broken.json", "list.json", "noid.json")}
    assert "not valid JSON" in problems[f"file {tmp_path / 'broken.json'}"]
    assert "JSON object" in problems[f"file {tmp_path / 'list.json'}"]
    assert "'id'" in problems[f"file {tmp_path / 'noid.json'}"]
    assert store.load("g-2", 4).name == "Second"


def test_directory_duplicate_id_version_is_a_problem_for_both_files(tmp_path: Path) -> None:
    write(tmp_path / "one.json", export(value="one"))
    write(tmp_path / "two.json", export(value="two"))
    write(tmp_path / "other.json", export("g-2"))
    store = DirectoryGraphStore(tmp_path)
    assert [r.graph_id for r in store.refs()] == ["g-2"]
    problems = store.problems()
    assert sorted(p.graph for p in problems) == [
        f"file {tmp_path / 'one.json'}",
        f"file {tmp_path / 'two.json'}",
    ]
    assert all("g-1 v1" in p.message for p in problems)
    assert "two.json" in next(p.message for p in problems if p.graph.endswith("one.json"))
    with pytest.raises(GraphNotFound):
        store.load("g-1", 1)
    # Saving under the contested key cannot reuse it.
    assert store.save(export(value="three")).version == 2


def test_directory_active_flag_from_the_files(tmp_path: Path) -> None:
    write(tmp_path / "a1.json", export(version=1, value=1))
    write(tmp_path / "a2.json", export(version=2, value=2))
    store = DirectoryGraphStore(tmp_path)
    assert actives(store) == {"g-1": [2]}  # no flags: the highest
    write(tmp_path / "a1.json", {**export(version=1, value=1), "is_active": True})
    assert actives(store) == {"g-1": [1]}  # a lower version flagged active wins
    write(tmp_path / "a2.json", {**export(version=2, value=2), "is_active": True})
    assert actives(store) == {"g-1": [2]}  # several flagged: the highest of them


def test_directory_save_writes_slug_files(tmp_path: Path) -> None:
    store = DirectoryGraphStore(tmp_path / "new")
    ref = store.save(export(name="My Fancy Agent!"))
    assert ref.source == f"file {tmp_path / 'new' / 'my-fancy-agent.v1.json'}"
    store.save(export(name="My Fancy Agent!", value="edited"))
    other = store.save(export(graph_id="g-other", name="My Fancy Agent!"))
    names = sorted(p.name for p in (tmp_path / "new").glob("*.json"))
    assert names == ["my-fancy-agent-g-other.v1.json", "my-fancy-agent.v1.json", "my-fancy-agent.v2.json"]
    assert other.source.endswith("my-fancy-agent-g-other.v1.json")
    # The files agree with the store: exactly one of each graph says is_active.
    flags = {p.name: json.loads(p.read_text())["is_active"] for p in (tmp_path / "new").glob("*.json")}
    assert flags == {
        "my-fancy-agent.v1.json": False,
        "my-fancy-agent.v2.json": True,
        "my-fancy-agent-g-other.v1.json": True,
    }
    assert [p.name for p in (tmp_path / "new").iterdir() if p.suffix == ".part"] == []


def test_the_shipped_agents_directory() -> None:
    store = DirectoryGraphStore(agents_dir())
    assert store.problems() == []
    refs = store.refs()
    assert len(refs) == len(list(agents_dir().glob("*.json"))) >= 3
    for ref in refs:
        assert ref.active
        assert validate_graph(store.load(ref.graph_id, ref.version)) == []


# --- Postgres store ----------------------------------------------------------------------------------


def test_postgres_bad_rows_are_problems_and_the_rest_is_listed(
    pg_store: PostgresGraphStore, pg_dsn: str
) -> None:
    pg_store.save(export("g-1"))
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {TABLE} (graph_id, version, name, body) VALUES "
            "('g-bad', 1, 'bad', '[1, 2]'), ('g-mismatch', 1, 'mm', '{\"id\": \"other\", \"nodes\": []}')"
        )
    conn.close()
    assert [(r.graph_id, r.active) for r in pg_store.refs()] == [
        ("g-1", True),
        ("g-bad", False),
        ("g-mismatch", False),
    ]
    problems = {p.graph: p.message for p in pg_store.problems()}
    assert set(problems) == {f"postgres {TABLE} row (g-bad, v1)", f"postgres {TABLE} row (g-mismatch, v1)"}
    assert "JSON object" in problems[f"postgres {TABLE} row (g-bad, v1)"]
    assert "'other'" in problems[f"postgres {TABLE} row (g-mismatch, v1)"]
    with pytest.raises(GraphLoadError, match="g-bad"):
        pg_store.load("g-bad", 1)
    assert pg_store.load("g-1", 1).name == "Demo"


def test_postgres_one_active_row_is_enforced_by_the_database(
    pg_store: PostgresGraphStore, pg_dsn: str
) -> None:
    pg_store.save(export(value=1))
    pg_store.save(export(value=2))
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT version FROM {TABLE} WHERE is_active")
        assert cur.fetchall() == [(2,)]
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute(f"UPDATE {TABLE} SET is_active = true WHERE version = 1")
    conn.close()


def test_postgres_stores_share_one_table(pg_dsn: str) -> None:
    with PostgresGraphStore(pg_dsn) as a, PostgresGraphStore(pg_dsn) as b:
        a.save(export(value="a"))
        assert b.save(export(value="b")).version == 2
        assert a.refs() == b.refs()


def test_postgres_unreachable_is_a_store_error() -> None:
    store = PostgresGraphStore("host=127.0.0.1 port=1 dbname=test user=postgres connect_timeout=2")
    with pytest.raises(GraphStoreError, match="unreachable"):
        store.refs()


# --- choosing the store from the environment ---------------------------------------------------------


def test_store_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_dsn: str) -> None:
    for var in ("AGENTFLOW_GRAPH_STORE", "AGENTFLOW_DATABASE_URL", "AGENTFLOW_AGENTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    default = store_from_env()
    assert isinstance(default, DirectoryGraphStore) and default.root == agents_dir()
    monkeypatch.setenv("AGENTFLOW_AGENTS_DIR", str(tmp_path))
    chosen = store_from_env()
    assert isinstance(chosen, DirectoryGraphStore) and chosen.root == tmp_path
    monkeypatch.setenv("AGENTFLOW_GRAPH_STORE", "directory")
    assert isinstance(store_from_env(), DirectoryGraphStore)
    monkeypatch.setenv("AGENTFLOW_GRAPH_STORE", "postgres")
    with pytest.raises(GraphStoreError, match="AGENTFLOW_DATABASE_URL"):
        store_from_env()
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", pg_dsn)
    pg = store_from_env()
    assert isinstance(pg, PostgresGraphStore)
    assert pg.refs() == []
    pg.close()
    monkeypatch.setenv("AGENTFLOW_GRAPH_STORE", "sqlite")
    with pytest.raises(GraphStoreError, match="AGENTFLOW_GRAPH_STORE='sqlite'"):
        store_from_env()


# --- the CLI -----------------------------------------------------------------------------------------


def agentflow(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")} | env
    proc = subprocess.run(
        [str(AGENTFLOW), *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=120
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_cli_import_stores_good_files_and_reports_bad_ones(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = shutil.copy(ROOT / "agents" / "count_to_n.json", inbox / "good.json")
    bad = shutil.copy(BAD_GRAPHS / "unknown_block.json", inbox / "bad.json")
    unreadable = write(inbox / "unreadable.json", "{nope")
    env = {"AGENTFLOW_AGENTS_DIR": str(store_dir)}

    proc = agentflow("import", bad, good, unreadable, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    graph_id = json.loads(Path(good).read_text())["id"]
    lines = proc.stdout.splitlines()
    assert f"stored Count to N {graph_id} v1 (active)" in lines
    assert any(line.startswith(f"FAIL {bad}") for line in lines), proc.stdout
    assert "unknown block id" in proc.stdout
    assert any(line.startswith(f"FAIL {unreadable}") for line in lines), proc.stdout
    assert "not valid JSON" in proc.stdout
    assert [p.name for p in store_dir.glob("*.json")] == ["count-to-n.v1.json"]

    # Importing the same file again is idempotent and succeeds.
    again = agentflow("import", good, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == [f"stored Count to N {graph_id} v1 (active)"]

    listed = agentflow("graphs", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.split() == [graph_id, "v1", "active", "Count", "to", "N"]

    # A problem in the store is listed, and makes `graphs` exit 1.
    write(store_dir / "broken.json", "[")
    listed = agentflow("graphs", env=env)
    assert listed.returncode == 1
    assert f"file {store_dir / 'broken.json'}: is not valid JSON" in listed.stdout


def test_cli_import_into_postgres(tmp_path: Path, pg_dsn: str) -> None:
    env = {"AGENTFLOW_GRAPH_STORE": "postgres", "AGENTFLOW_DATABASE_URL": pg_dsn}
    proc = agentflow("import", ROOT / "agents", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = len(list((ROOT / "agents").glob("*.json")))
    assert len(proc.stdout.splitlines()) == count
    assert all(
        line.startswith("stored ") and line.endswith(" v1 (active)") for line in proc.stdout.splitlines()
    )
    listed = agentflow("graphs", env=env)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == count

    bad = agentflow("graphs", env={"AGENTFLOW_GRAPH_STORE": "nosuch"})
    assert bad.returncode == 1
    assert "AGENTFLOW_GRAPH_STORE='nosuch'" in bad.stderr
    assert (
        agentflow("import", ROOT / "agents" / "count_to_n.json", "--store-dir", tmp_path, env=env).returncode
        == 0
    )
    assert [p.name for p in tmp_path.glob("*.json")] == ["count-to-n.v1.json"]
