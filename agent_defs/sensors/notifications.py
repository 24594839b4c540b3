"""Run status sensors: a notification for the run's user when a run succeeds, fails, or is stopped by
a zero balance (Redis list, and the webhook when configured), plus the run-level live event."""

from __future__ import annotations

import os

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    run_failure_sensor,
    run_status_sensor,
)

from agent_defs.jobs.compiler import TAG_PREFIX
from agent_defs.sensors.requests import USER_TAG

STOPPED_BY_TAG = f"{TAG_PREFIX}stopped_by"


def _user(context: RunStatusSensorContext) -> str:
    run = context.dagster_run
    config_user = (run.run_config or {}).get("user_id") if isinstance(run.run_config, dict) else None
    return run.tags.get(USER_TAG) or config_user or "local"


def _deliver(context: RunStatusSensorContext, kind: str, error: str | None) -> None:
    import redis

    from agent_defs.jobs.results import read_run_outputs
    from agent_defs.requests.env import prefix_from_env, redis_from_env, webhook_from_env
    from agent_defs.requests.events import EventPublisher, graph_execution_update
    from agent_defs.requests.notifications import Notifier

    run = context.dagster_run
    user = _user(context)
    graph_id = run.tags.get(f"{TAG_PREFIX}graph_id", "")
    payload = {
        "run_id": run.run_id,
        "job": run.job_name,
        "graph_id": graph_id,
        "graph_version": run.tags.get(f"{TAG_PREFIX}graph_version"),
        "request_id": run.tags.get(f"{TAG_PREFIX}request_id"),
        "status": run.status.value,
        "error": error,
    }
    try:
        client = redis_from_env(socket_timeout=5.0)
        Notifier(client, webhook_from_env(), prefix=prefix_from_env()).notify(user, kind, payload)
        outputs = read_run_outputs(context.instance, run.run_id) or {}
        event = graph_execution_update(
            user_id=user,
            graph_id=graph_id,
            graph_version=int(run.tags.get(f"{TAG_PREFIX}graph_version", "0") or 0),
            graph_exec_id=run.run_id,
            status="COMPLETED" if run.status is DagsterRunStatus.SUCCESS else "FAILED",
            outputs=outputs,
            error=error,
        )
        EventPublisher(client).publish(user, graph_id, run.run_id, event)
    except redis.RedisError as exc:  # best effort: the run's outcome is already recorded
        context.log.warning(f"notification for run {run.run_id} not delivered: {type(exc).__name__}")


def notification_sensors() -> list[SensorDefinition]:
    status = (
        DefaultSensorStatus.RUNNING if os.environ.get("AGENTFLOW_REDIS_URL") else DefaultSensorStatus.STOPPED
    )

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        name="agentflow_notify_success",
        default_status=status,
        minimum_interval_seconds=1,
        description="Notifies the run's user when an agent run succeeds.",
    )
    def notify_success(context: RunStatusSensorContext) -> None:
        _deliver(context, "RUN_SUCCEEDED", None)

    @run_failure_sensor(
        name="agentflow_notify_failure",
        default_status=status,
        minimum_interval_seconds=1,
        description="Notifies the run's user when an agent run fails, or is stopped by a zero balance.",
    )
    def notify_failure(context: RunFailureSensorContext) -> None:
        stopped_by = context.dagster_run.tags.get(STOPPED_BY_TAG)
        kind = "ZERO_BALANCE" if stopped_by == "InsufficientBalanceError" else "RUN_FAILED"
        message = context.failure_event.message if context.failure_event else None
        _deliver(context, kind, message)

    return [notify_success, notify_failure]
