"""Reading a finished run's results back from Dagster's event log."""

from __future__ import annotations

import json
from typing import Any

from dagster import DagsterEventType, DagsterInstance

from agent_defs.jobs.compiler import SUMMARY_OP, TAG_PREFIX


def _summary_metadata(instance: DagsterInstance, run_id: str) -> dict[str, Any] | None:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_OUTPUT, limit=10_000).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key != SUMMARY_OP:
            continue
        return {key: entry.value for key, entry in event.step_output_data.metadata.items()}
    return None


def read_run_outputs(instance: DagsterInstance, run_id: str) -> dict[str, list[Any]] | None:
    """The graph outputs (name -> list) recorded by the run's summary step; None if it did not run."""
    metadata = _summary_metadata(instance, run_id)
    return json.loads(metadata["graph_outputs"]) if metadata else None


def read_run_summary(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise KeyError(f"no run {run_id} in this Dagster instance")
    metadata = _summary_metadata(instance, run_id) or {}
    succeeded = run.status.value == "SUCCESS"
    return {
        "run_id": run_id,
        "job": run.job_name,
        "status": "COMPLETED" if succeeded else "FAILED",
        "dagster_status": run.status.value,
        "outputs": json.loads(metadata.get("graph_outputs", "{}")),
        "node_execution_counts": json.loads(metadata.get("node_execution_counts", "{}")),
        "failed_nodes": json.loads(metadata.get("failed_nodes", "{}")),
        "node_error_count": int(run.tags.get(f"{TAG_PREFIX}node_error_count", "0")),
    }
