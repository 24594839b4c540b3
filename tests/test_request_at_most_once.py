"""A request id becomes at most one run whatever the number of listeners (issue 11, defect 3), on a
real Dagster instance whose sensor daemon code ticks the two listener sensors (tests/support_sensors.py).

Dagster deduplicates run keys per sensor only: before request claims, a request re-delivered to the
other listener after its run existed (a producer's retry, or a reclaim after the idle timeout while
the first listener's tick was still to create the run) became a second run."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from support_sensors import (
    LISTENER_NAMES,
    Listeners,
    count_request,
    listener_env,
    listener_workspace,
    listeners_on,
    new_id,
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("listeners")
    with pytest.MonkeyPatch.context() as patch:
        listener_env(patch, root / "agents", f"t{uuid4().hex}")
        with listener_workspace(root) as (instance, context):
            yield instance, context


@pytest.fixture
def listeners(workspace: tuple, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listeners]:
    with listeners_on(*workspace, monkeypatch) as listening:
        yield listening


ORDERS = [LISTENER_NAMES, tuple(reversed(LISTENER_NAMES))]


@pytest.mark.parametrize(("first", "second"), ORDERS, ids=["0-then-1", "1-then-0"])
def test_a_producer_retry_with_other_content_after_the_run_exists_is_a_recorded_duplicate(
    listeners: Listeners, first: str, second: str
) -> None:
    check_a_retry_with_other_content_is_a_duplicate(listeners, first, second)


def check_a_retry_with_other_content_is_a_duplicate(listeners: Listeners, first: str, second: str) -> None:
    request_id = new_id("retry")
    listeners.enqueue(count_request(request_id, user="alice", limit=1))
    listeners.tick(first)
    (run,) = listeners.runs_for(request_id)
    assert run.run_config["inputs"] == {"limit": 1}

    # The producer retries with the same id, another user and other inputs; the other listener reads it.
    listeners.enqueue(count_request(request_id, user="mallory", limit=7))
    listeners.tick(second)
    listeners.tick(first)
    assert [r.run_id for r in listeners.runs_for(request_id)] == [run.run_id]
    (letter,) = listeners.dead_letters()
    assert letter["reason"] == f"duplicate request id {request_id}: run {run.run_id} exists"
    assert '"mallory"' in letter["raw"]
    assert listeners.queue.depth() == 0  # both entries settled: the first acknowledged, the second recorded


@pytest.mark.parametrize(("first", "second"), ORDERS, ids=["0-then-1", "1-then-0"])
def test_a_producer_retry_of_the_same_request_is_acknowledged_without_a_second_run(
    listeners: Listeners, first: str, second: str
) -> None:
    request_id = new_id("same")
    listeners.enqueue(count_request(request_id))
    listeners.tick(first)
    listeners.enqueue(count_request(request_id))  # the same request again, field for field
    listeners.tick(second)
    listeners.tick(first)
    assert len(listeners.runs_for(request_id)) == 1
    assert listeners.dead_letters() == []
    assert listeners.queue.depth() == 0


@pytest.mark.parametrize(("first", "second"), ORDERS, ids=["0-then-1", "1-then-0"])
def test_a_request_reclaimed_by_the_other_listener_while_its_run_is_still_to_be_created_runs_once(
    listeners: Listeners, first: str, second: str
) -> None:
    check_a_reclaimed_request_runs_once(listeners, first, second)


def check_a_reclaimed_request_runs_once(listeners: Listeners, first: str, second: str) -> None:
    """The first listener's daemon dies after recording the tick's run request and before creating
    the run; the entry, never acknowledged, is reclaimed by the other listener after the idle timeout;
    then the first listener's tick is resumed by Dagster and creates its run."""
    request_id = new_id("reclaim")
    listeners.enqueue(count_request(request_id))
    listeners.tick(first, crash_after_reserving_runs=True)
    assert listeners.runs_for(request_id) == []
    listeners.wait_reclaim()
    listeners.tick(second)  # re-delivered to the other listener
    listeners.tick(first)  # Dagster resumes the interrupted tick
    listeners.wait_reclaim()
    listeners.tick(second)
    listeners.tick(first)
    assert len(listeners.runs_for(request_id)) == 1
    assert listeners.dead_letters() == []
    assert listeners.queue.depth() == 0


def test_a_request_whose_listener_died_before_creating_its_run_is_not_lost(listeners: Listeners) -> None:
    """The listener claims a request and its evaluation dies before returning its run request (the
    claim exists, no tick recorded it): the holder issues it again when the entry comes back."""
    first, _second = LISTENER_NAMES
    request_id = new_id("lost")
    entry_id = listeners.enqueue(count_request(request_id))
    # What the dying evaluation did: it read the entry and claimed the id.
    queue = listeners.queue
    assert [d.entry_id for d in queue.read(f"{first}-dead", count=10)] == [entry_id]
    from agent_defs.requests.claims import RequestClaims

    RequestClaims(listeners.client, listeners.prefix).take(request_id, first, entry_id, "digest")
    listeners.wait_reclaim()
    listeners.tick(first)
    listeners.tick(first)
    assert len(listeners.runs_for(request_id)) == 1
    assert listeners.queue.depth() == 0


# --- the same on PostgreSQL run storage (dagster-postgres), in a database of its own -----------------


@pytest.fixture(scope="module")
def pg_listener_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    import psycopg2

    name = f"agentflow_t_{uuid4().hex[:12]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, dbname="test", user="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    root = tmp_path_factory.mktemp("pg_listeners")
    try:
        with pytest.MonkeyPatch.context() as patch:
            listener_env(patch, root / "agents", f"t{uuid4().hex}")
            with listener_workspace(root, storage={"storage": {"postgres": {"postgres_url": url}}}) as pair:
                yield pair
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def pg_listeners(pg_listener_workspace: tuple, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listeners]:
    with listeners_on(*pg_listener_workspace, monkeypatch) as listening:
        yield listening


def test_on_postgres_a_retry_to_the_other_listener_is_a_duplicate(pg_listeners: Listeners) -> None:
    check_a_retry_with_other_content_is_a_duplicate(pg_listeners, *LISTENER_NAMES)


def test_on_postgres_a_reclaimed_request_runs_once(pg_listeners: Listeners) -> None:
    check_a_reclaimed_request_runs_once(pg_listeners, *reversed(LISTENER_NAMES))
