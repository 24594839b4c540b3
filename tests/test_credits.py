"""The credit ledger on the real PostgreSQL at 127.0.0.1:5432 (database `test`), in a fresh schema for
this module chosen through the DSN's search_path and dropped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg2
import pytest

from agent_defs.credits import (
    LOW_BALANCE_THRESHOLD,
    CreditError,
    CreditLedger,
    TransactionKind,
    ledger_from_env,
)
from agent_defs.credits.ledger import BALANCES, TRANSACTIONS
from agent_defs.engine import InsufficientBalanceError
from agent_defs.paths import project_root

ROOT = project_root()
AGENTFLOW = Path(sys.executable).parent / "agentflow"


@pytest.fixture
def ledger(pg_dsn: str) -> Iterator[CreditLedger]:
    with CreditLedger(pg_dsn) as ledger:
        yield ledger


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"  # the schema is shared by the module's tests


def rows(dsn: str, user_id: str) -> list[tuple[object, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT id, amount, kind, key, reference, balance_after FROM {TRANSACTIONS} "
            "WHERE user_id = %s ORDER BY id",
            (user_id,),
        )
        found = cur.fetchall()
    conn.close()
    return found


def test_grant_charge_balance(ledger: CreditLedger, user: str) -> None:
    assert ledger.balance(user) == 0
    assert ledger.grant(user, 100, "welcome") == 100
    assert ledger.charge(user, 30, key="run-1/n-1", reference="run-1", description="node n-1") == 70
    assert ledger.balance(user) == 70
    txs = ledger.transactions(user)
    assert [(t.kind, t.amount, t.balance_after) for t in txs] == [
        (TransactionKind.USAGE, -30, 70),
        (TransactionKind.GRANT, 100, 100),
    ]
    assert (txs[0].key, txs[0].reference, txs[0].description) == ("run-1/n-1", "run-1", "node n-1")
    assert [t.kind for t in ledger.transactions(user, limit=1)] == [TransactionKind.USAGE]
    assert LOW_BALANCE_THRESHOLD == 500


def test_grant_with_key_is_idempotent(ledger: CreditLedger, user: str) -> None:
    assert ledger.grant(user, 50, "signup bonus", key=f"signup:{user}") == 50
    assert ledger.grant(user, 50, "signup bonus", key=f"signup:{user}") == 50
    assert ledger.grant(user, 5, kind=TransactionKind.TOP_UP) == 55
    assert [t.kind for t in ledger.transactions(user)] == [TransactionKind.TOP_UP, TransactionKind.GRANT]


def test_insufficient_balance_raises_and_changes_nothing(
    ledger: CreditLedger, pg_dsn: str, user: str
) -> None:
    ledger.grant(user, 20)
    before = rows(pg_dsn, user)
    with pytest.raises(InsufficientBalanceError) as caught:
        ledger.charge(user, 25, key="k-too-much", reference="run-9")
    message = str(caught.value)
    assert user in message and "25" in message and "20" in message
    assert ledger.balance(user) == 20
    assert rows(pg_dsn, user) == before
    # The key was not consumed: once topped up, the same charge goes through.
    ledger.grant(user, 5)
    assert ledger.charge(user, 25, key="k-too-much") == 0


def test_unknown_user_cannot_be_charged_and_gets_no_row(ledger: CreditLedger, pg_dsn: str, user: str) -> None:
    with pytest.raises(InsufficientBalanceError, match=user):
        ledger.charge(user, 1, key=f"{user}-k")
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {BALANCES} WHERE user_id = %s", (user,))
        assert cur.fetchone() == (0,)
    conn.close()


def test_charge_is_idempotent_by_key(ledger: CreditLedger, pg_dsn: str, user: str) -> None:
    ledger.grant(user, 100)
    assert ledger.charge(user, 10, key="run-1/exec-7") == 90
    assert ledger.charge(user, 10, key="run-1/exec-7") == 90  # the retried step
    assert ledger.balance(user) == 90
    assert [r[2] for r in rows(pg_dsn, user)] == ["GRANT", "USAGE"]


def test_zero_and_negative_amounts(ledger: CreditLedger, pg_dsn: str, user: str) -> None:
    ledger.grant(user, 10)
    assert ledger.charge(user, 0, key="free") == 10
    assert ledger.grant(user, 0) == 10
    assert len(rows(pg_dsn, user)) == 1
    with pytest.raises(CreditError, match="must not be negative"):
        ledger.charge(user, -5, key="neg")
    with pytest.raises(CreditError, match="must not be negative"):
        ledger.grant(user, -5)
    with pytest.raises(CreditError, match="whole number"):
        ledger.charge(user, True, key="bool")  # type: ignore[arg-type]
    with pytest.raises(CreditError, match="idempotency key"):
        ledger.charge(user, 1, key="")
    assert ledger.balance(user) == 10


def test_key_of_another_users_transaction_is_refused(ledger: CreditLedger, user: str) -> None:
    ledger.grant(user, 10)
    ledger.grant("other-" + user, 10)
    ledger.charge(user, 1, key=f"shared-{user}")
    with pytest.raises(CreditError, match="already used"):
        ledger.charge("other-" + user, 1, key=f"shared-{user}")
    assert ledger.balance("other-" + user) == 10


def test_refund_is_a_compensating_entry_and_idempotent(ledger: CreditLedger, pg_dsn: str, user: str) -> None:
    ledger.grant(user, 100)
    ledger.charge(user, 40, key=f"{user}/exec-1", reference="run-1")
    charge_row = rows(pg_dsn, user)[1]
    assert ledger.refund(f"{user}/exec-1", "node failed before running") == 100
    assert ledger.refund(f"{user}/exec-1") == 100  # refunding twice refunds once
    after = rows(pg_dsn, user)
    assert after[1] == charge_row  # the original USAGE row is untouched
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in after[2:]] == [
        (40, "REFUND", f"refund:{user}/exec-1", "run-1", 100)
    ]
    assert ledger.balance(user) == 100
    # A refund never becomes a charge key again: retrying the charge is still a no-op.
    assert ledger.charge(user, 40, key=f"{user}/exec-1") == 100


def test_refund_of_unknown_key_is_a_clear_error(ledger: CreditLedger, user: str) -> None:
    ledger.grant(user, 5, key=f"grant-{user}")
    with pytest.raises(CreditError, match="no charge with key 'nope-never-charged' to refund"):
        ledger.refund("nope-never-charged")
    with pytest.raises(CreditError, match="no charge with key"):
        ledger.refund(f"grant-{user}")  # only USAGE rows can be refunded


def test_concurrent_charges_never_overdraw(pg_dsn: str, user: str) -> None:
    with CreditLedger(pg_dsn, max_idle_connections=20) as ledger:
        ledger.grant(user, 100)
        barrier = threading.Barrier(20)
        outcomes: list[object] = [None] * 20

        def charge(i: int) -> None:
            barrier.wait()
            try:
                outcomes[i] = ledger.charge(user, 10, key=f"{user}/concurrent-{i}", reference=f"exec-{i}")
            except InsufficientBalanceError as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=charge, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        balances = [o for o in outcomes if isinstance(o, int)]
        failures = [o for o in outcomes if isinstance(o, InsufficientBalanceError)]
        assert len(balances) == 10 and len(failures) == 10, outcomes
        assert sorted(balances) == list(range(0, 100, 10))  # each success saw a distinct balance
        assert ledger.balance(user) == 0
        usage = [r for r in rows(pg_dsn, user) if r[2] == "USAGE"]
        assert len(usage) == 10
        assert all(r[5] >= 0 for r in rows(pg_dsn, user))


def test_tables_are_created_safely_by_concurrent_ledgers(
    fresh_pg_schema: Callable[[], AbstractContextManager[str]],
) -> None:
    with fresh_pg_schema() as dsn:
        ledgers = [CreditLedger(dsn) for _ in range(8)]
        try:
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda pair: pair[1].grant(f"u{pair[0]}", 1), enumerate(ledgers)))
        finally:
            for ledger in ledgers:
                ledger.close()
        assert results == [1] * 8


def test_out_of_range_amount_is_a_credit_error(ledger: CreditLedger, user: str) -> None:
    with pytest.raises(CreditError, match="out of range"):
        ledger.grant(user, 2**63)
    ledger.grant(user, 2**63 - 1)
    with pytest.raises(CreditError, match="out of range"):
        ledger.grant(user, 1)
    assert ledger.balance(user) == 2**63 - 1


def test_ledger_from_env_needs_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFLOW_DATABASE_URL", raising=False)
    with pytest.raises(CreditError, match="AGENTFLOW_DATABASE_URL"):
        ledger_from_env()


def test_unreachable_database_is_a_credit_error() -> None:
    ledger = CreditLedger("host=127.0.0.1 port=1 dbname=test user=postgres connect_timeout=3")
    with pytest.raises(CreditError, match="credit ledger database unreachable"):
        ledger.balance("anyone")


# --- the CLI -----------------------------------------------------------------------------------------


def agentflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")} | env
    proc = subprocess.run(
        [str(AGENTFLOW), *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=120
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_cli_grant_and_balance(pg_dsn: str, ledger: CreditLedger, user: str) -> None:
    env = {"AGENTFLOW_DATABASE_URL": pg_dsn}
    granted = agentflow("credits", "grant", user, "250", "--reason", "trial credits", env=env)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == f"granted 250 credits to {user}; balance 250"
    ledger.charge(user, 20, key=f"{user}/cli-exec", reference="run-cli")

    shown = agentflow("credits", "balance", user, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{user}: balance 230"
    assert "USAGE" in lines[1] and "-20" in lines[1] and "run-cli" in lines[1]
    assert "GRANT" in lines[2] and "+250" in lines[2] and "trial credits" in lines[2]
    assert ledger.balance(user) == 230


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("credits", "grant", "u", "10"), {}, "AGENTFLOW_DATABASE_URL"),
        (("credits", "balance", "u"), {}, "AGENTFLOW_DATABASE_URL"),
        (("credits", "grant", "u", "ten"), {"AGENTFLOW_DATABASE_URL": "x"}, "AMOUNT must be a whole number"),
        (("credits", "grant", "u", "-5"), {"AGENTFLOW_DATABASE_URL": "x"}, "AMOUNT must be a positive"),
        (("credits", "grant", "u", "0"), {"AGENTFLOW_DATABASE_URL": "x"}, "AMOUNT must be a positive"),
        (
            ("credits", "balance", "u"),
            {"AGENTFLOW_DATABASE_URL": "host=127.0.0.1 port=1 dbname=test connect_timeout=3"},
            "credit ledger database unreachable",
        ),
    ],
)
def test_cli_errors_exit_1_with_a_clear_message(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    proc = agentflow(*args, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
