"""Agent graphs in the AutoGPT export format: nodes (block instances), links (pin -> pin), sub-graphs.

Graphs are immutable per (id, version); an edit is a new version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# Dynamic pin delimiters (AutoGPT data/dynamic_fields.py): dict key, list index, attribute.
DICT_SPLIT = "_#_"
LIST_SPLIT = "_$_"
OBJC_SPLIT = "_@_"
DYNAMIC_SPLITS = (DICT_SPLIT, LIST_SPLIT, OBJC_SPLIT)


def base_pin(name: str) -> str:
    """The pin a dynamic pin name belongs to: `values_#_key` -> `values`."""
    cut = len(name)
    for sep in DYNAMIC_SPLITS:
        at = name.find(sep)
        if at != -1 and at < cut:
            cut = at
    return name[:cut]


_LIST_INDEX = re.compile(r"_\$_(.*?)(?=_#_|_\$_|_@_|$)")


def bad_list_indexes(name: str) -> list[str]:
    """The list indexes in a dynamic pin name that are not whole numbers (`items_$_x` -> ["x"]);
    AutoGPT refuses such a name (data/dynamic_fields.py), so the pin could never be read or filled."""
    return [m.group(1) for m in _LIST_INDEX.finditer(name) if not m.group(1).isdigit()]


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    source_id: str
    source_name: str
    sink_id: str
    sink_name: str
    is_static: bool = False


@dataclass(frozen=True)
class Node:
    id: str
    block_id: str
    input_default: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The name a person gave the node in the builder, if any."""
        name = self.metadata.get("customized_name") if isinstance(self.metadata, Mapping) else None
        return name if isinstance(name, str) else ""


@dataclass(frozen=True)
class Graph:
    id: str
    version: int
    name: str
    description: str = ""
    nodes: tuple[Node, ...] = ()
    links: tuple[Link, ...] = ()
    sub_graphs: tuple[Graph, ...] = ()
    # Keys of the export this model does not interpret; kept so a round trip loses nothing.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def nodes_by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    @property
    def ref(self) -> str:
        return f"graph {self.name!r} ({self.id} v{self.version})"


@dataclass(frozen=True, slots=True)
class GraphProblem:
    """One thing wrong with a graph, located as precisely as possible."""

    graph: str
    message: str
    node: str | None = None
    pin: str | None = None

    def __str__(self) -> str:
        where = [self.graph]
        if self.node:
            where.append(f"node {self.node}")
        if self.pin:
            where.append(f"pin {self.pin!r}")
        return f"{': '.join(where)}: {self.message}"
