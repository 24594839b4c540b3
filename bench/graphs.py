"""Synthetic stored graphs for the benchmarks: N graphs of about 20 nodes each."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from blocks.library.branching import ConditionBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.text import FillTextTemplateBlock


def twenty_node_graph(index: int) -> Graph:
    """Input -> 8 calculators -> condition -> two template branches -> outputs (20 nodes, no loops)."""
    b = GraphBuilder(f"Bench graph {index}", graph_id=str(uuid.UUID(int=index + 1)))
    x = b.node(AgentInputBlock, node_id="x", name="x", value=1, label="X")
    prev, pin = x, "result"
    for i in range(8):
        calc = b.node(CalculatorBlock, node_id=f"c{i}", operation="Add", b=i, label=f"Step {i}")
        b.link(prev, pin, calc, "a")
        prev, pin = calc, "result"
    cond = b.node(ConditionBlock, node_id="big", operator=">", value2=10, label="Big")
    b.link(prev, "result", cond, "value1")
    for branch in ("yes", "no"):
        text = b.node(FillTextTemplateBlock, node_id=f"t_{branch}", format=branch + " {{ v }}", label=branch)
        b.link(cond, f"{branch}_output", text, "values_#_v")
        prev = text
        for j in range(3):
            calc = b.node(
                CalculatorBlock, node_id=f"{branch}{j}", operation="Add", a=j, b=1, label=f"{branch} {j}"
            )
            b.link(prev, "output" if j == 0 else "result", calc, "b") if j == 0 else b.link(
                prev, "result", calc, "a"
            )
            prev = calc
        out = b.node(AgentOutputBlock, node_id=f"out_{branch}", name=branch, label=f"Out {branch}")
        b.link(prev, "result", out, "value")
    return b.build()


def export(graph: Graph) -> dict:
    return {
        "id": graph.id,
        "version": graph.version,
        "name": graph.name,
        "description": "benchmark graph",
        "nodes": [
            {
                "id": n.id,
                "block_id": n.block_id,
                "input_default": dict(n.input_default),
                "metadata": dict(n.metadata),
            }
            for n in graph.nodes
        ],
        "links": [
            {
                "id": lk.id,
                "source_id": lk.source_id,
                "source_name": lk.source_name,
                "sink_id": lk.sink_id,
                "sink_name": lk.sink_name,
                "is_static": lk.is_static,
            }
            for lk in graph.links
        ],
    }


def write_graphs(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"bench_{i:04d}.json").write_text(json.dumps(export(twenty_node_graph(i))))
