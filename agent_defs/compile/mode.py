"""Which shape a graph's Dagster job takes: one op per node, or fused (one op, reference engine).

Dagster 1.13 builds a job's dependency lists with a recursive walk up the dependency chains
(`create_adjacency_lists` in `GraphDefinition`), one Python frame per op along a chain, from nodes
taken in an arbitrary order. With Python's default recursion limit of 1,000, a chain of about 1,000
ops or more may raise RecursionError, and whether it does changes from process to process. So a
graph whose per-node job would be deeper than a fixed limit, with ample room under that, is
compiled fused: the reference engine runs it in one step, exactly, whatever its size. No Dagster
here: validation and the CLI can tell which shape a graph gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent_defs.compile.plan import CompilePlan, OpKind, plan_compile
from agent_defs.env_values import SettingError, int_from_env
from agent_defs.graph.model import Graph

MAX_OP_DEPTH_ENV = "AGENTFLOW_MAX_OP_DEPTH"
# Measured (dagster 1.13.27, Python 3.11, recursion limit 1,000): walked in its worst order, a chain
# builds up to 991 ops minus the caller's stack, which is about 20 frames deep when a code server
# loads the location; 500 leaves room for callers nested far deeper than that.
DEFAULT_MAX_OP_DEPTH = 500


class CompileModeError(SettingError):
    """A compile setting that is not valid (named in the message)."""


def max_op_depth() -> int:
    """The deepest per-node job compiled, from the environment (read when a catalog is built)."""
    try:
        return int_from_env(MAX_OP_DEPTH_ENV, DEFAULT_MAX_OP_DEPTH, 1)
    except SettingError as exc:
        raise CompileModeError(str(exc)) from None


def compile_mode(graph: Graph) -> str:
    """The compile mode stored with the graph: `{"agentflow": {"compile": "fused"}}` in the export."""
    settings = graph.extra.get("agentflow")
    mode = settings.get("compile") if isinstance(settings, Mapping) else None
    return mode if mode in ("fused", "per_node") else "per_node"


def op_depth(plan: CompilePlan) -> int:
    """Ops on the longest dependency chain of the plan (the run summary step adds one more)."""
    downstream: dict[str, set[str]] = {op.name: set() for op in plan.ops}
    for op in plan.ops:
        for link in op.inbound:
            downstream[plan.op_of_node[link.source_id]].add(op.name)
    waiting = {name: 0 for name in downstream}
    for sinks in downstream.values():
        for sink in sinks:
            waiting[sink] += 1
    # Kahn's order, iterative: a chain of thousands of ops must not recurse.
    depth = {name: 1 for name, count in waiting.items() if count == 0}
    ready = list(depth)
    while ready:
        name = ready.pop()
        for sink in downstream[name]:
            depth[sink] = max(depth.get(sink, 1), depth[name] + 1)
            waiting[sink] -= 1
            if waiting[sink] == 0:
                ready.append(sink)
    return max(depth.values(), default=0)


@dataclass(frozen=True)
class CompileChoice:
    """The plan a graph is compiled with and, when it is fused although its stored mode is per
    node, why (empty otherwise)."""

    plan: CompilePlan
    fused_because: str = ""

    @property
    def fused(self) -> bool:
        return any(op.kind is OpKind.FUSED for op in self.plan.ops)


def choose_compile(graph: Graph, depth_limit: int | None = None) -> CompileChoice:
    """Per node unless the graph asks to be fused or its per-node job would be too deep for Dagster."""
    if compile_mode(graph) == "fused":
        return CompileChoice(plan_compile(graph, fused=True))
    limit = max_op_depth() if depth_limit is None else depth_limit
    per_node = plan_compile(graph)
    depth = op_depth(per_node)
    if depth <= limit:
        return CompileChoice(per_node)
    reason = (
        f"its per-node job would be {depth:,} ops deep, over the limit of {limit:,} "
        f"({MAX_OP_DEPTH_ENV}) that Dagster's job construction handles"
    )
    return CompileChoice(plan_compile(graph, fused=True), reason)


__all__ = [
    "DEFAULT_MAX_OP_DEPTH",
    "MAX_OP_DEPTH_ENV",
    "CompileChoice",
    "CompileModeError",
    "choose_compile",
    "compile_mode",
    "max_op_depth",
    "op_depth",
]
