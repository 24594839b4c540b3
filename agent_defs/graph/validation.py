"""Graph validation: every problem at once, each naming graph, node and pin."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache

from agent_defs.graph.input_defaults import default_problems
from agent_defs.graph.model import Graph, GraphProblem, Link, Node, bad_list_indexes, base_pin
from agent_defs.graph.subagents import sub_agent_problems
from agent_defs.paths import shared_dir
from blocks import REGISTRY, BlockRegistry, BlockType

# Pin types that no runtime conversion can bridge (anything converts to text; text may parse).
_SCALARS = frozenset({"integer", "number", "boolean"})
_CONTAINERS = frozenset({"array", "object"})


@cache
def autogpt_block_names() -> dict[str, str]:
    """AutoGPT block id -> class name, from ../shared/autogpt-agents/_block_ids.json when present."""
    path = shared_dir() / "autogpt-agents" / "_block_ids.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def node_ref(node: Node, registry: BlockRegistry = REGISTRY) -> str:
    block = registry.get(node.block_id)
    what = node.label or (block.name if block else node.block_id)
    return f"{node.id} ({what})"


def types_conflict(source: str | None, sink: str | None) -> bool:
    if source is None or sink is None:
        return False
    return (source in _CONTAINERS and sink in _SCALARS) or (source in _SCALARS and sink in _CONTAINERS)


def validate_graph(
    graph: Graph,
    registry: BlockRegistry = REGISTRY,
    root: Graph | None = None,
    broken_nodes: frozenset[str] = frozenset(),
    max_subagent_depth: int | None = None,
) -> list[GraphProblem]:
    """Every problem with the graph. `broken_nodes`: ids of nodes the loader could not read (and
    reported); links touching them are not checked, but still count as feeding their sink pin.
    Sub-agent references, recursion and depth are checked once, from the root (graph/subagents.py)."""
    where = graph.ref
    problems: list[GraphProblem] = []
    if root is None:
        root = graph
        problems.extend(sub_agent_problems(graph, registry, max_subagent_depth))

    for node_id, count in Counter(n.id for n in graph.nodes).items():
        if count > 1:
            problems.append(GraphProblem(where, f"node id is used by {count} nodes", node=node_id))

    nodes = graph.nodes_by_id
    known_autogpt = autogpt_block_names()
    for node in graph.nodes:
        block = registry.get(node.block_id)
        if block is None:
            autogpt_name = known_autogpt.get(node.block_id)
            message = (
                f"block {node.block_id} is AutoGPT's {autogpt_name}, which is not supported here"
                if autogpt_name
                else f"unknown block id {node.block_id}"
            )
            problems.append(GraphProblem(where, message, node=node.id))

    linked: dict[str, set[str]] = {}
    static_by_pin: dict[str, dict[str, bool]] = {}  # node -> linked pin -> fed by a static link
    self_fed: dict[str, dict[str, list[Link]]] = {}  # node -> linked pin -> its links from itself
    for link in graph.links:
        src, dst = nodes.get(link.source_id), nodes.get(link.sink_id)
        label = f"link {link.id}"
        if dst is not None:
            _note_feed(self_fed, link)
        if link.source_id in broken_nodes or link.sink_id in broken_nodes:
            if dst is not None:
                linked.setdefault(dst.id, set()).add(base_pin(link.sink_name))
            continue
        if src is None:
            problems.append(GraphProblem(where, f"{label} comes from missing node {link.source_id}"))
        if dst is None:
            problems.append(GraphProblem(where, f"{label} goes to missing node {link.sink_id}"))
        if src is None or dst is None:
            continue
        src_block, dst_block = registry.get(src.block_id), registry.get(dst.block_id)
        src_type = dst_type = None
        if src_block is not None:
            out_pins = src_block.output_pins(src.input_default)
            if link.source_name not in out_pins and base_pin(link.source_name) not in out_pins:
                problems.append(
                    GraphProblem(
                        where,
                        f"{label}: {src_block.name} has no output pin {base_pin(link.source_name)!r}",
                        node=node_ref(src, registry),
                        pin=link.source_name,
                    )
                )
            src_type = out_pins.get(link.source_name)
        if dst_block is not None:
            in_pins = dst_block.input_pins(dst.input_default)
            pin = base_pin(link.sink_name)
            if link.sink_name not in in_pins and pin not in in_pins:
                problems.append(
                    GraphProblem(
                        where,
                        f"{label}: {dst_block.name} has no input pin {pin!r}",
                        node=node_ref(dst, registry),
                        pin=link.sink_name,
                    )
                )
            dst_type = in_pins.get(link.sink_name)
        for end, name in ((src, link.source_name), (dst, link.sink_name)):
            problems.extend(_list_index_problems(where, f"{label}: ", node_ref(end, registry), name))
        linked.setdefault(dst.id, set()).add(base_pin(link.sink_name))
        pins = static_by_pin.setdefault(dst.id, {})
        is_static = link.is_static or (src_block is not None and src_block.static_output)
        pins[link.sink_name] = pins.get(link.sink_name, False) or is_static
        if types_conflict(src_type, dst_type):
            problems.append(
                GraphProblem(
                    where,
                    f"{label}: output {link.source_name!r} of {node_ref(src, registry)} is {src_type}, "
                    f"but input {link.sink_name!r} takes {dst_type}",
                    node=node_ref(dst, registry),
                    pin=link.sink_name,
                )
            )

    for node in graph.nodes:
        block = registry.get(node.block_id)
        if block is None or block.block_type is BlockType.NOTE:
            continue
        for pin, message in block.link_problems(static_by_pin.get(node.id, {})):
            problems.append(GraphProblem(where, message, node=node_ref(node, registry), pin=pin))
        for name in node.input_default:
            problems.extend(_list_index_problems(where, "default: ", node_ref(node, registry), str(name)))
        sink_pins = frozenset(self_fed.get(node.id, {}))
        for pin, message in default_problems(block, node.input_default, sink_pins):
            problems.append(GraphProblem(where, message, node=node_ref(node, registry), pin=pin))
        for pin, links in sorted(self_fed.get(node.id, {}).items()):
            if links and pin not in block.optional_link_pins:
                problems.append(_never_ready(where, node_ref(node, registry), pin, links))
        given = {base_pin(k) for k, v in node.input_default.items() if v is not None}
        given |= linked.get(node.id, set())
        if block.block_type is BlockType.INPUT:
            given.add("value")  # the graph input provides it
        for pin in sorted(block.required_inputs(node.input_default) - given):
            problems.append(
                GraphProblem(
                    where,
                    "required input has no default, no link and no graph input",
                    node=node_ref(node, registry),
                    pin=pin,
                )
            )

    for sub in graph.sub_graphs:
        problems.extend(validate_graph(sub, registry, root, broken_nodes))
    return problems


def _list_index_problems(where: str, prefix: str, node: str, name: str) -> list[GraphProblem]:
    return [
        GraphProblem(
            where, f"{prefix}list index {index!r} in {name!r} is not a whole number", node=node, pin=name
        )
        for index in bad_list_indexes(name)
    ]


def _note_feed(self_fed: dict[str, dict[str, list[Link]]], link: Link) -> None:
    """Per sink pin, its links while all of them come from the sink node itself; a link from any
    other node (even a missing or unreadable one, reported elsewhere) empties the list for good."""
    pins = self_fed.setdefault(link.sink_id, {})
    own = pins.get(link.sink_name)
    if link.source_id != link.sink_id:
        pins[link.sink_name] = []
    elif own is None:
        pins[link.sink_name] = [link]
    elif own:
        own.append(link)


def _never_ready(where: str, node: str, pin: str, links: list[Link]) -> GraphProblem:
    """A linked pin fed only by its own node: an execution waits for a value on every linked pin, and
    only an execution of this node could bring it, so the node never runs."""
    via = ", ".join(f"link {lk.id} from its output {lk.source_name!r}" for lk in links)
    return GraphProblem(
        where,
        f"is fed only by this node itself ({via}), so it never gets a first value and the node never "
        "runs; link it from another node too",
        node=node,
        pin=pin,
    )
