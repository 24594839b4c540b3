"""Run config of a compiled job: the graph's inputs as a typed form, plus the user and input masks.

The launchpad shows the job-level schema (one field per graph input, with its type, default and
description); a config mapping hands every op the same small dict.
"""

from __future__ import annotations

from typing import Any

from dagster import Any as DagsterAny
from dagster import (
    Bool,
    ConfigMapping,
    ConfigurableResource,
    Field,
    Float,
    Int,
    Noneable,
    Permissive,
    Shape,
    String,
)

from agent_defs.graph.io_nodes import graph_input_spec
from agent_defs.graph.model import Graph

RUN_RESOURCE_KEY = "agent_run"


class AgentRunParams(ConfigurableResource):
    """One run's parameters, shared by all its ops. A resource rather than op config: one config
    schema for the whole code location instead of one per op keeps compiling 1,000 graphs cheap."""

    inputs: dict[str, Any] = {}
    user_id: str = "local"
    input_masks: dict[str, dict[str, Any]] = {}


_DAGSTER_TYPES = {"string": String, "integer": Int, "number": Float, "boolean": Bool}


def _input_field(spec: dict[str, Any]) -> Field:
    config_type = _DAGSTER_TYPES.get(spec["type"] or "", DagsterAny)
    description = spec["description"] or None
    if spec["default"] is None:
        # Optional, as in AutoGPT and the reference engine: an input node given no value (or null)
        # yields nothing and the nodes that wait for it do not run.
        return Field(Noneable(config_type), is_required=False, description=description)
    return Field(config_type, default_value=spec["default"], is_required=False, description=description)


def job_config_schema(graph: Graph) -> dict[str, Field]:
    inputs = {name: _input_field(spec) for name, spec in graph_input_spec(graph).items()}
    return {
        "inputs": Field(
            Shape(inputs),
            default_value={},
            is_required=False,
            description="The graph's inputs, by input node name",
        ),
        "user_id": Field(String, default_value="local", description="The user the run belongs to"),
        "input_masks": Field(
            Permissive(),
            default_value={},
            description="Per-node input overrides: {node_id: {pin: value}}",
        ),
    }


def job_config_mapping(graph: Graph, console_log_level: str = "INFO") -> ConfigMapping:
    def to_run_config(config: dict[str, Any]) -> dict[str, Any]:
        params = {
            # An input given null is an input without a value (the resource's map takes no nulls).
            "inputs": {k: v for k, v in (config.get("inputs") or {}).items() if v is not None},
            "user_id": config["user_id"],
            "input_masks": config.get("input_masks") or {},
        }
        return {
            "resources": {RUN_RESOURCE_KEY: {"config": params}},
            # The mapping owns the whole run config, so the console logger is configured here.
            "loggers": {"console": {"config": {"log_level": console_log_level}}},
        }

    return ConfigMapping(config_schema=job_config_schema(graph), config_fn=to_run_config)
