"""How a graph is cut into Dagster ops: one op per node where Dagster expresses the semantics exactly,
region ops (run by the reference engine) for the rest. No Dagster here: the plan is plain data.

A node gets its own op when it executes at most once per run and each of its inputs comes from a
single link whose source fires at most once: then "a pin that did not fire" is exactly Dagster's
skipped optional output (rule 1). Nodes that may execute several times (in a cycle, behind a
repeated output pin, or with two links into one pin) are grouped into region ops. Since everything
downstream of such a node may also run several times, regions are closed downstream and no link
ever leaves a region.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from agent_defs.graph.model import Graph, Link, base_pin
from blocks import REGISTRY, Block, BlockRegistry, BlockType


class OpKind(StrEnum):
    NODE = "node"  # exactly one node
    REGION = "region"  # several nodes, run by the reference engine inside one step
    FUSED = "fused"  # the whole graph in one step


@dataclass
class OpPlan:
    name: str
    kind: OpKind
    nodes: frozenset[str]
    inbound: list[Link] = field(default_factory=list)  # links from other ops into this one
    # (source node, source pin) -> Dagster output name, for links leaving this op
    outputs: dict[tuple[str, str], str] = field(default_factory=dict)
    # Dagster input name -> the link it carries (single-node ops only)
    inputs: dict[str, Link] = field(default_factory=dict)


@dataclass
class CompilePlan:
    graph: Graph
    ops: list[OpPlan]
    op_of_node: dict[str, str]

    @cached_property
    def ops_by_name(self) -> dict[str, OpPlan]:
        return {o.name: o for o in self.ops}

    def op(self, name: str) -> OpPlan:
        return self.ops_by_name[name]  # by name: a scan per link would be quadratic in big graphs


_NAME_BAD = re.compile(r"[^A-Za-z0-9_]+")


def identifier(text: str, fallback: str = "x") -> str:
    """A valid Dagster name (letters, digits, underscore; not starting with a digit)."""
    cleaned = _NAME_BAD.sub("_", text).strip("_") or fallback
    return f"_{cleaned}" if cleaned[0].isdigit() else cleaned


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def _node_op_name(block: Block, label: str, node_id: str) -> str:
    block_name = block.name.removesuffix("Block")
    return identifier(f"{block_name}_{label}" if label else f"{block_name}_{node_id[:8]}", "node")


def _strongly_connected(nodes: Iterable[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (graphs with thousands of nodes must not hit recursion limits)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
    return result


def _repeats(block: Block, source_name: str) -> bool:
    pins = block.repeated_output_pins
    return pins is None or base_pin(source_name) in pins


def multi_execution_nodes(graph: Graph, registry: BlockRegistry = REGISTRY) -> set[str]:
    """Nodes that may execute more than once in a run."""
    blocks = {
        n.id: b for n in graph.nodes if (b := registry.get(n.block_id)) and b.block_type is not BlockType.NOTE
    }
    links = [lk for lk in graph.links if lk.source_id in blocks and lk.sink_id in blocks]
    edges: dict[str, set[str]] = {}
    for lk in links:
        edges.setdefault(lk.source_id, set()).add(lk.sink_id)
    many: set[str] = set()
    for component in _strongly_connected(blocks, edges):
        if len(component) > 1 or component[0] in edges.get(component[0], ()):
            many.update(component)
    pin_links: dict[tuple[str, str], int] = {}
    for lk in links:
        key = (lk.sink_id, lk.sink_name)
        pin_links[key] = pin_links.get(key, 0) + 1
    many.update(sink for (sink, _), count in pin_links.items() if count > 1)
    # Input nodes with links also run once at the start (they are starting nodes): twice in all.
    many.update(lk.sink_id for lk in links if blocks[lk.sink_id].block_type is BlockType.INPUT)
    frontier = [lk for lk in links if _repeats(blocks[lk.source_id], lk.source_name)]
    many.update(lk.sink_id for lk in frontier)
    # A node that starts by its block's own readiness rule (e.g. without its feedback pins) is run by
    # the reference engine, which applies that rule; a Dagster op would wait for every input.
    many.update(node_id for node_id, block in blocks.items() if block.has_custom_readiness)
    # Everything downstream of a node that may run several times may too (a worklist: rescanning
    # every link until nothing changes is quadratic on a long chain listed against its order).
    to_visit = list(many)
    while to_visit:
        node = to_visit.pop()
        for sink in edges.get(node, ()):
            if sink not in many:
                many.add(sink)
                to_visit.append(sink)
    return many


def reference_order(graph: Graph, registry: BlockRegistry = REGISTRY) -> dict[str, int]:
    """Node id -> the position at which the reference engine (ready executions in FIFO order) first
    runs it, assuming every linked pin fires, in link order. A region op receives the values of
    several node ops in this order, so it sees them as the reference engine routes them, whatever
    order Dagster ran those steps in. Nodes never reached come last, in graph order."""
    blocks = {
        n.id: b for n in graph.nodes if (b := registry.get(n.block_id)) and b.block_type is not BlockType.NOTE
    }
    links_out: dict[str, list[Link]] = {}
    required: dict[str, set[str]] = {node_id: set() for node_id in blocks}
    for lk in graph.links:
        if lk.source_id in blocks and lk.sink_id in blocks:
            links_out.setdefault(lk.source_id, []).append(lk)
            if lk.sink_name not in blocks[lk.sink_id].optional_link_pins:
                required[lk.sink_id].add(lk.sink_name)
    queue = deque(
        node_id
        for node_id, block in blocks.items()
        if block.block_type is BlockType.INPUT or not required[node_id]
    )
    queued = set(queue)
    arrived: dict[str, set[str]] = {}
    order: dict[str, int] = {}
    while queue:
        node_id = queue.popleft()
        order[node_id] = len(order)
        for lk in links_out.get(node_id, ()):
            pins = arrived.setdefault(lk.sink_id, set())
            pins.add(lk.sink_name)
            if lk.sink_id not in queued and required[lk.sink_id] <= pins:
                queued.add(lk.sink_id)
                queue.append(lk.sink_id)
    for node_id in blocks:
        order.setdefault(node_id, len(order))
    return order


def plan_compile(graph: Graph, fused: bool = False, registry: BlockRegistry = REGISTRY) -> CompilePlan:
    runnable = [
        n
        for n in graph.nodes
        if (b := registry.get(n.block_id)) is not None and b.block_type is not BlockType.NOTE
    ]
    runnable_ids = {n.id for n in runnable}
    taken: set[str] = set()
    ops: list[OpPlan] = []
    op_of_node: dict[str, str] = {}
    if fused:
        name = _unique(identifier(graph.name, "graph") + "_fused", taken)
        ops.append(OpPlan(name=name, kind=OpKind.FUSED, nodes=frozenset(runnable_ids)))
        return CompilePlan(graph, ops, {n: name for n in runnable_ids})

    many = multi_execution_nodes(graph, registry)
    # Regions: weakly connected groups of multi-execution nodes.
    parent = {n: n for n in many}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for lk in graph.links:
        if lk.source_id in many and lk.sink_id in many:
            parent[find(lk.source_id)] = find(lk.sink_id)
    groups: dict[str, list[str]] = {}
    for node in runnable:  # graph order keeps op names stable
        if node.id in many:
            groups.setdefault(find(node.id), []).append(node.id)

    for node in runnable:
        if node.id in many:
            continue
        block = registry.get(node.block_id)
        assert block is not None
        name = _unique(_node_op_name(block, node.label, node.id), taken)
        ops.append(OpPlan(name=name, kind=OpKind.NODE, nodes=frozenset({node.id})))
        op_of_node[node.id] = name
    nodes = graph.nodes_by_id
    for number, members in enumerate(groups.values(), start=1):
        first = nodes[members[0]]
        label = first.label or (b.name.removesuffix("Block") if (b := registry.get(first.block_id)) else "")
        name = _unique(identifier(f"region_{number}_{label}", f"region_{number}"), taken)
        ops.append(OpPlan(name=name, kind=OpKind.REGION, nodes=frozenset(members)))
        op_of_node.update({m: name for m in members})

    by_name = {op.name: op for op in ops}
    for lk in graph.links:
        src_op, dst_op = op_of_node.get(lk.source_id), op_of_node.get(lk.sink_id)
        if src_op is None or dst_op is None or src_op == dst_op:
            continue
        source, sink = by_name[src_op], by_name[dst_op]
        key = (lk.source_id, lk.source_name)
        if key not in source.outputs:
            source.outputs[key] = _unique(
                identifier(f"out_{lk.source_name}"), set(source.outputs.values()) | {"result"}
            )
        sink.inbound.append(lk)
        if sink.kind is OpKind.NODE:
            sink.inputs[_unique(identifier(f"in_{lk.sink_name}"), set(sink.inputs))] = lk
    assert all(not op.outputs for op in ops if op.kind is OpKind.REGION), "regions are closed downstream"
    return CompilePlan(graph, ops, op_of_node)


__all__ = [
    "CompilePlan",
    "OpKind",
    "OpPlan",
    "identifier",
    "multi_execution_nodes",
    "plan_compile",
    "reference_order",
]
