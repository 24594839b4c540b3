"""An executable model of AutoGPT's execution rules (issue 12, rules 1-7), written from AutoGPT's
executor code and independently of agent_defs.engine, to judge both of our engines against.

Sources (Significant-Gravitas/AutoGPT, autogpt_platform/backend/backend/): executor/manager.py
`_register_next_executions`, executor/utils.py `validate_exec`, data/dynamic_fields.py
`parse_execution_output` / `merge_execution_input`, util/type.py `convert`, data/block.py
(`validate_data`: the JSON schema is checked with None values left out), data/execution.py
(`upsert_execution_input`, `get_latest_node_execution`, `GraphExecution.from_db`).

Schedule: AutoGPT runs node executions concurrently, so where two executions race several outcomes
are possible. This model picks one of AutoGPT's schedules: ONE node execution at a time, taken from a
FIFO queue of QUEUED executions; each value a node yields is routed at once, in yield order, through
the node's links in the graph's link order, and executions that become ready go to the back of the
queue. (Our reference engine with `node_concurrency=1` follows the same schedule.)

Only the handful of blocks the semantics tests use are modelled (`MODEL_BLOCKS`): tiny pure
re-implementations of their AutoGPT behaviour, with the pin annotations `convert` works from.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from agent_defs.graph.model import Graph, Link

LIST_SPLIT, DICT_SPLIT, OBJC_SPLIT = "_$_", "_#_", "_@_"
DELIMITERS = (LIST_SPLIT, DICT_SPLIT, OBJC_SPLIT)


# --- util/type.py convert (the cases our families use) --------------------------------------------
def convert(value: Any, target: Any) -> Any:
    """AutoGPT's `convert(value, target_type)`: annotations that are not plain containers or scalars
    (Any, unions, enums) leave the value as it is."""
    origin = get_origin(target) or target
    args = get_args(target)
    if origin not in (list, dict, str, int, float, bool):
        return value
    if not isinstance(value, origin):
        value = _convert_to(value, origin)
    if origin is list and args:
        return [convert(v, args[0]) for v in value]
    if origin is dict and args:
        return {convert(k, args[0]): convert(v, args[1]) for k, v in value.items()}
    return value


def _convert_to(value: Any, origin: type) -> Any:
    if origin is list:
        if isinstance(value, list | tuple | set):
            return list(value)
        if isinstance(value, dict):
            return list(value.items())
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    return [text]
            return [text]
        return [value]
    if origin is dict:
        if isinstance(value, str):
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError:
                return {"value": value}
            return loaded if isinstance(loaded, dict) else {"value": loaded}
        if isinstance(value, list | tuple):
            return dict(enumerate(value))
        return {"value": value}
    if origin is str:
        return json.dumps(value)
    if origin in (int, float):
        if isinstance(value, list | dict | tuple | set):
            return origin(len(value))
        try:
            return origin(float(value))
        except (ValueError, TypeError):
            return origin(0)
    if origin is bool:
        if isinstance(value, str):
            return value.lower() in ("true", "1")
        return bool(value)
    return value


# --- data/dynamic_fields.py -----------------------------------------------------------------------
def _first_delimiter(name: str) -> int:
    found = [i for i in (name.find(d) for d in DELIMITERS) if i >= 0]
    return min(found) if found else -1


def _tokens(path: str) -> list[tuple[str, str]] | None:
    tokens = []
    while path:
        delim = next((d for d in DELIMITERS if path.startswith(d)), None)
        if delim is None:
            return None
        path = path[len(delim) :]
        end = _first_delimiter(path)
        ident, path = (path, "") if end < 0 else (path[:end], path[end:])
        if not ident:
            return None
        tokens.append((delim, ident))
    return tokens


def parse_output(pin: str, value: Any, link_source: str) -> Any:
    """What a link from `link_source` carries when a node yields (pin, value); None: nothing (unless
    the names match exactly, when the whole value is sent, None included)."""
    if link_source == pin:
        return value
    if not link_source.startswith(pin) or link_source == pin:
        return None
    tokens = _tokens(link_source[len(pin) :])
    if tokens is None:
        return None
    current = value
    for delim, ident in tokens:
        if delim == LIST_SPLIT:
            try:
                index = int(ident)
            except ValueError:
                return None
            if not isinstance(current, list) or index >= len(current):
                return None
            current = current[index]
        elif delim == DICT_SPLIT:
            if not isinstance(current, dict) or ident not in current:
                return None
            current = current[ident]
        else:  # attributes only: a dict's keys are not attributes
            if not hasattr(current, ident):
                return None
            current = getattr(current, ident)
    return current


def merge_dynamic(data: dict[str, Any]) -> dict[str, Any]:
    """`merge_execution_input`: `values_#_a` is folded into `values` (the flat keys stay too)."""
    merged: dict[str, Any] = {}
    for key, value in data.items():
        at = _first_delimiter(key)
        tokens = _tokens(key[at:]) if at >= 0 else None
        if tokens is None:
            merged[key] = value
            continue
        base = key[:at]
        merged[base] = _assign(merged.get(base), tokens, value)
    data.update(merged)
    return data


def _assign(container: Any, tokens: list[tuple[str, str]], value: Any) -> Any:
    if not tokens:
        return value
    (delim, ident), rest = tokens[0], tokens[1:]
    if delim == LIST_SPLIT:
        index = int(ident)  # a non-integer index raises, as AutoGPT's does
        container = list(container) if isinstance(container, list) else []
        while len(container) <= index:
            container.append(None)
        container[index] = _assign(container[index], rest, value)
        return container
    container = dict(container) if isinstance(container, dict) else {}
    container[ident] = _assign(container.get(ident), rest, value)
    return container


# --- the modelled blocks --------------------------------------------------------------------------
Yields = Iterator[tuple[str, Any]]


@dataclass(frozen=True)
class ModelBlock:
    name: str
    pins: Mapping[str, Any]  # input pin -> its annotation (what `convert` targets)
    required: frozenset[str]
    defaults: Mapping[str, Any]  # schema defaults
    run: Callable[[dict[str, Any]], Yields]
    static_output: bool = False
    kind: str = "standard"  # "input", "output"


def _store_value(i: dict[str, Any]) -> Yields:
    yield "output", i.get("data") or i["input"]


_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "Add": lambda a, b: a + b,
    "Subtract": lambda a, b: a - b,
    "Multiply": lambda a, b: a * b,
}


def _calculator(i: dict[str, Any]) -> Yields:
    result = _OPERATIONS[i["operation"]](i["a"], i["b"])
    yield "result", float(round(result)) if i.get("round_result") else result


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _fill_template(i: dict[str, Any]) -> Yields:
    # Jinja prints Python's str() of a value; the families' templates are plain placeholders.
    yield "output", _PLACEHOLDER.sub(lambda m: str(i["values"].get(m.group(1), "")), i["format"])


def _agent_input(i: dict[str, Any]) -> Yields:
    if i.get("value") is not None:
        yield "result", i["value"]


def _agent_output(i: dict[str, Any]) -> Yields:
    yield "output", i.get("value")
    yield "name", i["name"]


def _add_to_list(i: dict[str, Any]) -> Yields:
    added = list(i.get("entries", []))
    if i.get("entry"):
        added.append(i["entry"])
    yield "updated_list", list(i.get("list", [])) + added


def _step_through(i: dict[str, Any]) -> Yields:
    for key, item in enumerate(i.get("items", [])):
        yield "item", item
        yield "key", key


def _combine_texts(i: dict[str, Any]) -> Yields:
    yield "output", i.get("delimiter", "").join(i.get("input", []))


def _find_in_dictionary(i: dict[str, Any]) -> Yields:
    # The dictionary case only: what the ported tests use.
    obj, key = i["input"], i["key"]
    if isinstance(obj, dict) and key in obj:
        yield "output", obj[key]
    else:
        yield "missing", obj


def _number_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    ">": lambda a, b: a > b,
}


def _condition(i: dict[str, Any]) -> Yields:
    # Numeric strings compare as numbers; yes/no values default to value1/value2.
    value1, value2 = _number_or_text(i["value1"]), _number_or_text(i["value2"])
    result = _COMPARISONS[i["operator"]](value1, value2)
    yield "result", result
    if result:
        yield "yes_output", value1 if i.get("yes_value") is None else i["yes_value"]
    else:
        yield "no_output", value2 if i.get("no_value") is None else i["no_value"]


def _block(
    name: str, pins: Mapping[str, Any], required: set[str], run: Callable[..., Yields], **kw: Any
) -> ModelBlock:
    return ModelBlock(name=name, pins=pins, required=frozenset(required), run=run, **kw)


# Keyed by AutoGPT's block ids (this project's blocks carry the same ids).
MODEL_BLOCKS: dict[str, ModelBlock] = {
    "1ff065e9-88e8-4358-9d82-8dc91f622ba9": _block(
        "StoreValue", {"input": Any, "data": Any}, {"input"}, _store_value, defaults={}, static_output=True
    ),
    "b1ab9b19-67a6-406d-abf5-2dba76d00c79": _block(
        "Calculator",
        {"operation": Any, "a": float, "b": float, "round_result": bool},
        {"operation", "a", "b"},
        _calculator,
        defaults={"round_result": False},
    ),
    "db7d8f02-2f44-4c55-ab7a-eae0941f0c30": _block(
        "FillTextTemplate",
        {"values": dict[str, Any], "format": str, "escape_html": bool},
        {"values", "format"},
        _fill_template,
        defaults={},
    ),
    "c0a8e994-ebf1-4a9c-a4d8-89d09c86741b": _block(
        "AgentInput",
        {"name": str, "value": Any},
        {"name"},
        _agent_input,
        defaults={},
        static_output=True,
        kind="input",
    ),
    "363ae599-353e-4804-937e-b2ee3cef3da4": _block(
        "AgentOutput",
        {"value": Any, "name": str, "format": str},
        {"name"},
        _agent_output,
        defaults={"format": ""},
        static_output=True,
        kind="output",
    ),
    "aeb08fc1-2fc1-4141-bc8e-f758f183a822": _block(
        "AddToList",
        {"list": list[Any], "entry": Any, "entries": list[Any], "position": Any},
        set(),
        _add_to_list,
        defaults={},
    ),
    "f66a3543-28d3-4ab5-8945-9b336371e2ce": _block(
        "StepThroughItems", {"items": list[Any]}, set(), _step_through, defaults={}
    ),
    "0e50422c-6dee-4145-83d6-3a5a392f65de": _block(
        "FindInDictionary", {"input": Any, "key": Any}, {"input", "key"}, _find_in_dictionary, defaults={}
    ),
    "715696a0-e1da-45c8-b209-c2fa9c3b0be6": _block(
        "Condition",
        {"value1": Any, "operator": Any, "value2": Any, "yes_value": Any, "no_value": Any},
        {"value1", "operator", "value2"},
        _condition,
        defaults={},
    ),
    "e30a4d42-7b7d-4e6a-b36e-1f9b8e3b7d85": _block(
        "CombineTexts", {"input": list[str], "delimiter": str}, set(), _combine_texts, defaults={}
    ),
}


# --- the executor ---------------------------------------------------------------------------------
class ModelBlockError(Exception):
    pass


@dataclass(eq=False)  # executions are compared by identity: two may hold equal inputs
class _Execution:
    node_id: str
    inputs: dict[str, Any] = field(default_factory=dict)  # what arrived on links (saved)
    data: dict[str, Any] | None = None  # the validated input it was queued with


@dataclass
class ModelResult:
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # node id -> executions run
    failed: dict[str, int] = field(default_factory=dict)  # node id -> executions failed
    capped: bool = False  # stopped at the execution cap


class AutoGPTModel:
    def __init__(self, graph: Graph, cap: int = 300) -> None:
        unknown = {n.block_id for n in graph.nodes} - set(MODEL_BLOCKS)
        if unknown:
            raise ValueError(f"graph {graph.id}: the model has no block {sorted(unknown)}")
        self.graph = graph
        self.cap = cap
        self.blocks = {n.id: MODEL_BLOCKS[n.block_id] for n in graph.nodes}
        self.nodes = {n.id: n for n in graph.nodes}
        # AutoGPT stores links out of a static_output block as static.
        self.links: list[tuple[Link, bool]] = [
            (lk, lk.is_static or self.blocks[lk.source_id].static_output) for lk in graph.links
        ]
        self.incomplete: dict[str, list[_Execution]] = {n.id: [] for n in graph.nodes}
        self.latest: dict[str, dict[str, Any]] = {}  # node id -> input data of its latest queued execution
        self.queue: deque[_Execution] = deque()
        self.result = ModelResult()

    def _links_into(self, node_id: str) -> list[tuple[Link, bool]]:
        return [(lk, static) for lk, static in self.links if lk.sink_id == node_id]

    def validate(self, node_id: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """`validate_exec`: None while a linked pin is missing; defaults, dynamic pins, `convert`."""
        block = self.blocks[node_id]
        if any(lk.sink_name not in data for lk, _ in self._links_into(node_id)):
            return None
        merged = merge_dynamic({**block.defaults, **self.nodes[node_id].input_default, **data})
        for pin, annotation in block.pins.items():
            if merged.get(pin) is not None:
                merged[pin] = convert(merged[pin], annotation)
        # `get_mismatch_error` validates the JSON schema with None values left out, so a required
        # pin holding None makes the input invalid: the execution is never queued.
        if block.required - {k for k, v in merged.items() if v is not None}:
            return None
        return merged

    def _queue(self, ex: _Execution, data: dict[str, Any]) -> None:
        ex.data = data
        self.latest[ex.node_id] = data
        self.queue.append(ex)

    def deliver(self, link: Link, static: bool, value: Any) -> None:
        """`_register_next_executions` for one link and one value."""
        sink, pin = link.sink_id, link.sink_name
        waiting = self.incomplete[sink]
        target = next((ex for ex in waiting if pin not in ex.inputs), None)
        if target is None:
            target = _Execution(sink)
            waiting.append(target)
        # Inputs are stored as JSON and read back (upsert_execution_input): tuples become lists.
        target.inputs[pin] = json.loads(json.dumps(value))
        static_pins = {lk.sink_name for lk, s in self._links_into(sink) if s}
        candidate = dict(target.inputs)
        latest = self.latest.get(sink)
        if latest is not None:
            for name in static_pins - set(candidate):
                candidate[name] = latest.get(name)
        data = self.validate(sink, candidate)
        if data is None:
            return  # stays INCOMPLETE with only what arrived: the static fill is not saved
        waiting.remove(target)
        self._queue(target, data)
        if not static:
            return
        for other in reversed(list(waiting)):  # newest first
            filled = dict(other.inputs)
            for name in static_pins - set(filled):
                filled[name] = data[name]
            other_data = self.validate(sink, filled)
            if other_data is not None:
                waiting.remove(other)
                self._queue(other, other_data)

    def route(self, node_id: str, pin: str, value: Any) -> None:
        for link, static in self.links:
            if link.source_id != node_id:
                continue
            sent = parse_output(pin, value, link.source_name)
            if sent is None and link.source_name != pin:
                continue
            self.deliver(link, static, sent)

    def run(self, inputs: Mapping[str, Any]) -> ModelResult:
        sinks = {lk.sink_id for lk in self.graph.links}
        for node in self.graph.nodes:
            block = self.blocks[node.id]
            if node.id in sinks and block.kind != "input":
                continue
            data: dict[str, Any] = {}
            if block.kind == "input" and node.input_default.get("name") in inputs:
                data["value"] = inputs[node.input_default["name"]]
            validated = self.validate(node.id, data)
            if validated is None:
                raise ValueError(f"node {node.id}: starting node input is invalid")
            self._queue(_Execution(node.id), validated)
        executed = 0
        while self.queue:
            if executed >= self.cap:
                self.result.capped = True
                break
            executed += 1
            self._execute(self.queue.popleft())
        return self.result

    def _execute(self, ex: _Execution) -> None:
        block = self.blocks[ex.node_id]
        assert ex.data is not None
        counts = self.result.counts
        counts[ex.node_id] = counts.get(ex.node_id, 0) + 1
        if block.kind == "output":
            self.result.outputs.setdefault(str(ex.data["name"]), []).append(ex.data.get("value"))
        # None values are left out of the block's input, so an optional pin given None takes its
        # default (validation already kept None out of required pins).
        given = {k: v for k, v in ex.data.items() if v is not None}
        try:
            for pin, value in block.run(given):
                if pin == "error":
                    raise ModelBlockError(str(value))
                self.route(ex.node_id, pin, value)
        except ModelBlockError as exc:
            self.result.failed[ex.node_id] = self.result.failed.get(ex.node_id, 0) + 1
            self.route(ex.node_id, "error", str(exc))


def run_model(graph: Graph, inputs: Mapping[str, Any] | None = None, cap: int = 300) -> ModelResult:
    return AutoGPTModel(graph, cap).run(inputs or {})
