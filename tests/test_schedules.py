"""Stored schedules become Dagster schedules; bad ones are reported and do not break the others."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_schedule_context

from agent_defs.jobs.catalog import build_catalog
from agent_defs.paths import project_root
from agent_defs.schedules.definitions import build_schedules
from agent_defs.store.directory import DirectoryGraphStore

COUNT_ID = "9b0c7d52-3f51-4c1e-9a57-0d3b8f1e6a01"


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for path in (project_root() / "agents").glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "schedules").mkdir()
    monkeypatch.setenv("AGENTFLOW_AGENTS_DIR", str(tmp_path))
    return tmp_path


def _write(agents: Path, name: str, **fields: object) -> None:
    body = {"name": name, "cron": "*/5 * * * *", "graph_id": COUNT_ID, "user_id": "u1", **fields}
    (agents / "schedules" / f"{name}.json").write_text(json.dumps(body))


def test_stored_schedules_become_dagster_schedules_and_bad_ones_are_reported(agents: Path) -> None:
    _write(agents, "good", timezone="Europe/Berlin", inputs={"limit": 2})
    _write(agents, "bad_cron", cron="every morning")
    _write(agents, "bad_zone", timezone="Mars/Olympus")
    _write(agents, "unknown_graph", graph_id="no-such-graph")
    _write(agents, "unknown_input", inputs={"limitt": 2})
    broken = json.loads((agents / "running_total.json").read_text())
    broken["nodes"][0]["block_id"] = "00000000-0000-4000-8000-00000000dead"
    (agents / "running_total.json").write_text(json.dumps(broken))
    _write(agents, "graph_broken", graph_id=broken["id"])
    (agents / "schedules" / "not_json.json").write_text("{")

    store = DirectoryGraphStore(agents)
    result = build_schedules(build_catalog(store), store)

    assert [s.name for s in result.schedules] == ["good"]
    good = result.schedules[0]
    assert good.job_name == "Count_to_N_v1"
    assert good.execution_timezone == "Europe/Berlin"
    problems = "\n".join(result.problems)
    for expected in (
        "'bad_cron': cron expression 'every morning' is not valid",
        "timezone: Value error, unknown timezone 'Mars/Olympus'",
        "'unknown_graph': graph no-such-graph is not stored or does not validate",
        "'unknown_input': graph 'Count to N' has no input 'limitt'",
        f"'graph_broken': graph {broken['id']} is not stored or does not validate",
        "not_json.json: not valid JSON",
    ):
        assert expected in problems


def test_a_schedule_tick_runs_the_graph_with_its_inputs_and_user(agents: Path) -> None:
    _write(agents, "count_two", inputs={"limit": 2}, user_id="scheduled-user")
    store = DirectoryGraphStore(agents)
    catalog = build_catalog(store)
    (schedule,) = build_schedules(catalog, store).schedules
    with DagsterInstance.ephemeral() as instance:
        (request,) = schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests or []
        assert request.tags["agentflow/user_id"] == "scheduled-user"
        run = catalog.jobs[schedule.job_name]().execute_in_process(
            run_config=request.run_config, instance=instance
        )
        from agent_defs.jobs.results import read_run_summary

        assert read_run_summary(instance, run.run_id)["outputs"] == {"steps": [1.0, 2.0], "final": [2]}


def test_cli_adds_and_lists_schedules(agents: Path) -> None:
    agentflow = str(Path(sys.executable).parent / "agentflow")
    added = subprocess.run(
        [
            agentflow,
            "schedules",
            "add",
            "nightly",
            "--graph",
            COUNT_ID,
            "--cron",
            "0 2 * * *",
            "--timezone",
            "UTC",
            "--user",
            "u9",
            "--inputs-json",
            '{"limit": 4}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    bad = subprocess.run(
        [agentflow, "schedules", "add", "broken", "--graph", COUNT_ID, "--cron", "nope", "--user", "u9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "cron expression 'nope' is not valid" in bad.stderr
    assert not (agents / "schedules" / "broken.json").exists()
    listed = subprocess.run([agentflow, "schedules"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "nightly" in listed.stdout and "0 2 * * *" in listed.stdout and "Count_to_N_v1" in listed.stdout
