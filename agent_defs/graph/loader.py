"""Reading AutoGPT exports (current and old template format) into the graph model.

Every structural problem is collected, so one read reports all of them, each naming where it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agent_defs.graph.model import Graph, GraphProblem, Link, Node

# AutoGPT stores a graph's version as a 32-bit integer (Prisma Int), and so does the Postgres store.
MAX_VERSION = 2**31 - 1
_BOOL = TypeAdapter(bool)
# AutoGPT exports list every sub-graph flat in the top graph's `sub_graphs`; nesting them inside each
# other is read only this deep, which keeps reading, validating and comparing graphs well within
# Python's recursion limit.
MAX_SUB_GRAPH_NESTING = 32

_GRAPH_KEYS = {"id", "version", "name", "description", "nodes", "links", "sub_graphs", "subgraphs"}


class GraphLoadError(ValueError):
    """The export could not be read as a graph.

    `graph` is what could be read when only some nodes were unusable (None otherwise), so that
    validation can still report every other problem at once; `broken_nodes` are the ids of those
    unusable nodes (already reported here) for validation to pass over.
    """

    def __init__(
        self,
        problems: list[GraphProblem],
        graph: Graph | None = None,
        broken_nodes: frozenset[str] = frozenset(),
    ) -> None:
        self.problems = problems
        self.graph = graph
        self.broken_nodes = broken_nodes
        super().__init__("\n".join(str(p) for p in problems))


def load_graph_file(path: Path) -> Graph:
    """Read one export file. Raises GraphLoadError naming the file for unreadable or malformed JSON."""
    where = f"file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphLoadError([GraphProblem(where, f"cannot be read: {exc}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphLoadError(
            [GraphProblem(where, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")]
        ) from None
    except RecursionError:
        raise GraphLoadError(
            [
                GraphProblem(
                    where,
                    "is nested too deeply to read (objects and lists inside each other hundreds of "
                    f"levels deep; sub_graphs may nest at most {MAX_SUB_GRAPH_NESTING} levels)",
                )
            ]
        ) from None
    return parse_graph(data, source=where)


def parse_graph(data: Any, source: str = "graph") -> Graph:
    problems: list[GraphProblem] = []
    broken: set[str] = set()
    graph = _parse_graph(data, source, problems, broken)
    if problems or graph is None:
        raise GraphLoadError(problems, graph, frozenset(broken))
    return graph


def non_finite_numbers(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, "NaN" / "Infinity" / "-Infinity") for every such number in `value`. JSON has none
    (Python's parser accepts NaN and Infinity, and reads 1e400 as infinity), and AutoGPT stores graphs
    as JSON: one rule for validate, run and import alike is to refuse them when an export is read."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from non_finite_numbers(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from non_finite_numbers(item, f"{path}[{index}]")


def _not_json_number(
    where: str, what: str, value: Any, node: str | None = None, pin: str | None = None
) -> Iterator[GraphProblem]:
    """A problem for each NaN/Infinity inside `value` (`what` names the field it is in)."""
    for path, shown in non_finite_numbers(value):
        yield GraphProblem(
            where,
            f"{what}{path} is {shown}, which is not a JSON number (use a finite number, null or a string)",
            node=node,
            pin=pin,
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_graph(
    data: Any, source: str, problems: list[GraphProblem], broken: set[str], nesting: int = 0
) -> Graph | None:
    """The graph, or None when it is unusable as a whole (its problems are all collected either way).

    Unusable nodes are left out and their ids added to `broken`; the rest of the graph stays checkable.
    """
    if not isinstance(data, Mapping):
        problems.append(GraphProblem(source, f"must be a JSON object, got {type(data).__name__}"))
        return None
    start = len(problems)
    name = data.get("name") if isinstance(data.get("name"), str) else ""
    graph_id = _text(data.get("id"))
    where = f"graph {name!r}" if name else source
    if graph_id is None:
        problems.append(GraphProblem(where, "has no string 'id'"))
        graph_id = "?"
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(GraphProblem(where, f"'version' must be a positive integer, got {version!r}"))
        version = 1
    elif version > MAX_VERSION:
        problems.append(
            GraphProblem(where, f"'version' must be at most {MAX_VERSION} (a 32-bit integer), got {version}")
        )
        version = 1
    where = f"graph {name or graph_id!r} ({graph_id} v{version})"

    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list):
        problems.append(GraphProblem(where, "'nodes' must be a list"))
        raw_nodes = []
    for key, value in data.items():
        if key not in ("nodes", "links", "sub_graphs", "subgraphs"):
            problems.extend(_not_json_number(where, repr(key), value))
    graph_problems = len(problems) - start  # problems with the graph as a whole
    nodes = [n for i, raw in enumerate(raw_nodes) if (n := _parse_node(raw, i, where, problems))]
    parsed = {n.id for n in nodes}
    for raw in raw_nodes:
        if isinstance(raw, Mapping) and (node_id := _text(raw.get("id"))) and node_id not in parsed:
            broken.add(node_id)

    raw_links = data.get("links")
    if raw_links is None:
        # Some exports carry links only inline on the nodes (input_links / output_links).
        inline: dict[str, Any] = {}
        for raw in raw_nodes:
            if isinstance(raw, Mapping):
                for key in ("input_links", "output_links"):
                    for link in raw.get(key) or []:
                        if isinstance(link, Mapping):
                            inline[str(link.get("id") or len(inline))] = link
        raw_links = list(inline.values())
    # A lost link would make its sink look unlinked, a lost sub-graph its AgentExecutor node look
    # unresolved: from here on every problem is one with the graph as a whole.
    start = len(problems)
    if not isinstance(raw_links, list):
        problems.append(GraphProblem(where, "'links' must be a list"))
        raw_links = []
    links = [lk for i, raw in enumerate(raw_links) if (lk := _parse_link(raw, i, where, problems))]

    raw_subs = data.get("sub_graphs", data.get("subgraphs")) or []
    if isinstance(raw_subs, Mapping):  # the old template format stores {} here
        raw_subs = list(raw_subs.values())
    if not isinstance(raw_subs, list):
        problems.append(GraphProblem(where, "'sub_graphs' must be a list"))
        raw_subs = []
    if raw_subs and nesting >= MAX_SUB_GRAPH_NESTING:
        problems.append(
            GraphProblem(
                where,
                f"'sub_graphs' nest more than {MAX_SUB_GRAPH_NESTING} levels deep (a graph's sub-graphs "
                "inside its sub-graphs); list every sub-graph in the top graph's 'sub_graphs' instead",
            )
        )
        raw_subs = []
    graph_problems += len(problems) - start
    subs = [
        _parse_graph(raw, f"{where} sub-graph {i}", problems, broken, nesting + 1)
        for i, raw in enumerate(raw_subs)
    ]
    if graph_problems or None in subs:
        return None
    description = data.get("description")
    return Graph(
        id=graph_id,
        version=version,
        name=name or graph_id,
        description=description if isinstance(description, str) else "",
        nodes=tuple(nodes),
        links=tuple(links),
        sub_graphs=tuple(s for s in subs if s is not None),
        extra={k: v for k, v in data.items() if k not in _GRAPH_KEYS},
    )


def _parse_node(raw: Any, index: int, where: str, problems: list[GraphProblem]) -> Node | None:
    if not isinstance(raw, Mapping):
        problems.append(GraphProblem(where, f"must be an object, got {type(raw).__name__}", node=f"#{index}"))
        return None
    node_id = _text(raw.get("id"))
    label = node_id or f"#{index}"
    block_id = _text(raw.get("block_id"))
    if node_id is None:
        problems.append(GraphProblem(where, "has no string 'id'", node=label))
    if block_id is None:
        problems.append(GraphProblem(where, "has no string 'block_id'", node=label))
    input_default = raw.get("input_default") or {}
    if not isinstance(input_default, Mapping):
        problems.append(GraphProblem(where, "'input_default' must be an object", node=label))
        return None
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    custom = metadata.get("customized_name")
    named = f"{label} ({custom})" if isinstance(custom, str) and custom else label
    for pin, value in input_default.items():
        problems.extend(_not_json_number(where, "its default", value, node=named, pin=str(pin)))
    for key, value in raw.items():
        if key != "input_default":
            problems.extend(_not_json_number(where, repr(key), value, node=named))
    if node_id is None or block_id is None:
        return None
    return Node(id=node_id, block_id=block_id, input_default=dict(input_default), metadata=dict(metadata))


def _parse_link(raw: Any, index: int, where: str, problems: list[GraphProblem]) -> Link | None:
    if not isinstance(raw, Mapping):
        problems.append(GraphProblem(where, f"link #{index} must be an object, got {type(raw).__name__}"))
        return None
    fields = {}
    missing = []
    for key in ("source_id", "source_name", "sink_id", "sink_name"):
        value = _text(raw.get(key))
        if value is None:
            missing.append(key)
        fields[key] = value or ""
    link_id = _text(raw.get("id")) or f"link-{index}"
    for key, value in raw.items():
        problems.extend(_not_json_number(where, f"link {link_id} {key!r}", value))
    if missing:
        problems.append(GraphProblem(where, f"link {link_id} has no string {', '.join(map(repr, missing))}"))
        return None
    is_static = raw.get("is_static")
    try:
        # AutoGPT's Link model reads it as a pydantic bool: "false" and 0 are False, not truthy.
        static = False if is_static is None else _BOOL.validate_python(is_static)
    except ValidationError:
        problems.append(
            GraphProblem(where, f"link {link_id}: 'is_static' must be true or false, got {is_static!r}")
        )
        return None
    return Link(id=link_id, is_static=static, **fields)
