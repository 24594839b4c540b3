"""Stored schedules (cron, timezone, graph, version, inputs, user) that become Dagster schedules."""
