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

Only the handful of blocks the semantics tests use are modelled (tests/autogpt_model_blocks.py);
`convert` and dynamic pins are in tests/autogpt_model_values.py.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autogpt_model_blocks import MODEL_BLOCKS
from autogpt_model_values import convert, merge_dynamic, parse_output

from agent_defs.graph.model import Graph, Link


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
