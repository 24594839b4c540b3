"""Per-user credits: a PostgreSQL ledger charged per node execution (DESIGN.md, "Platform pieces").
No Dagster."""

from agent_defs.credits.ledger import (
    DATABASE_VAR,
    LOW_BALANCE_THRESHOLD,
    CreditError,
    CreditLedger,
    CreditTransaction,
    TransactionKind,
    ledger_from_env,
)

__all__ = [
    "DATABASE_VAR",
    "LOW_BALANCE_THRESHOLD",
    "CreditError",
    "CreditLedger",
    "CreditTransaction",
    "TransactionKind",
    "ledger_from_env",
]
