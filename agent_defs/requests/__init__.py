"""Redis-side platform pieces: the request queue (execution and cancel requests), live execution
events on pub/sub, and user notifications. No Dagster here; the sensors that consume the queue live
with the rest of the code location."""

from agent_defs.requests.dead_letters import DeadLetter
from agent_defs.requests.env import (
    prefix_from_env,
    redact_url,
    redis_from_env,
    redis_url_from_env,
    webhook_from_env,
)
from agent_defs.requests.events import (
    EventPublisher,
    encode_event,
    event_channel,
    graph_execution_update,
    node_execution_update,
)
from agent_defs.requests.models import CancelRequest, ExecutionRequest, describe_validation_error
from agent_defs.requests.notifications import Notification, NotificationKind, Notifier, NotifyResult
from agent_defs.requests.queue import CancelDelivery, Delivery, RequestQueue
from agent_defs.requests.streams import PendingEntry

__all__ = [
    "CancelDelivery",
    "CancelRequest",
    "DeadLetter",
    "Delivery",
    "EventPublisher",
    "ExecutionRequest",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifyResult",
    "PendingEntry",
    "RequestQueue",
    "describe_validation_error",
    "encode_event",
    "event_channel",
    "graph_execution_update",
    "node_execution_update",
    "prefix_from_env",
    "redact_url",
    "redis_from_env",
    "redis_url_from_env",
    "webhook_from_env",
]
