"""Every stored graph version as a lazily compiled Dagster job.

Listing validates each graph (cheap, no Dagster) so a bad graph is reported and skipped before
Dagster sees its name; compiling happens only when Dagster asks for the job, so a run worker, which
asks for one job, never compiles the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import JobDefinition

from agent_defs.compile.plan import plan_compile
from agent_defs.graph.model import Graph
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph, compile_mode, job_name
from agent_defs.jobs.run_config import job_config_schema
from agent_defs.store.base import GraphRef, GraphStore

log = logging.getLogger("agentflow.catalog")


@dataclass
class JobCatalog:
    jobs: dict[str, Callable[[], JobDefinition]] = field(default_factory=dict)
    refs: dict[str, GraphRef] = field(default_factory=dict)  # job name -> graph version
    problems: list[str] = field(default_factory=list)


def _preflight(graph: Graph) -> list[str]:
    """Everything that would stop the graph compiling, found without building Dagster objects."""
    problems = [str(p) for p in validate_graph(graph)]
    if problems:
        return problems
    try:
        plan_compile(graph, fused=compile_mode(graph) == "fused")
        job_config_schema(graph)  # Dagster checks input defaults against their types here
    except Exception as exc:  # a graph must never break the code location
        return [f"{graph.ref}: cannot be compiled: {type(exc).__name__}: {exc}"]
    return []


def build_catalog(store: GraphStore) -> JobCatalog:
    catalog = JobCatalog()
    catalog.problems.extend(str(p) for p in store.problems())
    for ref in store.refs():
        try:
            graph = store.load(ref.graph_id, ref.version)
        except Exception as exc:
            catalog.problems.append(f"{ref.source}: cannot be loaded: {exc}")
            continue
        problems = _preflight(graph)
        if problems:
            catalog.problems.extend(problems)
            continue
        name = job_name(graph)
        if name in catalog.jobs:
            name = f"{name}_{graph.id.replace('-', '')[:8]}"
        catalog.jobs[name] = _lazy(graph, name)
        catalog.refs[name] = ref
    for problem in catalog.problems:
        log.warning("graph skipped: %s", problem)
    return catalog


def _lazy(graph: Graph, name: str) -> Callable[[], JobDefinition]:
    return lambda: compile_graph(graph, name=name)
