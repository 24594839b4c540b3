"""The preloaded run launcher: workers fork from a warm process, yet see graphs stored after it started."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent_defs.launcher import PreloadedRunLauncher
from agent_defs.paths import project_root


def _job_names(queue: object) -> None:
    import agent_defs

    queue.put(sorted(agent_defs.agentflow.job_names))  # type: ignore[attr-defined]


def test_a_worker_forked_after_a_graph_was_stored_sees_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    shutil.copy(project_root() / "agents" / "count_to_n.json", agents)
    monkeypatch.setenv("AGENTFLOW_AGENTS_DIR", str(agents))
    monkeypatch.setenv("AGENTFLOW_DAGSTER_HOME", str(tmp_path / "home"))
    context = PreloadedRunLauncher()._forkserver()

    def names_in_a_new_worker() -> list[str]:
        queue = context.Queue()
        worker = context.Process(target=_job_names, args=(queue,))
        worker.start()
        names = queue.get(timeout=120)
        worker.join(timeout=30)
        return names

    assert names_in_a_new_worker() == ["Count_to_N_v1"]  # the forkserver is warm from here on
    later = json.loads((project_root() / "agents" / "ticket_triage.json").read_text())
    (agents / "ticket_triage.json").write_text(json.dumps(later))
    assert names_in_a_new_worker() == ["Count_to_N_v1", "Ticket_Triage_v1"]
