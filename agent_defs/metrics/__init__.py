"""Prometheus metrics of the platform, computed at scrape time from the run storage, the event log and
Redis (see collector.py for where each number comes from); `agentflow metrics --port N` serves them."""

from agent_defs.metrics.collector import AgentflowCollector, DagsterSource
from agent_defs.metrics.server import build_registry, make_app, serve

__all__ = ["AgentflowCollector", "DagsterSource", "build_registry", "make_app", "serve"]
