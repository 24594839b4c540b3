"""Runs one graph on the AutoGPT model (tests/autogpt_model.py), on the reference engine and on the
compiled Dagster job (op per node, regions where needed), and compares what they did: outputs (as
multisets per name), node execution counts and node failures."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autogpt_model import ModelResult, run_model
from dagster import DagsterInstance

from agent_defs.engine import EngineLimits, ReferenceEngine
from agent_defs.graph.model import Graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary

CAP = 300
# One node execution at a time, FIFO: the schedule the model picks (see its docstring).
SEQUENTIAL = EngineLimits(max_node_executions=CAP, node_concurrency=1)


@dataclass(frozen=True)
class Observed:
    """What a run did, in a form two sides can be compared on."""

    outputs: dict[str, Counter[str]]
    counts: dict[str, int]
    failed: dict[str, int]

    @classmethod
    def of(
        cls, outputs: Mapping[str, list[Any]], counts: Mapping[str, int], failed: Mapping[str, int]
    ) -> Observed:
        return cls(
            outputs={name: Counter(_canonical(v) for v in values) for name, values in outputs.items()},
            counts={k: v for k, v in counts.items() if v},
            failed={k: v for k, v in failed.items() if v},
        )


def _canonical(value: Any) -> str:
    # JSON as AutoGPT stores it: tuples are lists, keys are strings.
    return json.dumps(value, sort_keys=True, default=str)


def model_side(graph: Graph, inputs: Mapping[str, Any] | None = None) -> Observed:
    result: ModelResult = run_model(graph, inputs, cap=CAP)
    assert not result.capped, "the model hit the execution cap: the families must stay finite"
    return Observed.of(result.outputs, result.counts, result.failed)


def engine_side(graph: Graph, inputs: Mapping[str, Any] | None = None) -> Observed:
    result = ReferenceEngine(limits=SEQUENTIAL).run_sync(graph, dict(inputs or {}))
    assert result.status.value == "COMPLETED", f"reference run {result.status.value}: {result.error}"
    return Observed.of(result.outputs, result.execution_counts(), result.failed_nodes())


def compiled_side(
    graph: Graph, instance: DagsterInstance, inputs: Mapping[str, Any] | None = None
) -> Observed:
    job = compile_graph(
        graph, fused=False, engine=ReferenceEngine(limits=SEQUENTIAL), console_log_level="ERROR"
    )
    run = job.execute_in_process(
        run_config={"inputs": dict(inputs or {})}, instance=instance, raise_on_error=False
    )
    summary = read_run_summary(instance, run.run_id)
    assert summary["status"] == "COMPLETED", f"compiled run: {summary}"
    return Observed.of(summary["outputs"], summary["node_execution_counts"], summary["failed_nodes"])


def assert_follows_model(
    graph: Graph,
    inputs: Mapping[str, Any] | None = None,
    instance: DagsterInstance | None = None,
) -> Observed:
    """The reference engine (and, with an `instance`, the compiled job) did what the model did."""
    expected = model_side(graph, inputs)
    _same("reference engine", engine_side(graph, inputs), expected)
    if instance is not None:
        _same("compiled job", compiled_side(graph, instance, inputs), expected)
    return expected


def _same(side: str, got: Observed, expected: Observed) -> None:
    differences = [
        f"{what}: {side} {getattr(got, what)} != model {getattr(expected, what)}"
        for what in ("outputs", "counts", "failed")
        if getattr(got, what) != getattr(expected, what)
    ]
    if differences:
        raise AssertionError(f"{side} differs from the AutoGPT model:\n  " + "\n  ".join(differences))
