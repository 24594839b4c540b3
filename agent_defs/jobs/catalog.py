"""Every stored graph version as a lazily compiled Dagster job.

Listing validates each graph (cheap, no Dagster) so a bad graph is reported and skipped before
Dagster sees its name; compiling happens only when Dagster asks for the job, so a run worker, which
asks for one job, never compiles the others.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import JobDefinition

from agent_defs.compile.plan import identifier, plan_compile
from agent_defs.graph.model import Graph
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph, compile_mode
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


class PreflightCache:
    """Preflight results by graph version, kept in the Dagster home.

    The code server validates every stored graph; run workers then find the results here instead of
    validating them all again, so starting a run does not slow down as graphs are added. Stored
    versions are immutable; a file is also keyed by its size and modification time.
    """

    FILE_NAME = "agentflow_preflight.json"

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[str]] = {}
        self.changed = False
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    @classmethod
    def in_dagster_home(cls) -> PreflightCache:
        home = os.environ.get("DAGSTER_HOME")
        return cls(Path(home) / cls.FILE_NAME if home else None)

    @staticmethod
    def key(ref: GraphRef) -> str:
        stamp = "stored"
        if ref.source.startswith("file "):
            try:
                info = Path(ref.source.removeprefix("file ")).stat()
                stamp = f"{info.st_size}:{info.st_mtime_ns}"
            except OSError:
                stamp = "missing"
        return f"{ref.graph_id}:{ref.version}:{stamp}"

    def get(self, ref: GraphRef) -> list[str] | None:
        return self.entries.get(self.key(ref))

    def put(self, ref: GraphRef, problems: list[str]) -> None:
        self.entries[self.key(ref)] = problems
        self.changed = True

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        try:
            scratch = self.path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(json.dumps(self.entries), encoding="utf-8")
            scratch.replace(self.path)  # atomic: concurrent readers see the old or the new file
        except OSError as exc:
            log.warning("preflight cache not saved: %s", exc)


def build_catalog(store: GraphStore, cache: PreflightCache | None = None) -> JobCatalog:
    cache = cache or PreflightCache(None)
    catalog = JobCatalog()
    catalog.problems.extend(str(p) for p in store.problems())
    for ref in store.refs():
        problems = cache.get(ref)
        if problems is None:
            try:
                problems = _preflight(store.load(ref.graph_id, ref.version))
            except Exception as exc:
                problems = [f"{ref.source}: cannot be loaded: {exc}"]
            cache.put(ref, problems)
        if problems:
            catalog.problems.extend(problems)
            continue
        name = identifier(f"{ref.name}_v{ref.version}", "graph")
        if name in catalog.jobs:
            name = f"{name}_{ref.graph_id.replace('-', '')[:8]}"
        catalog.jobs[name] = _lazy(store, ref, name)
        catalog.refs[name] = ref
    cache.save()
    for problem in catalog.problems:
        log.warning("graph skipped: %s", problem)
    return catalog


def _lazy(store: GraphStore, ref: GraphRef, name: str) -> Callable[[], JobDefinition]:
    """Loading and compiling wait until Dagster asks for the job (a run worker asks for one)."""
    return lambda: compile_graph(store.load(ref.graph_id, ref.version), name=name)
