"""The reference engine: the executable definition of the execution semantics. No Dagster."""

from agent_defs.engine.reference import (
    EngineLimits,
    ExecStatus,
    ExecutionObserver,
    GraphPart,
    InsufficientBalanceError,
    NodeExecution,
    ReferenceEngine,
    RunControl,
    RunOptions,
    RunResult,
    RunStatus,
)

__all__ = [
    "EngineLimits",
    "ExecStatus",
    "ExecutionObserver",
    "GraphPart",
    "InsufficientBalanceError",
    "NodeExecution",
    "ReferenceEngine",
    "RunControl",
    "RunOptions",
    "RunResult",
    "RunStatus",
]
