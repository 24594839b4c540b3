"""The preflight cache (verdicts on stored graphs kept in the Dagster home) never outlives the code
that gave them: a verdict written by another version of agentflow is ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from agent_defs.jobs.catalog import PreflightCache, build_catalog
from agent_defs.paths import agents_dir
from agent_defs.store.directory import DirectoryGraphStore

STALE = "refused by the rules of an older agentflow"


def _store(root: Path) -> DirectoryGraphStore:
    (root / "agents").mkdir()
    shutil.copy(agents_dir() / "count_to_n.json", root / "agents" / "count_to_n.json")
    return DirectoryGraphStore(root / "agents")


def test_verdicts_written_by_another_version_of_the_code_are_ignored(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = tmp_path / PreflightCache.FILE_NAME
    # What an older agentflow wrote: same format and depth limit, and a verdict its rules gave.
    older = {
        "settings": {"format": PreflightCache.FORMAT, "max_op_depth": 500},
        "entries": {PreflightCache.key(ref): [STALE] for ref in store.refs()},
    }
    path.write_text(json.dumps(older), encoding="utf-8")

    catalog = build_catalog(store, PreflightCache(path, depth_limit=500))

    assert "Count_to_N_v1" in catalog.jobs, catalog.problems
    assert not any(STALE in problem for problem in catalog.problems), catalog.problems


def test_verdicts_of_this_code_are_reused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = tmp_path / PreflightCache.FILE_NAME
    first = PreflightCache(path, depth_limit=500)
    build_catalog(store, first)
    first.save()
    # A verdict planted under this code's own settings is what the next load believes.
    again = PreflightCache(path, depth_limit=500)
    for ref in store.refs():
        again.put(ref, [STALE])
    again.save()

    catalog = build_catalog(store, PreflightCache(path, depth_limit=500))

    assert "Count_to_N_v1" not in catalog.jobs
    assert any(STALE in problem for problem in catalog.problems), catalog.problems
