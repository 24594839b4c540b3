"""The reference engine: the executable definition of the execution semantics. No Dagster."""

from agent_defs.engine.reference import (
    EngineLimits,
    ExecStatus,
    ExecutionBudget,
    ExecutionCapError,
    ExecutionObserver,
    GraphPart,
    InsufficientBalanceError,
    NodeExecution,
    ReferenceEngine,
    RunControl,
    RunOptions,
    RunResult,
    RunStatus,
    SubAgentDepthError,
)

__all__ = [
    "EngineLimits",
    "ExecStatus",
    "ExecutionBudget",
    "ExecutionCapError",
    "ExecutionObserver",
    "GraphPart",
    "InsufficientBalanceError",
    "NodeExecution",
    "ReferenceEngine",
    "RunControl",
    "RunOptions",
    "RunResult",
    "RunStatus",
    "SubAgentDepthError",
]
