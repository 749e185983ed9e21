"""SQLite writers take turns on an OS lock instead of sleeping in SQLite's busy handler.

SQLite admits one writer at a time. A connection that finds the write lock
taken retries with sleeps of 1, 2, 5, 10 ... up to 100 ms, so under load a
write that needed 50 µs of lock waits tens of milliseconds, and the waits, not
the work, set the latency (issue 7's ingest and publish p99). Here every
connection of the hub takes a process-wide ``threading.Lock`` and then an
exclusive ``flock`` on a file beside the database before its first write of a
transaction, and gives both back when the transaction ends: the kernel wakes
the next writer the moment the lock frees. Reads take nothing (WAL readers
never wait). A statement this module does not recognise as a write simply
falls back to SQLite's own busy handling, as do other programs writing to the
same file.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import os
import re
import sqlite3
import threading
import time

# The first keyword of statements that take SQLite's write lock (a CTE is
# looked into, as claims use ``WITH ... UPDATE``).
WRITE_STATEMENT = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|BEGIN\s+(IMMEDIATE|EXCLUSIVE))\b", re.I)
WRITE_IN_CTE = re.compile(r"\s*WITH\b.*\b(INSERT|UPDATE|DELETE)\b", re.I | re.S)
# Past this wait a writer stops queueing and leaves it to SQLite's busy timeout
# (a thread that holds a second connection's transaction would wait forever).
THREAD_WAIT = 30.0
# Seconds between this process's WAL checkpoints (see WriterLock.checkpoint_if_due).
CHECKPOINT_EVERY = 0.25
# WAL frames (pages) past which a checkpoint finishes its copy with writers held off,
# so that the WAL starts over instead of growing (about 4 MB of 4 KB pages).
RESTART_FRAMES = 1000


def is_write(sql: str) -> bool:
    """True for a statement that needs SQLite's write lock."""
    return bool(WRITE_STATEMENT.match(sql) or WRITE_IN_CTE.match(sql))


class WriterLock:
    """The turn to write: first come, first served within a process, then one process at a time.

    Python's own locks let a thread that releases take the lock straight back
    (it still holds the GIL while the woken waiter does not), so a loop of
    short transactions would starve the request threads. Here a release hands
    the turn to the longest waiter, who owns it before it even wakes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False
        self._fd: int | None = None
        self._pid: int | None = None
        self._checkpointing = threading.Lock()
        self._next_checkpoint = 0.0

    def acquire(self) -> bool:
        """Wait for the turn; False when it did not come within :data:`THREAD_WAIT` seconds."""
        if not self._take_turn():
            return False
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._pass_turn()
            raise
        return True

    def release(self) -> None:
        """Hand the turn to the next writer, in this process or another."""
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._pass_turn()

    def _take_turn(self) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append(baton)
        if baton.acquire(timeout=THREAD_WAIT):
            return True
        with self._mutex:
            if baton in self._waiters:
                self._waiters.remove(baton)
                return False
        return True  # handed over between the timeout and the check

    def _pass_turn(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def checkpoint_if_due(self, connection: sqlite3.Connection) -> None:
        """Copy the WAL back into the database now and then, outside the writer lock.

        SQLite's automatic checkpoint runs inside the commit that crosses 1,000
        pages, with the write lock still held, and fsyncs: every other writer
        waited for it (40-60 % of the time a single publish held the lock).
        Hub connections turn it off (see ``db._tune_sqlite``) and call this
        after each writing commit instead: a passive checkpoint never blocks
        writers or readers, and one thread per process runs it at a time.

        Under steady writes a passive checkpoint never catches up: writers
        append while it copies, and SQLite starts the WAL over only once
        every frame was copied. The WAL then grew by megabytes a second, and
        every page lookup and checkpoint slowed with it (issue 7's ingest).
        So once the WAL is past :data:`RESTART_FRAMES`, the few frames left
        after the passive copy are copied again with the writer lock held,
        which lets the next writer start the WAL over.
        """
        now = time.monotonic()
        if now < self._next_checkpoint or not self._checkpointing.acquire(blocking=False):
            return
        try:
            self._next_checkpoint = now + CHECKPOINT_EVERY
            _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= RESTART_FRAMES and self.acquire():
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    self.release()
        finally:
            self._checkpointing.release()

    def _file(self) -> int:
        """The lock file, opened once per process: a forked child must not share its parent's."""
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd


class QueuedCursor(sqlite3.Cursor):
    """A cursor that queues for the writer lock before a statement that writes."""

    def execute(self, sql, parameters=(), /):
        self.connection.before_statement(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.after_statement()

    def executemany(self, sql, seq_of_parameters, /):
        self.connection.before_statement(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            self.connection.after_statement()


class QueuedConnection(sqlite3.Connection):
    """A connection that holds the writer lock from its first write until its transaction ends."""

    writer_lock: WriterLock  # set on the subclass made for each database file

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.holds_writer_lock = False

    def cursor(self, factory=QueuedCursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=(), /):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters, /):
        return self.cursor().executemany(sql, seq_of_parameters)

    def before_statement(self, sql: str) -> None:
        if not self.holds_writer_lock and is_write(sql):
            self.holds_writer_lock = self.writer_lock.acquire()

    def after_statement(self) -> None:
        """Statements that ran outside a transaction (DDL, autocommit) end their turn at once."""
        if self.holds_writer_lock and not self.in_transaction:
            self._release()

    def commit(self) -> None:
        wrote = self.holds_writer_lock
        try:
            super().commit()
        finally:
            self._release()
        if wrote:
            self.writer_lock.checkpoint_if_due(self)

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        if self.holds_writer_lock:
            self.holds_writer_lock = False
            self.writer_lock.release()


@functools.cache
def connection_class(database: str) -> type[QueuedConnection]:
    """The ``sqlite3.connect(factory=...)`` for one database file, sharing one lock per process."""
    lock = WriterLock(os.path.abspath(database) + "-writer.lock")
    return type("QueuedConnection", (QueuedConnection,), {"writer_lock": lock})
