"""The execution observer that charges credits and publishes live events for each node execution.

It plugs into the reference engine (`ExecutionObserver`), so region ops, node ops and fused ops all
charge and publish the same way. Charging is keyed by the node execution id, which is stable across
a retried step, so a retry is never charged twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent_defs.credits.ledger import CreditLedger
from agent_defs.engine.reference import NodeExecution
from agent_defs.graph.model import Graph
from agent_defs.requests.events import EventPublisher, node_execution_update
from blocks import Block


def _when(timestamp: float) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


class PlatformObserver:
    # Its hooks write to Postgres (credits) and Redis (events): the engine calls them in a worker
    # thread, off its event loop.
    blocking = True

    def __init__(
        self,
        graph: Graph,
        user_id: str,
        run_id: str,
        ledger: CreditLedger | None,
        publisher: EventPublisher | None,
    ) -> None:
        self.graph = graph
        self.user_id = user_id
        self.run_id = run_id  # the Dagster run: the events' graph_exec_id and the charges' reference
        self.ledger = ledger
        self.publisher = publisher
        self._charged: dict[str, int] = {}

    # --- credits ---------------------------------------------------------------------------------
    # The engine sets execution.cost: before the block runs for per-run costs, after it for per-byte
    # and per-second ones. Whatever is not yet charged is charged at each point.
    def before_node(self, execution: NodeExecution, block: Block) -> None:
        self._publish(execution, "RUNNING")
        if self.ledger is not None and execution.cost:
            # Raises InsufficientBalanceError, which stops the run as FAILED (rule 6).
            self.ledger.charge(
                self.user_id,
                execution.cost,
                key=execution.id,
                reference=self.run_id,
                description=f"{block.name} node {execution.node_id}",
            )
            self._charged[execution.id] = execution.cost

    def on_output(self, execution: NodeExecution, pin: str, value: Any) -> None:
        # Only the new output: re-sending every earlier one on each yield is quadratic for a node that
        # streams many. The final event (after_node) carries them all.
        self._publish(execution, "RUNNING", {pin: [value]})

    def after_node(self, execution: NodeExecution, block: Block) -> None:
        self._publish(execution, execution.status.value)
        if self.ledger is None:
            return
        charged_before = self._charged.pop(execution.id, 0)
        if execution.cost > charged_before:
            self.ledger.charge(
                self.user_id,
                execution.cost - charged_before,
                key=f"{execution.id}:usage",
                reference=self.run_id,
                description=f"{block.name} node {execution.node_id} (usage)",
            )
        if execution.error is not None and block.refund_on_failure:
            for key in (execution.id, f"{execution.id}:usage"):
                if self.ledger.has_charge(key):
                    self.ledger.refund(key, f"{block.name} node {execution.node_id} failed")

    # --- live events -------------------------------------------------------------------------------
    def _publish(
        self, execution: NodeExecution, status: str, outputs: dict[str, list[Any]] | None = None
    ) -> None:
        if self.publisher is None:
            return
        if outputs is None:
            outputs = {}
            for pin, value in execution.outputs:
                outputs.setdefault(pin, []).append(value)
        event = node_execution_update(
            user_id=self.user_id,
            graph_id=self.graph.id,
            graph_version=self.graph.version,
            graph_exec_id=self.run_id,
            node_exec_id=execution.id,
            node_id=execution.node_id,
            block_id=execution.block_id,
            status=status,
            input_data=execution.input_data,
            output_data=outputs,
            start_time=_when(execution.started_at),
            end_time=_when(execution.ended_at),
            error=execution.error,
        )
        self.publisher.publish(self.user_id, self.graph.id, self.run_id, event)
