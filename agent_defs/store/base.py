"""The graph store contract, shared by the directory and Postgres stores.

Graphs are immutable per (id, version): `save` never changes a stored version's content; a different
export under a taken (id, version) becomes the next version instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent_defs.graph import Graph, GraphProblem, parse_graph


class GraphStoreError(Exception):
    """The store itself cannot be used (bad configuration, database unreachable)."""


class GraphNotFound(KeyError):
    """No stored graph has this (id, version)."""

    def __init__(self, graph_id: str, version: int, where: str) -> None:
        self.graph_id = graph_id
        self.version = version
        self.message = f"graph {graph_id} v{version} is not in {where}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


@dataclass(frozen=True, slots=True)
class GraphRef:
    """One stored graph version, without its nodes. `source` names where it lives, for messages."""

    graph_id: str
    version: int
    name: str
    active: bool
    source: str


@runtime_checkable
class GraphStore(Protocol):
    def refs(self) -> list[GraphRef]:
        """Every stored version that can be read, sorted by (graph_id, version)."""
        ...

    def load(self, graph_id: str, version: int) -> Graph: ...

    def load_raw(self, graph_id: str, version: int) -> dict[str, Any]: ...

    def save(self, export: Mapping[str, Any]) -> GraphRef: ...

    def problems(self) -> list[GraphProblem]:
        """Everything stored that could not be read, each naming file or row and the reason."""
        ...


def content_key(export: Mapping[str, Any]) -> str:
    """Canonical JSON of what makes two exports the same graph (not id, version or is_active)."""
    subs = export.get("sub_graphs", export.get("subgraphs"))
    content = {
        "name": export.get("name") or "",
        "description": export.get("description") or "",
        "nodes": export.get("nodes") or [],
        "links": export.get("links") or [],
        "sub_graphs": subs or [],
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def checked_export(export: Mapping[str, Any]) -> tuple[dict[str, Any], Graph]:
    """A private copy of the export and its parsed graph; GraphLoadError if it is not a readable graph,
    so that nothing unloadable is ever stored."""
    if not isinstance(export, Mapping):
        raise TypeError(f"a graph export must be a JSON object, got {type(export).__name__}")
    try:
        body = json.loads(json.dumps(export, allow_nan=False))  # deep copy; proves it is plain JSON
    except ValueError:
        parse_graph(export, source="export")  # names where a NaN or Infinity is (graph, node, pin)
        raise
    return body, parse_graph(body, source="export")


def choose_version(wanted: int, key: str, stored: Mapping[int, str | None]) -> tuple[int, bool]:
    """(version to use, whether it is already stored) for an export with content `key`.

    `stored` maps each taken version of the graph id to its content key (None when unknown, e.g. two
    files claim it). A free version is used as given. A taken one with the same content is the same
    import again. Otherwise a version after `wanted` holding the same content means this edit was
    imported before (re-importing an edited file is idempotent too); failing that, max + 1.
    """
    if wanted not in stored:
        return wanted, False
    if stored[wanted] == key:
        return wanted, True
    for version in sorted(v for v in stored if v > wanted):
        if stored[version] == key:
            return version, True
    return max(stored) + 1, False


def active_versions(flags: Mapping[tuple[str, int], bool]) -> set[tuple[str, int]]:
    """The one active version per graph id: the highest flagged is_active, else the highest."""
    best: dict[str, tuple[bool, int]] = {}
    for (graph_id, version), flagged in flags.items():
        rank = (flagged, version)
        if graph_id not in best or rank > best[graph_id]:
            best[graph_id] = rank
    return {(graph_id, version) for graph_id, (_, version) in best.items()}
