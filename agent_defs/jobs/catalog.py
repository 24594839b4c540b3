"""Every stored graph version as a lazily compiled Dagster job.

Listing validates each graph and builds its job, so a graph that is invalid or whose job cannot be
built (any exception, RecursionError included) is reported and skipped before Dagster sees its name:
one graph never stops the code location. The results are cached in the Dagster home, and a run
worker, which asks for one job, finds the others there instead of building them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from dagster import JobDefinition

from agent_defs.compile.mode import max_op_depth
from agent_defs.compile.plan import identifier
from agent_defs.graph.model import Graph
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.store.base import GraphRef, GraphStore

log = logging.getLogger("agentflow.catalog")


@dataclass
class JobCatalog:
    jobs: dict[str, Callable[[], JobDefinition]] = field(default_factory=dict)
    refs: dict[str, GraphRef] = field(default_factory=dict)  # job name -> graph version
    problems: list[str] = field(default_factory=list)


def _run_hint(source: str) -> str:
    where = source.removeprefix("file ") if source.startswith("file ") else "<its export file>"
    return (
        f"it can still run on the reference engine: `agentflow run {where}`, or as a one-op Dagster "
        'job once stored with "agentflow": {"compile": "fused"}'
    )


def _preflight(
    graph: Graph, source: str, name: str, depth_limit: int
) -> tuple[list[str], JobDefinition | None]:
    """The graph's problems, else its built job: everything that would stop it loading is found here."""
    problems = [str(p) for p in validate_graph(graph)]
    if problems:
        return problems, None
    try:
        return [], compile_graph(graph, name=name, depth_limit=depth_limit)
    except Exception as exc:  # RecursionError too: a graph must never break the code location
        reason = f"{type(exc).__name__}: {exc}"
        return [f"{graph.ref}: cannot be compiled (job not built): {reason}; {_run_hint(source)}"], None


@cache
def code_fingerprint() -> str:
    """The version of the code a preflight verdict comes from: every module of `agent_defs` and
    `blocks` by path, size and modification time (a few milliseconds, once per process)."""
    digest = hashlib.sha256()
    for package in ("agent_defs", "blocks"):
        root = Path(__file__).resolve().parents[2] / package
        for path in sorted(root.rglob("*.py")):
            info = path.stat()
            digest.update(f"{path.relative_to(root.parent)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class PreflightCache:
    """Preflight results by graph version, kept in the Dagster home.

    The code server validates and builds every stored graph; run workers then find the results here
    instead of doing it all again, so starting a run does not slow down as graphs are added. Stored
    versions are immutable; a file is also keyed by its size and modification time. The results hold
    for one depth limit: a file written under another (or by an older format) is ignored.
    """

    FILE_NAME = "agentflow_preflight.json"
    FORMAT = 2  # 2: a preflight builds the job (format 1 only validated and planned)

    def __init__(self, path: Path | None, depth_limit: int | None = None) -> None:
        self.path = path
        self.depth_limit = max_op_depth() if depth_limit is None else depth_limit
        self.entries: dict[str, list[str]] = {}
        self.changed = False
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = None
            if isinstance(loaded, dict) and loaded.get("settings") == self._settings():
                entries = loaded.get("entries")
                self.entries = entries if isinstance(entries, dict) else {}

    @classmethod
    def in_dagster_home(cls) -> PreflightCache:
        home = os.environ.get("DAGSTER_HOME")
        return cls(Path(home) / cls.FILE_NAME if home else None)

    def _settings(self) -> dict[str, int | str]:
        return {"format": self.FORMAT, "max_op_depth": self.depth_limit, "code": code_fingerprint()}

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
            scratch.write_text(
                json.dumps({"settings": self._settings(), "entries": self.entries}), encoding="utf-8"
            )
            scratch.replace(self.path)  # atomic: concurrent readers see the old or the new file
        except OSError as exc:
            log.warning("preflight cache not saved: %s", exc)


def build_catalog(store: GraphStore, cache: PreflightCache | None = None) -> JobCatalog:
    cache = cache or PreflightCache(None)
    catalog = JobCatalog()
    catalog.problems.extend(str(p) for p in store.problems())
    for ref in store.refs():
        name = identifier(f"{ref.name}_v{ref.version}", "graph")
        if name in catalog.jobs:
            name = f"{name}_{ref.graph_id.replace('-', '')[:8]}"
        built: JobDefinition | None = None
        problems = cache.get(ref)
        if problems is None:
            try:
                graph = store.load(ref.graph_id, ref.version)
            except Exception as exc:
                problems = [f"{ref.source}: cannot be loaded: {exc}"]
            else:
                problems, built = _preflight(graph, ref.source, name, cache.depth_limit)
            cache.put(ref, problems)
        if problems:
            catalog.problems.extend(problems)
            continue
        catalog.jobs[name] = _lazy(store, ref, name, cache.depth_limit, built)
        catalog.refs[name] = ref
    cache.save()
    for problem in catalog.problems:
        log.warning("graph skipped: %s", problem)
    return catalog


def _lazy(
    store: GraphStore, ref: GraphRef, name: str, depth_limit: int, built: JobDefinition | None
) -> Callable[[], JobDefinition]:
    """The job, built by the preflight or, when the cache vouched for the graph, when Dagster asks
    for it (a run worker asks for one)."""

    def job() -> JobDefinition:
        if built is not None:
            return built
        graph = store.load(ref.graph_id, ref.version)
        try:
            return compile_graph(graph, name=name, depth_limit=depth_limit)
        except Exception as exc:
            # The cache said this graph builds, and Dagster already has its name: the fused job (the
            # reference engine in one op) keeps the code location up and the graph runnable.
            log.error(
                "%s: job not built (%s: %s); compiled fused instead", graph.ref, type(exc).__name__, exc
            )
            return compile_graph(graph, fused=True, name=name)

    return job
