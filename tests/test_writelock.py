"""SQLite writers queue on the writer lock (webhooks/writelock.py) instead of SQLite's busy sleeps."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
import textwrap

import pytest

from webhooks import writelock
from webhooks.db import engine_options


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("INSERT INTO t VALUES (1)", True),
        ("  update t SET a = 1", True),
        ("DELETE FROM t", True),
        ("REPLACE INTO t VALUES (1)", True),
        ("CREATE TABLE t (a)", True),
        ("BEGIN IMMEDIATE", True),
        ("WITH due AS (SELECT id FROM t) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM due)", True),
        ("SELECT * FROM t", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", False),
        ("SELECT updated_at FROM t", False),
        ("PRAGMA journal_mode=WAL", False),
        ("BEGIN", False),
    ],
)
def test_writes_are_recognised(sql, expected):
    assert writelock.is_write(sql) is expected


def connect(path, timeout=0.0):
    """A hub connection with SQLite's own busy wait off: contention would fail at once."""
    connection = sqlite3.connect(
        path, timeout=timeout, check_same_thread=False, factory=writelock.connection_class(str(path))
    )
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "lock.sqlite"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER)")
    return path


def lock_file_is_free(path) -> bool:
    """Whether another open of the lock file can take it (flock locks are per open file)."""
    fd = os.open(str(path) + "-writer.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_the_lock_is_held_from_the_first_write_until_commit(database):
    connection = connect(database)
    connection.execute("SELECT count(*) FROM t").fetchone()
    assert lock_file_is_free(database)
    connection.execute("INSERT INTO t VALUES (1)")
    assert connection.holds_writer_lock and not lock_file_is_free(database)
    connection.commit()
    assert not connection.holds_writer_lock and lock_file_is_free(database)


def test_rollback_and_autocommit_statements_give_the_lock_back(database):
    connection = connect(database)
    connection.execute("INSERT INTO t VALUES (1)")
    connection.rollback()
    assert lock_file_is_free(database)
    connection.execute("CREATE TABLE u (a)")  # DDL runs outside a transaction
    assert not connection.holds_writer_lock and lock_file_is_free(database)
    with pytest.raises(sqlite3.OperationalError):
        connection.execute("INSERT INTO missing VALUES (1)")
    assert lock_file_is_free(database)


def test_threads_wait_for_the_writer_instead_of_failing(database):
    """With SQLite's busy timeout at 0 the second writer would get "database is locked"."""
    first, second = connect(database), connect(database)
    first.execute("INSERT INTO t VALUES (1)")
    done = threading.Event()
    errors = []

    def write():
        try:
            second.execute("INSERT INTO t VALUES (2)")
            second.commit()
        except Exception as exc:  # pragma: no cover - the failure this test is about
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert not done.wait(0.2)  # queued behind the first writer
    first.commit()
    thread.join(10)
    assert done.is_set() and errors == []
    assert [row[0] for row in connect(database).execute("SELECT n FROM t ORDER BY n")] == [1, 2]


WRITER = textwrap.dedent(
    """
    import sqlite3, sys
    from webhooks import writelock
    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    connection = sqlite3.connect(path, timeout=0, factory=writelock.connection_class(path))
    for n in range(count):
        connection.execute("INSERT INTO t VALUES (?)", (n,))
        connection.execute("UPDATE t SET n = n WHERE n = ?", (n,))
        connection.commit()
    print(name, "ok")
    """
)


def test_processes_take_turns_without_busy_errors(database):
    """Four processes writing at once, each with SQLite's busy timeout off, all succeed."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(database), f"w{i}", "300"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    outputs = [writer.communicate(timeout=120) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0, 0, 0], outputs
    assert connect(database).execute("SELECT count(*) FROM t").fetchone()[0] == 1200


def test_the_hub_uses_queued_connections_for_sqlite_files(tmp_path):
    options = engine_options(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    assert issubclass(options["connect_args"]["factory"], writelock.QueuedConnection)
    assert "factory" not in engine_options("sqlite://")["connect_args"]
    assert "connect_args" not in engine_options("postgresql://u@h/db") or "factory" not in engine_options(
        "postgresql://u@h/db"
    )["connect_args"]


def test_hub_connections_are_tuned_for_wal(app):
    """The queued connection class must still get the WAL, synchronous and foreign-key pragmas."""
    from sqlalchemy import text

    from webhooks.db import db

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite pragmas; this run is on PostgreSQL")
        connection = db.session.connection()
        assert isinstance(connection.connection.dbapi_connection, writelock.QueuedConnection)
        names = ("journal_mode", "synchronous", "foreign_keys", "wal_autocheckpoint")
        pragmas = {name: connection.execute(text(f"PRAGMA {name}")).scalar() for name in names}
        assert pragmas == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "wal_autocheckpoint": 0}


def test_writers_checkpoint_the_wal_outside_the_lock(database, monkeypatch):
    """Automatic checkpoints are off on hub connections; their commits checkpoint instead, so the WAL stays small."""
    monkeypatch.setattr(writelock, "CHECKPOINT_EVERY", 0.0)
    connection = connect(database)
    connection.execute("PRAGMA wal_autocheckpoint=0")
    for n in range(300):
        connection.execute("INSERT INTO t VALUES (?)", (n,))
        connection.commit()
    wal = database.with_name(database.name + "-wal")
    assert wal.stat().st_size < 300 * 4096 / 4, "each commit adds a page; checkpoints let the WAL start over"
    assert lock_file_is_free(database)


def test_without_checkpoints_the_wal_grows(database, monkeypatch):
    """The control for the test above: with checkpoints put off, the same writes pile up in the WAL."""
    monkeypatch.setattr(writelock, "CHECKPOINT_EVERY", 3600.0)
    connection = connect(database)
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writelock.connection_class(str(database)).writer_lock._next_checkpoint = time.monotonic() + 3600
    for n in range(300):
        connection.execute("INSERT INTO t VALUES (?)", (n,))
        connection.commit()
    wal = database.with_name(database.name + "-wal")
    assert wal.stat().st_size > 300 * 4096 / 2


def write_from_threads(database, threads: int = 2, commits: int = 1000) -> int:
    """Threads each commit one-row transactions on their own connection, back to back; returns the WAL's size."""

    connections = [connect(database, timeout=30) for _ in range(threads)]

    def writer(n):
        connection = connections[n]
        connection.execute("PRAGMA wal_autocheckpoint=0")
        for i in range(commits):
            connection.execute("INSERT INTO t VALUES (?)", (n * commits + i,))
            connection.commit()

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    size = database.with_name(database.name + "-wal").stat().st_size  # before the last close removes it
    for connection in connections:
        connection.close()
    return size


def test_the_wal_starts_over_under_steady_writers(database, monkeypatch):
    """Passive checkpoints alone never catch up with writers that never pause; past
    RESTART_FRAMES a checkpoint finishes with the writers held off, and the WAL is reused."""
    monkeypatch.setattr(writelock, "CHECKPOINT_EVERY", 0.0)
    monkeypatch.setattr(writelock, "RESTART_FRAMES", 50)
    assert write_from_threads(database) < 150 * 4096  # about 55 pages in practice


def test_without_the_finishing_checkpoint_steady_writers_grow_the_wal(database, monkeypatch):
    """The control for the test above."""
    monkeypatch.setattr(writelock, "CHECKPOINT_EVERY", 0.0)
    monkeypatch.setattr(writelock, "RESTART_FRAMES", 10**9)
    # 800-2,000 pages in practice: now and then a passive checkpoint catches up by luck.
    assert write_from_threads(database) > 300 * 4096
