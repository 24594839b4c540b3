"""Sub-agents: which graph an AgentExecutor node runs, and the static checks on those calls.

Resolution rule (one rule for validation and the engine):
1. a graph stored with the export (the graph itself or any of its `sub_graphs`, at any nesting) whose
   (id, version) is the node's `graph_id` / `graph_version`;
2. else, since AutoGPT exports carry AgentExecutor `graph_id`s of the author's library copy, which
   match no `sub_graphs[].id`: the sub-graph of that version whose input names and output names are
   exactly those of the node's `input_schema` / `output_schema` (the interface the node was built
   against), narrowed by the node's name (`customized_name`) when several fit.
Anything else (no such graph, several that fit, no schema to match by) is refused with a message.

Static checks: every reference resolves, no graph calls itself directly or through others (the cycle
is named), and no chain of sub-agent calls is deeper than the run-time limit. All iterative, so a
chain thousands of graphs long is reported, not a RecursionError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_defs.env_values import int_from_env
from agent_defs.graph.io_nodes import graph_input_names, graph_output_names
from agent_defs.graph.model import Graph, GraphProblem, Node
from blocks import REGISTRY, BlockRegistry, BlockType

DEFAULT_MAX_SUBAGENT_DEPTH = 10  # real exports nest 3 deep; fan-out 2 at depth 10 is ~2,000 runs
MAX_SUBAGENT_DEPTH_VAR = "AGENTFLOW_MAX_SUBAGENT_DEPTH"


def max_subagent_depth_from_env() -> int:
    """The sub-agent depth limit: AGENTFLOW_MAX_SUBAGENT_DEPTH (read when called), else the default."""
    return int_from_env(MAX_SUBAGENT_DEPTH_VAR, DEFAULT_MAX_SUBAGENT_DEPTH, 0)


class SubAgentReferenceError(ValueError):
    """An AgentExecutor node's graph reference matches no graph stored with the export, or several."""


def embedded_graphs(root: Graph) -> list[Graph]:
    """Every graph stored with `root` (its sub-graphs, theirs, ...), in export order; not `root`."""
    found: list[Graph] = []
    stack = list(reversed(root.sub_graphs))
    while stack:
        graph = stack.pop()
        found.append(graph)
        stack.extend(reversed(graph.sub_graphs))
    return found


def _schema_names(schema: Any) -> frozenset[str]:
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        return frozenset(str(k) for k in schema["properties"])
    return frozenset()


def _ref(graph_id: Any, version: Any) -> str:
    return f"{graph_id} v{version}"


def resolve_sub_agent(root: Graph, node: Node, stored: list[Graph] | None = None) -> Graph:
    """The graph `node` (an AgentExecutor in `root` or a graph stored with it) runs, by the rule above.
    `stored`: embedded_graphs(root), when the caller has it. Raises SubAgentReferenceError."""
    data = node.input_default
    graph_id, version = data.get("graph_id"), data.get("graph_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SubAgentReferenceError(f"sub-agent 'graph_version' must be an integer, got {version!r}")
    stored = embedded_graphs(root) if stored is None else stored
    for graph in (root, *stored):
        if graph.id == graph_id and graph.version == version:
            return graph
    inputs, outputs = _schema_names(data.get("input_schema")), _schema_names(data.get("output_schema"))
    wanted = _ref(graph_id, version)
    if not inputs and not outputs:
        raise SubAgentReferenceError(
            f"sub-agent graph {wanted} is not stored with this graph, and the node has no "
            "input_schema/output_schema to identify a sub-graph by"
        )
    same_version = [g for g in stored if g.version == version]
    fits = [
        g
        for g in same_version
        if frozenset(graph_input_names(g)) == inputs and frozenset(graph_output_names(g)) == outputs
    ]
    if len(fits) > 1 and node.label:
        named = [g for g in fits if g.name.strip().casefold() == node.label.strip().casefold()]
        fits = named or fits
    if len(fits) == 1:
        return fits[0]
    interface = f"inputs {sorted(inputs)} and outputs {sorted(outputs)}"
    if fits:
        raise SubAgentReferenceError(
            f"sub-agent graph {wanted} is ambiguous: no stored graph has that id, and "
            f"{', '.join(g.ref for g in fits)} all have version {version} with its {interface}; "
            "set the node's graph_id to the one meant"
        )
    others = f" (version {version}: {', '.join(g.ref for g in same_version)})" if same_version else ""
    raise SubAgentReferenceError(
        f"sub-agent graph {wanted} is not stored with this graph: no graph has that id, and no "
        f"sub-graph of version {version} has its {interface}{others}"
    )


def sub_graph_of(root: Graph, node: Node) -> Graph | None:
    """The graph an AgentExecutor node runs, or None when its reference does not resolve."""
    try:
        return resolve_sub_agent(root, node)
    except SubAgentReferenceError:
        return None


def _node_ref(node: Node, registry: BlockRegistry) -> str:
    block = registry.get(node.block_id)
    return f"{node.id} ({node.label or (block.name if block else node.block_id)})"


@dataclass(frozen=True, slots=True)
class _Call:
    node: Node
    target: int  # index of the called graph in the list of graphs


def sub_agent_problems(
    root: Graph, registry: BlockRegistry = REGISTRY, max_depth: int | None = None
) -> list[GraphProblem]:
    """Unresolved or ambiguous references, recursion (each cycle named once), and call chains deeper
    than `max_depth` (default: max_subagent_depth_from_env()), for `root` and every graph stored with it."""
    max_depth = max_subagent_depth_from_env() if max_depth is None else max_depth
    stored = embedded_graphs(root)
    graphs = [root, *stored]
    index = {id(g): i for i, g in enumerate(graphs)}
    problems: list[GraphProblem] = []
    calls: list[list[_Call]] = [[] for _ in graphs]
    for i, graph in enumerate(graphs):
        for node in graph.nodes:
            block = registry.get(node.block_id)
            if block is None or block.block_type is not BlockType.AGENT:
                continue
            try:
                target = resolve_sub_agent(root, node, stored)
            except SubAgentReferenceError as exc:
                problems.append(GraphProblem(graph.ref, str(exc), node=_node_ref(node, registry)))
                continue
            calls[i].append(_Call(node, index[id(target)]))
    problems.extend(_cycles(graphs, calls, registry))
    if not any(p.message.startswith("sub-agent recursion") for p in problems):
        problems.extend(_too_deep(graphs, calls, registry, max_depth))
    return problems


def _step(graphs: list[Graph], call: _Call, registry: BlockRegistry) -> str:
    return f"node {_node_ref(call.node, registry)} -> {graphs[call.target].ref}"


def _cycles(graphs: list[Graph], calls: list[list[_Call]], registry: BlockRegistry) -> list[GraphProblem]:
    """Iterative depth-first search; every back edge closes a cycle, reported on the graph it starts at."""
    problems: list[GraphProblem] = []
    state = [0] * len(graphs)  # 0 unseen, 1 on the current path, 2 done
    for start in range(len(graphs)):
        if state[start]:
            continue
        path: list[tuple[int, _Call | None]] = [(start, None)]  # (graph, the call that entered it)
        cursor = [0]
        state[start] = 1
        while path:
            here = path[-1][0]
            if cursor[-1] < len(calls[here]):
                call = calls[here][cursor[-1]]
                cursor[-1] += 1
                if state[call.target] == 0:
                    state[call.target] = 1
                    path.append((call.target, call))
                    cursor.append(0)
                elif state[call.target] == 1:
                    at = next(k for k, (g, _) in enumerate(path) if g == call.target)
                    steps = [c for _, c in path[at + 1 :] if c is not None] + [call]
                    chain = " ; ".join(_step(graphs, c, registry) for c in steps)
                    problems.append(
                        GraphProblem(
                            graphs[call.target].ref,
                            f"sub-agent recursion: {graphs[call.target].ref} calls itself through {chain}",
                            node=_node_ref(steps[0].node, registry),
                        )
                    )
                continue
            state[here] = 2
            path.pop()
            cursor.pop()
    return problems


def _too_deep(
    graphs: list[Graph], calls: list[list[_Call]], registry: BlockRegistry, max_depth: int
) -> list[GraphProblem]:
    """The longest chain of calls from the root (the call graph is acyclic here), if over the limit."""
    longest: list[int] = [0] * len(graphs)  # calls in the longest chain starting at each graph
    best: list[_Call | None] = [None] * len(graphs)
    order: list[int] = []
    seen = [False] * len(graphs)
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:  # post-order from the root
        here, expanded = stack.pop()
        if expanded:
            order.append(here)
            continue
        if seen[here]:
            continue
        seen[here] = True
        stack.append((here, True))
        stack.extend((c.target, False) for c in calls[here] if not seen[c.target])
    for here in order:
        for call in calls[here]:
            if longest[call.target] + 1 > longest[here]:
                longest[here], best[here] = longest[call.target] + 1, call
    if longest[0] <= max_depth:
        return []
    chain = [graphs[0].ref]
    here = 0
    while (call := best[here]) is not None:
        chain.append(graphs[call.target].ref)
        here = call.target
    shown = " -> ".join([*chain[:3], "...", *chain[-1:]]) if len(chain) > 5 else " -> ".join(chain)
    first = best[0]
    assert first is not None
    return [
        GraphProblem(
            graphs[0].ref,
            f"sub-agents nest {longest[0]} levels deep ({shown}), more than the limit of {max_depth} "
            f"({MAX_SUBAGENT_DEPTH_VAR})",
            node=_node_ref(first.node, registry),
        )
    ]
