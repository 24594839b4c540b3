"""The per-user credit ledger: a balance row per user and an append-only list of transactions.

    agentflow_credit_balances(user_id, balance >= 0)
    agentflow_credit_transactions(id, user_id, amount (signed), kind, key (unique), reference,
                                  description, balance_after, created_at)

Every change locks the user's balance row (`SELECT ... FOR UPDATE`) and writes the new balance and
its transaction in one database transaction, as AutoGPT's `data/credit.py` does, so concurrent
charges serialise per user and the balance never goes negative. Transactions are never edited: a
refund is a compensating REFUND row. Idempotency keys make retried charges, grants and refunds free.
The tables live in the connection's search_path (choose a schema with `options=-csearch_path=...`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from agent_defs.engine import InsufficientBalanceError
from agent_defs.pgpool import PgPool

BALANCES = "agentflow_credit_balances"
TRANSACTIONS = "agentflow_credit_transactions"
DATABASE_VAR = "AGENTFLOW_DATABASE_URL"

# AutoGPT notifies a user whose balance drops below this many credits.
LOW_BALANCE_THRESHOLD = 500


class TransactionKind(StrEnum):
    GRANT = "GRANT"
    TOP_UP = "TOP_UP"
    USAGE = "USAGE"
    REFUND = "REFUND"


_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {BALANCES} (
    user_id text PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS {TRANSACTIONS} (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    amount bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('GRANT', 'TOP_UP', 'USAGE', 'REFUND')),
    key text UNIQUE,
    reference text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    balance_after bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {TRANSACTIONS}_user ON {TRANSACTIONS} (user_id, id);
"""


class CreditError(Exception):
    """A ledger error a user can act on: bad amount, unknown refund key, database unreachable."""


@dataclass(frozen=True, slots=True)
class CreditTransaction:
    id: int
    user_id: str
    amount: int  # signed: USAGE rows are negative
    kind: TransactionKind
    key: str | None
    reference: str
    description: str
    balance_after: int
    created_at: datetime


def _checked_amount(amount: int, what: str) -> int:
    # bool is an int subclass; `charge(user, True)` is a bug, not one credit.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise CreditError(f"{what} amount must be a whole number of credits, got {amount!r}")
    if amount < 0:
        raise CreditError(f"{what} amount must not be negative, got {amount}")
    return amount


def _checked_user(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id.strip():
        raise CreditError(f"user id must be a non-empty string, got {user_id!r}")
    return user_id


class CreditLedger:
    def __init__(self, dsn: str, max_idle_connections: int = 4) -> None:
        self._pool = PgPool(
            dsn,
            schema_sql=_SCHEMA_SQL,
            error=CreditError,
            what="credit ledger",
            max_idle_connections=max_idle_connections,
        )

    def __repr__(self) -> str:
        return f"CreditLedger(tables {BALANCES}, {TRANSACTIONS})"  # never the DSN

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> CreditLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------------

    def balance(self, user_id: str) -> int:
        """The user's balance; 0 for a user the ledger has never seen."""
        with self._pool.transaction() as cur:
            cur.execute(f"SELECT balance FROM {BALANCES} WHERE user_id = %s", (user_id,))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def transactions(self, user_id: str, limit: int = 100) -> list[CreditTransaction]:
        """The user's most recent transactions, newest first."""
        with self._pool.transaction() as cur:
            cur.execute(
                f"""SELECT id, user_id, amount, kind, key, reference, description, balance_after, created_at
                    FROM {TRANSACTIONS} WHERE user_id = %s ORDER BY id DESC LIMIT %s""",
                (user_id, max(0, int(limit))),
            )
            rows = cur.fetchall()
        return [
            CreditTransaction(
                id=r[0],
                user_id=r[1],
                amount=r[2],
                kind=TransactionKind(r[3]),
                key=r[4],
                reference=r[5],
                description=r[6],
                balance_after=r[7],
                created_at=r[8],
            )
            for r in rows
        ]

    # --- writing -------------------------------------------------------------------------------------

    def grant(
        self,
        user_id: str,
        amount: int,
        description: str = "",
        key: str | None = None,
        kind: TransactionKind = TransactionKind.GRANT,
    ) -> int:
        """Add credits (GRANT, or TOP_UP for purchases); returns the new balance. With a `key`, a
        repeated grant adds nothing and returns the current balance."""
        _checked_user(user_id)
        _checked_amount(amount, "grant")
        if kind not in (TransactionKind.GRANT, TransactionKind.TOP_UP):
            raise CreditError(f"grant kind must be GRANT or TOP_UP, got {kind}")
        if amount == 0:
            return self.balance(user_id)
        return self._apply(user_id, amount, kind, key, "", description)

    def charge(self, user_id: str, amount: int, key: str, reference: str = "", description: str = "") -> int:
        """Take `amount` credits for one use (e.g. one node execution, `key` its execution id); returns
        the new balance. Raises InsufficientBalanceError, changing nothing, when the balance is short.
        A `key` already in the ledger charges nothing again: a retried step is never charged twice."""
        _checked_user(user_id)
        _checked_amount(amount, "charge")
        if not isinstance(key, str) or not key:
            raise CreditError("a charge needs an idempotency key (e.g. the node execution id)")
        if amount == 0:  # nothing to record; a free block leaves no USAGE rows behind
            return self.balance(user_id)
        return self._apply(user_id, -amount, TransactionKind.USAGE, key, reference, description)

    def refund(self, key_of_charge: str, description: str = "") -> int:
        """Give back a USAGE charge with a compensating REFUND row (key `refund:<key>`); the charge's
        row is left as it is. Returns the user's new balance; refunding twice refunds once."""
        with _database_errors(), self._pool.transaction() as cur:
            cur.execute(
                f"SELECT user_id, amount, kind, reference FROM {TRANSACTIONS} WHERE key = %s",
                (key_of_charge,),
            )
            row = cur.fetchone()
            if row is None or row[2] != TransactionKind.USAGE:
                raise CreditError(f"no charge with key {key_of_charge!r} to refund")
            user_id, charged, _, reference = row
            return self._apply_in(
                cur,
                user_id,
                -charged,
                TransactionKind.REFUND,
                f"refund:{key_of_charge}",
                reference,
                description or f"refund of {key_of_charge}",
            )

    def has_charge(self, key: str) -> bool:
        """Whether a USAGE charge with this idempotency key is in the ledger."""
        with _database_errors(), self._pool.transaction() as cur:
            cur.execute(
                f"SELECT 1 FROM {TRANSACTIONS} WHERE key = %s AND kind = %s",
                (key, TransactionKind.USAGE.value),
            )
            return cur.fetchone() is not None

    def _apply(
        self,
        user_id: str,
        amount: int,
        kind: TransactionKind,
        key: str | None,
        reference: str,
        description: str,
    ) -> int:
        with _database_errors(), self._pool.transaction() as cur:
            return self._apply_in(cur, user_id, amount, kind, key, reference, description)

    @staticmethod
    def _apply_in(
        cur: psycopg2.extensions.cursor,
        user_id: str,
        amount: int,
        kind: TransactionKind,
        key: str | None,
        reference: str,
        description: str,
    ) -> int:
        """Inside one transaction: lock the balance row, skip a known key, check, update, record."""
        # The zero row makes the lock possible for a new user; an error rolls it back with the rest.
        cur.execute(
            f"INSERT INTO {BALANCES} (user_id, balance) VALUES (%s, 0) ON CONFLICT (user_id) DO NOTHING",
            (user_id,),
        )
        cur.execute(f"SELECT balance FROM {BALANCES} WHERE user_id = %s FOR UPDATE", (user_id,))
        balance = int(cur.fetchone()[0])
        if key is not None:
            # Read after taking the lock: in READ COMMITTED this statement sees a concurrent
            # transaction with the same key that committed while we waited for the row.
            cur.execute(f"SELECT user_id, kind FROM {TRANSACTIONS} WHERE key = %s", (key,))
            seen = cur.fetchone()
            if seen is not None:
                if seen[0] != user_id or seen[1] != kind:
                    raise CreditError(f"transaction key {key!r} is already used by another transaction")
                return balance
        new_balance = balance + amount
        if new_balance < 0:
            raise InsufficientBalanceError(
                f"insufficient balance: user {user_id!r} has {balance} credits, "
                f"{-amount} needed{f' for {reference}' if reference else ''}"
            )
        cur.execute(f"UPDATE {BALANCES} SET balance = %s WHERE user_id = %s", (new_balance, user_id))
        cur.execute(
            f"""INSERT INTO {TRANSACTIONS} (user_id, amount, kind, key, reference, description, balance_after)
                VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (user_id, amount, kind.value, key, reference or "", description or "", new_balance),
        )
        return new_balance


@contextmanager
def _database_errors() -> Iterator[None]:
    """Turns the database's refusals into CreditErrors a user can read."""
    try:
        yield
    except psycopg2.errors.UniqueViolation:
        # Two users' transactions racing with one key: the loser hits the unique index.
        raise CreditError("transaction key is already used by another transaction") from None
    except psycopg2.errors.NumericValueOutOfRange:
        raise CreditError("amount or balance out of range (at most 2**63 - 1 credits)") from None
    except psycopg2.Error as exc:
        raise CreditError(f"credit ledger database error: {str(exc).strip()}") from None


def ledger_from_env() -> CreditLedger:
    """The ledger in `AGENTFLOW_DATABASE_URL` (a libpq DSN or postgresql:// URL), read when called."""
    dsn = os.environ.get(DATABASE_VAR, "").strip()
    if not dsn:
        raise CreditError(f"the credit ledger needs {DATABASE_VAR} (a libpq DSN or postgresql:// URL)")
    return CreditLedger(dsn)
