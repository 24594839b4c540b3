"""Which nodes are a graph's inputs and outputs (AgentInput-type and AgentOutput nodes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from blocks import REGISTRY, BlockType

if TYPE_CHECKING:
    from agent_defs.graph.model import Graph, Node


def block_type_of(node: Node) -> BlockType | None:
    block = REGISTRY.get(node.block_id)
    return block.block_type if block is not None else None


def io_name(node: Node) -> str | None:
    name = node.input_default.get("name")
    return name if isinstance(name, str) else None


def input_nodes(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if block_type_of(n) is BlockType.INPUT]


def graph_input_names(graph: Graph) -> list[str]:
    return [name for n in input_nodes(graph) if (name := io_name(n)) is not None]


def graph_output_names(graph: Graph) -> list[str]:
    return [
        name for n in graph.nodes if block_type_of(n) is BlockType.OUTPUT and (name := io_name(n)) is not None
    ]


def graph_input_spec(graph: Graph) -> dict[str, dict[str, Any]]:
    """Graph input name -> {type, default, description, required} from its input nodes."""
    spec: dict[str, dict[str, Any]] = {}
    for node in input_nodes(graph):
        name = io_name(node)
        if name is None:
            continue
        block = REGISTRY.get(node.block_id)
        assert block is not None
        value_type = block.input_pins(node.input_default).get("value")
        default = node.input_default.get("value")
        spec[name] = {
            "type": value_type,
            "default": default,
            "description": node.input_default.get("description") or node.input_default.get("title") or "",
            "required": default is None,
            "node_id": node.id,
        }
    return spec


def recorded_output(input_data: Mapping[str, Any]) -> tuple[str, Any]:
    """What an AgentOutput node execution adds to the run's outputs: (its `name`, the `value` that
    reached it). AutoGPT's GraphExecution reads the node execution's input, not the text the block
    yields (formatted with `format`), which stays the node's own `output`."""
    return str(input_data.get("name")), input_data.get("value")
