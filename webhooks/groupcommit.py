"""Group commit: many request threads' small writes share one transaction.

A provider's request must be stored before it is answered, and on the hook
URL that one INSERT and its COMMIT were most of a request's cost: a write
transaction per request means a turn at the database's write lock, a commit,
and on SQLite a hand-over between threads and processes for each. Here the
threads of a process queue their writes instead; the first to arrive leads:
it runs everything queued in one transaction, commits once, and wakes the
others with their results. Nobody answers before the commit that holds their
row, so durability is what it was; under load a commit carries many rows.

A unit of work is a function of a DBAPI connection (the driver's own, from
the engine's pool) that writes and returns a result; it must not commit. The
driver's connection, not SQLAlchemy's, because around statements this small
SQLAlchemy's execution and transaction bookkeeping cost more than the writes
(see :class:`webhooks.db.DriverStatement`). When one unit fails, the batch is
rolled back and each unit runs again in a transaction of its own, so one bad
row (a foreign key gone, say) fails alone and the others still land.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import current_app

from webhooks.db import db
from webhooks.db import driver_errors

Unit = Callable[[Any], Any]  # of a DBAPI connection
# How many units one transaction takes, and how many batches one leader runs
# before it hands the lead on (its own request is waiting too).
BATCH = 256
BATCHES_PER_LEADER = 4


class Ticket:
    """One queued unit: its result, or the exception it raised, once its batch is done."""

    __slots__ = ("unit", "done", "result", "error", "lead")

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.lead = False

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class GroupCommit:
    """The queue of one app in one process; see :func:`run`."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: list[Ticket] = []
        self._leading = False

    def run(self, unit: Unit) -> Any:
        """Run ``unit`` in a shared transaction; return its result once committed, or raise its error."""
        ticket = Ticket(unit)
        with self._mutex:
            self._queue.append(ticket)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        ticket.done.wait()
        if ticket.lead:  # woken to take over the queue, its own unit among it
            ticket.lead = False
            ticket.done.clear()
            self._lead()
            ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _lead(self) -> None:
        """Write batches until the queue is empty, or hand it to the oldest waiter."""
        for _ in range(BATCHES_PER_LEADER):
            with self._mutex:
                batch, self._queue[:] = self._queue[:BATCH], self._queue[BATCH:]
                if not batch:
                    self._leading = False
                    return
            write(batch)
        with self._mutex:
            if not self._queue:
                self._leading = False
                return
            successor = self._queue[0]
        successor.lead = True
        successor.done.set()


def write(batch: list[Ticket]) -> None:
    """Run a batch in one transaction and finish every ticket, whatever happens.

    After a failure each unit runs again alone, so only the failing one
    reports an error. An error that is not the units' (the database gone)
    finishes the tickets still waiting with it; the queue goes on.
    """
    try:
        # Checking a connection out, rolling it back or giving it back when the database
        # is gone can raise the driver's own errors.
        with driver_errors(db.engine.dialect):
            connection = db.engine.raw_connection()
            try:
                _write(connection, batch)
            finally:
                connection.close()
    except BaseException as error:
        for ticket in batch:
            if not ticket.done.is_set():
                ticket.finish(error=error)
        if not isinstance(error, Exception):  # the process is going down
            raise


def _write(connection, batch: list[Ticket]) -> None:
    try:
        results = [ticket.unit(connection) for ticket in batch]
        _commit(connection)
    except Exception:
        connection.rollback()
        for ticket in batch:
            _run_alone(connection, ticket)
    else:
        for ticket, result in zip(batch, results):
            ticket.finish(result)


def _run_alone(connection, ticket: Ticket) -> None:
    try:
        result = ticket.unit(connection)
        _commit(connection)
    except Exception as error:
        connection.rollback()
        ticket.finish(error=error)
    else:
        ticket.finish(result)


def run_unshared(unit: Unit) -> Any:
    """Run ``unit`` in a transaction of its own, on a driver connection as :func:`run` does.

    For writes that are a batch's worth by themselves (a bulk publish): queued
    with others they would hold the writer lock while the next one builds its
    rows. The pool rolls back whatever did not commit.
    """
    with driver_errors(db.engine.dialect):  # as in write()
        connection = db.engine.raw_connection()
        try:
            result = unit(connection)
            connection.commit()
            return result
        finally:
            connection.close()


def _commit(connection) -> None:
    with driver_errors(db.engine.dialect, "COMMIT"):
        connection.commit()


def run(unit: Unit) -> Any:
    """Run ``unit`` in a transaction shared with other threads of this app; see the module doc."""
    queue = current_app.extensions.get("groupcommit")
    if queue is None:
        queue = current_app.extensions.setdefault("groupcommit", GroupCommit())
    return queue.run(unit)
