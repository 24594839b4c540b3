"""Building graphs in code (tests, generated graphs, examples) instead of writing export JSON."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent_defs.graph.model import Graph, Link, Node
from blocks import Block


class GraphBuilder:
    def __init__(self, name: str, graph_id: str | None = None, version: int = 1) -> None:
        self.name = name
        self.graph_id = graph_id or f"graph-{name.lower().replace(' ', '-')}"
        self.version = version
        self._nodes: list[Node] = []
        self._links: list[Link] = []
        self._subs: list[Graph] = []

    def node(
        self, block: type[Block] | str, node_id: str | None = None, label: str = "", **defaults: Any
    ) -> str:
        block_id = block if isinstance(block, str) else block.id
        node_id = node_id or f"n{len(self._nodes) + 1}"
        metadata = {"customized_name": label} if label else {}
        self._nodes.append(Node(id=node_id, block_id=block_id, input_default=defaults, metadata=metadata))
        return node_id

    def metadata(self, node_id: str, **entries: Any) -> GraphBuilder:
        """Add entries to a node's stored metadata (e.g. `agentflow={"retry": {...}}`)."""
        for i, node in enumerate(self._nodes):
            if node.id == node_id:
                self._nodes[i] = replace(node, metadata={**node.metadata, **entries})
                return self
        raise KeyError(f"no node {node_id!r}")

    def link(
        self, source: str, source_pin: str, sink: str, sink_pin: str, *, static: bool = False
    ) -> GraphBuilder:
        self._links.append(
            Link(
                id=f"l{len(self._links) + 1}",
                source_id=source,
                source_name=source_pin,
                sink_id=sink,
                sink_name=sink_pin,
                is_static=static,
            )
        )
        return self

    def sub_graph(self, graph: Graph) -> GraphBuilder:
        self._subs.append(graph)
        return self

    def build(self) -> Graph:
        return Graph(
            id=self.graph_id,
            version=self.version,
            name=self.name,
            nodes=tuple(self._nodes),
            links=tuple(self._links),
            sub_graphs=tuple(self._subs),
        )
