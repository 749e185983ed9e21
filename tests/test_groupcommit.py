"""Group commit (webhooks/groupcommit.py): concurrent units share a transaction, each gets its own
result only after the commit, and a failing unit fails alone."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError

from webhooks import groupcommit
from webhooks.db import DriverStatement
from webhooks.db import db
from webhooks.testing import wait_until


@pytest.fixture
def table(app, monkeypatch):
    """The test table; yields the list that gets an item per commit the queue makes."""
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE gc_rows (n INTEGER PRIMARY KEY)"))
        commits = []
        commit = groupcommit._commit

        def counted(connection):
            commit(connection)
            commits.append(1)

        monkeypatch.setattr(groupcommit, "_commit", counted)
        yield commits
        with db.engine.begin() as connection:
            connection.execute(text("DROP TABLE gc_rows"))  # PostgreSQL keeps one database for the session


def insert(n):
    """A unit as the hub writes them: on the driver's connection, without committing."""

    def unit(connection):
        statement = DriverStatement("INSERT INTO gc_rows (n) VALUES (:n)", db.engine.dialect)
        statement.execute(connection.cursor(), {"n": n})
        return n * 10

    return unit


def stored(app) -> list[int]:
    with app.app_context():
        with db.engine.connect() as connection:
            return [row[0] for row in connection.execute(text("SELECT n FROM gc_rows ORDER BY n"))]


def run_in_threads(app, units):
    """Run each unit from its own thread; returns {index: result or exception}."""
    outcomes = {}

    def call(index, unit):
        with app.app_context():
            try:
                outcomes[index] = groupcommit.run(unit)
            except Exception as exc:
                outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(index, unit)) for index, unit in enumerate(units)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def queue_of(app) -> groupcommit.GroupCommit:
    with app.app_context():
        return app.extensions.setdefault("groupcommit", groupcommit.GroupCommit())


def behind_a_busy_leader(app, units) -> dict:
    """Queue ``units`` while a leader is busy with row 0, then let it go; returns their outcomes."""
    gate = threading.Event()

    def first(connection):
        gate.wait(10)  # the leader is busy while the others queue up
        return insert(0)(connection)

    queue = queue_of(app)
    leader, _ = run_in_threads(app, [first])
    wait_until(lambda: queue._leading)
    followers, outcomes = run_in_threads(app, units)
    wait_until(lambda: len(queue._queue) == len(units))
    assert stored(app) == []  # nothing is visible, so nobody has been answered
    gate.set()
    for thread in leader + followers:
        thread.join(10)
    return outcomes


def test_units_that_arrive_together_share_one_commit(app, table):
    outcomes = behind_a_busy_leader(app, [insert(n) for n in range(1, 21)])
    assert outcomes == {n - 1: n * 10 for n in range(1, 21)}
    assert stored(app) == list(range(21))
    assert len(table) == 2  # the leader's own batch, then the twenty that queued behind it


def test_a_failing_unit_fails_alone(app, table):
    def broken(connection):
        insert(99)(connection)
        raise ValueError("bad row")

    outcomes = behind_a_busy_leader(app, [insert(1), broken, insert(2)])
    assert outcomes[0] == 10 and outcomes[2] == 20
    assert isinstance(outcomes[1], ValueError)
    assert stored(app) == [0, 1, 2]  # the broken unit's own insert was rolled back


def test_a_long_queue_is_handed_on_and_every_unit_lands(app, table, monkeypatch):
    monkeypatch.setattr(groupcommit, "BATCH", 3)
    monkeypatch.setattr(groupcommit, "BATCHES_PER_LEADER", 1)
    outcomes = behind_a_busy_leader(app, [insert(n) for n in range(1, 11)])
    assert outcomes == {n - 1: n * 10 for n in range(1, 11)}
    assert stored(app) == list(range(11))
    queue = queue_of(app)
    assert not queue._leading and queue._queue == []


def test_driver_errors_reach_the_caller_as_sqlalchemys(app, table):
    """Units run on the driver's connection; its errors still arrive as SQLAlchemy's,
    which the app's error handlers know (a database gone answers 503)."""
    outcomes = behind_a_busy_leader(app, [insert(1), insert(1)])
    assert outcomes[0] == 10
    assert isinstance(outcomes[1], IntegrityError) and isinstance(outcomes[1], DBAPIError)
    assert stored(app) == [0, 1]


def test_a_connection_lost_mid_batch_fails_its_units_with_sqlalchemys_errors(app, table):
    """When even the rollback fails (the connection is gone), every waiting unit gets an error the
    app's handlers know, and the queue takes the next batch on a fresh connection."""

    def lost(connection):
        connection.driver_connection.close()  # as a database restart would leave it
        raise RuntimeError("the connection went away")

    outcomes = behind_a_busy_leader(app, [lost, insert(1)])
    assert all(isinstance(outcome, DBAPIError) for outcome in outcomes.values()), outcomes
    threads, after = run_in_threads(app, [insert(2)])
    threads[0].join(10)
    assert after == {0: 20} and 2 in stored(app)
