"""What the engine precomputes per node of a graph (or of a part of it): which pins are linked and
static, and which links fire from each output pin. No Dagster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent_defs.engine import dynamic_pins
from agent_defs.graph.model import Graph, Link, Node
from agent_defs.graph.subagents import sub_graph_of
from agent_defs.resilience.policy import NodeGuard, node_guard
from blocks import Block, BlockRegistry, BlockType, OutgoingLink


@dataclass(slots=True)
class NodePlan:
    """What the engine precomputes per node, so the hot path does dict look-ups only."""

    node: Node
    block: Block
    linked_pins: frozenset[str]
    # Linked pins an execution waits for (all of them, unless the block says otherwise).
    required_pins: frozenset[str]
    custom_ready: bool  # the block's `missing_inputs` is consulted too
    outgoing: tuple[OutgoingLink, ...]  # only for blocks that ask for them
    static_pins: frozenset[str]
    links_out: tuple[tuple[Link, bool], ...]  # (link, is static), in the graph's link order
    has_dynamic_inputs: bool
    is_input: bool
    is_output: bool
    guard: NodeGuard | None  # retries, timeout, breaker, cache; None: the plain fast path
    # Output pin -> the links a yield on it may fire, in link order, each with whether its source
    # name is the pin itself (else a dynamic path into the value). Filled as pins are first yielded.
    routes: dict[str, tuple[tuple[Link, bool, bool], ...]] = field(default_factory=dict)

    def routes_of(self, pin: str) -> tuple[tuple[Link, bool, bool], ...]:
        routes = self.routes.get(pin)
        if routes is None:
            routes = self.routes[pin] = tuple(
                (link, is_static, link.source_name == pin)
                for link, is_static in self.links_out
                if link.source_name == pin
                or (
                    link.source_name.startswith(pin) and dynamic_pins.is_dynamic(link.source_name[len(pin) :])
                )
            )
        return routes


def plan_graph(
    graph: Graph,
    registry: BlockRegistry,
    subset: frozenset[str] | None = None,
    root: Graph | None = None,
) -> dict[str, NodePlan]:
    """Per-node routing tables. Nodes with unknown blocks and Note nodes are left out (never run).

    With a `subset` (a region op or one node's op), only those nodes are planned; links from outside
    still count as linked pins (their values are delivered from outside) and links leaving the subset
    are recorded as outbound values instead of being delivered.
    """
    blocks = {n.id: registry.get(n.block_id) for n in graph.nodes}
    plans: dict[str, NodePlan] = {}
    inbound: dict[str, list[Link]] = {}
    outbound: dict[str, list[Link]] = {}
    for link in graph.links:
        inbound.setdefault(link.sink_id, []).append(link)
        outbound.setdefault(link.source_id, []).append(link)
    for node in graph.nodes:
        block = blocks[node.id]
        if (
            block is None
            or block.block_type is BlockType.NOTE
            or (subset is not None and node.id not in subset)
        ):
            continue
        links_in = [lk for lk in inbound.get(node.id, []) if _fires(blocks.get(lk.source_id))]
        static = {
            lk.sink_name
            for lk in links_in
            if lk.is_static or ((src := blocks.get(lk.source_id)) is not None and src.static_output)
        }
        # Links out of a static-output block are forced static (AutoGPT does the same).
        links_out = tuple(
            (lk, lk.is_static or block.static_output)
            for lk in outbound.get(node.id, [])
            if _fires(blocks.get(lk.sink_id))
        )
        linked = frozenset(lk.sink_name for lk in links_in)
        plans[node.id] = NodePlan(
            node=node,
            block=block,
            linked_pins=linked,
            required_pins=linked - block.optional_link_pins,
            custom_ready=block.has_custom_readiness,
            outgoing=_outgoing_links(graph, root or graph, node, blocks, outbound.get(node.id, []))
            if block.needs_outgoing_links
            else (),
            static_pins=frozenset(static),
            links_out=links_out,
            has_dynamic_inputs=any(dynamic_pins.is_dynamic(k) for k in node.input_default)
            or any(dynamic_pins.is_dynamic(lk.sink_name) for lk in links_in),
            is_input=block.block_type is BlockType.INPUT,
            is_output=block.block_type is BlockType.OUTPUT,
            guard=node_guard(node.id, node.metadata, block),
        )
    return plans


def _outgoing_links(
    graph: Graph, root: Graph, node: Node, blocks: Mapping[str, Block | None], links: list[Link]
) -> tuple[OutgoingLink, ...]:
    result: list[OutgoingLink] = []
    for link in links:
        sink_block = blocks.get(link.sink_id)
        if sink_block is None or not _fires(sink_block):
            continue
        sink = graph.nodes_by_id[link.sink_id]
        name = description = ""
        if sink_block.block_type is BlockType.AGENT:
            # The sub-graph this AgentExecutor runs, found as validation finds it.
            sub = sub_graph_of(root, sink)
            name = sub.name if sub is not None else str(sink.label or sink.input_default.get("graph_id", ""))
            description = sub.description if sub is not None else ""
        result.append(
            OutgoingLink(
                source_pin=link.source_name,
                sink_node_id=sink.id,
                sink_pin=link.sink_name,
                sink_block=sink_block,
                sink_input_default=sink.input_default,
                sink_graph_name=name,
                sink_graph_description=description,
            )
        )
    return tuple(result)


def _fires(block: Block | None) -> bool:
    return block is not None and block.block_type is not BlockType.NOTE
