"""Routing values between node executions, by AutoGPT's rules (executor/manager.py
`_register_next_executions`, executor/utils.py `validate_exec`). No Dagster.

This is the only implementation of these rules: the reference engine routes with it, and every
compiled op (node, region, fused) runs the reference engine, so the compiled job cannot route
differently. What it owns:

- a per-pin FIFO: a value goes to the oldest waiting execution of the sink that lacks that pin, else
  to a new one;
- static pins, filled when an execution is checked for readiness from the latest queued execution of
  that node (its input value for the pin, whichever link brought it); the filled values are kept only
  if the execution becomes ready, so a static value reaching an execution that stays unready
  back-fills nothing;
- after a static value made its execution ready, the other waiting executions re-checked newest first;
- each yield routed at once, in the order yielded, and dynamic source paths (dynamic_pins.extract).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent_defs.engine import dynamic_pins
from agent_defs.engine.model import NodeExecution, RoutedValue, SkippedExecution
from agent_defs.engine.plan import NodePlan
from agent_defs.graph.model import Link
from blocks.sdk import BlockInputError


class Router:
    """The routing state of one run (or one part of a graph run by a compiled op)."""

    def __init__(
        self,
        plans: Mapping[str, NodePlan],
        input_masks: Mapping[str, Mapping[str, Any]],
        new_execution: Callable[[NodePlan], NodeExecution],
        on_ready: Callable[[NodeExecution], None],
        skipped: list[SkippedExecution],
        outbound: list[RoutedValue],
    ) -> None:
        self.plans = plans
        self.input_masks = input_masks
        self.new_execution = new_execution
        self.on_ready = on_ready
        self.skipped = skipped
        self.outbound = outbound
        # Node id -> its executions still waiting for inputs, oldest first (AutoGPT's INCOMPLETE ones).
        self.waiting: dict[str, list[NodeExecution]] = {}
        # Node id -> its latest queued execution, whose inputs static pins reuse.
        self.latest: dict[str, NodeExecution] = {}

    # --- values arriving ---------------------------------------------------------------------------
    def start(self, plan: NodePlan, inputs: dict[str, Any]) -> None:
        """A starting execution (no linked pin, or an input node given the graph input)."""
        ex = self.new_execution(plan)
        ex.inputs = inputs
        self.waiting.setdefault(plan.node.id, []).append(ex)
        # An input node starts whether or not it is also linked; only a block's own readiness rule
        # (e.g. SmartDecisionMaker's) can hold a starting execution back.
        self._try_ready(plan, ex, check_links=plan.custom_ready and not plan.is_input)

    def route(self, plan: NodePlan, pin: str, value: Any) -> None:
        """One yield of `plan`'s node: every link from that pin (exact or a dynamic path into the value)
        fires at once, in the graph's link order, as AutoGPT walks `node.output_links`."""
        for link, is_static, exact in plan.routes_of(pin):
            if exact:
                self.deliver(link, value, is_static)
                continue
            part = dynamic_pins.extract(pin, value, link.source_name)
            if part is not dynamic_pins.NOTHING:
                self.deliver(link, part, is_static)

    def deliver(self, link: Link, value: Any, is_static: bool) -> None:
        sink = link.sink_id
        plan = self.plans.get(sink)
        if plan is None:  # the link leaves this part of the graph
            self.outbound.append(RoutedValue(link, value, len(self.outbound)))
            return
        pin = link.sink_name
        waiting = self.waiting.get(sink)
        if waiting is None:
            waiting = self.waiting[sink] = []
        target = next((ex for ex in waiting if pin not in ex.inputs), None)
        if target is None:
            target = self.new_execution(plan)
            waiting.append(target)
        target.inputs[pin] = value
        # AutoGPT re-checks the other waiting executions only when a static value made its own
        # execution ready (it returns early otherwise), newest first.
        if self._try_ready(plan, target) and is_static:
            # Their static pins are filled from the execution just readied (AutoGPT's
            # `next_node_input`), even as each of them, once queued, becomes the latest.
            for other in reversed(list(waiting)):
                self._try_ready(plan, other, fill_from=target)

    # --- readiness ---------------------------------------------------------------------------------
    def _try_ready(
        self,
        plan: NodePlan,
        ex: NodeExecution,
        check_links: bool = True,
        fill_from: NodeExecution | None = None,
    ) -> bool:
        """Queues `ex` if its inputs, with its missing static pins filled (from the latest queued
        execution, unless `fill_from` is given), are complete and valid. An execution that stays
        waiting keeps none of the filled values."""
        inputs = ex.inputs
        filled = False
        if plan.static_pins:
            latest = fill_from or self.latest.get(plan.node.id)
            if latest is not None:
                for pin in plan.static_pins:
                    if pin not in inputs:
                        if not filled:
                            inputs = dict(inputs)
                            filled = True
                        inputs[pin] = _input_value(latest, pin)
        mask = self.input_masks.get(plan.node.id)
        if (
            check_links
            and not plan.required_pins.issubset(inputs)
            and not (mask and plan.required_pins.issubset(inputs.keys() | mask.keys()))
        ):
            return False
        try:
            data = merged_input(plan, inputs, mask)
        except dynamic_pins.DynamicPinError as exc:
            return self._refuse(plan, ex, filled, str(exc))
        if check_links and plan.custom_ready and plan.block.missing_inputs(data):
            return False
        try:
            ex.validated = validate_input(plan, data)
        except BlockInputError as exc:
            return self._refuse(plan, ex, filled, str(exc))
        ex.inputs = inputs
        ex.input_data = data
        self.waiting[plan.node.id].remove(ex)
        self.latest[plan.node.id] = ex
        self.on_ready(ex)
        return True

    def _refuse(self, plan: NodePlan, ex: NodeExecution, filled: bool, reason: str) -> bool:
        """The input does not validate. With values of its own only, it never will: it is reported
        and dropped. With filled static values it waits on: a later static value may fit."""
        if not filled:
            self.waiting[plan.node.id].remove(ex)
            self.skipped.append(SkippedExecution(plan.node.id, plan.block.name, reason))
        return False


def _input_value(latest: NodeExecution, pin: str) -> Any:
    """The latest execution's input value for `pin` (AutoGPT: its stored input data, `.get(pin)`);
    a dynamic pin is folded into its base in the merged input, so it is read from the linked values."""
    if latest.input_data is not None and pin in latest.input_data:
        return latest.input_data[pin]
    return latest.inputs.get(pin)


def merged_input(plan: NodePlan, inputs: Mapping[str, Any], mask: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults, the values that arrived, then the run's mask; dynamic pins folded back."""
    data = {**plan.node.input_default, **inputs}
    if mask:
        data.update(mask)
    if plan.has_dynamic_inputs or (mask and any(dynamic_pins.is_dynamic(k) for k in mask)):
        data = dynamic_pins.merge(data)
    return data


def validate_input(plan: NodePlan, data: dict[str, Any]) -> Any:
    """The block's input model for a ready execution's merged input; raises BlockInputError when it
    does not validate (the execution is then not run)."""
    return plan.block.make_input(data)


__all__ = ["Router", "merged_input", "validate_input"]
