"""The database handle, its dialect tuning and the column types every model shares."""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import sys
from datetime import datetime
from datetime import timezone
from pathlib import Path

import click
import flask_migrate
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime
from sqlalchemy import MetaData
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy import types
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

from webhooks import writelock

# Stable constraint names let Alembic generate migrations that drop and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Batch mode lets one migration alter columns on SQLite too (by copying the table).
migrate = Migrate(directory=str(MIGRATIONS), render_as_batch=True, compare_type=True)
SCHEMA_LOCK = 0x57484B53  # any constant shared by every process of the hub
FLASK_OPTIONS_WITH_VALUE = {"--app", "-A", "--env-file", "-e"}

log = logging.getLogger("webhooks.db")


def now_utc() -> datetime:
    """The current time, timezone-aware in UTC: the only clock models use."""
    return datetime.now(timezone.utc)


class UTCDateTime(types.TypeDecorator):
    """A timestamp that is always returned timezone-aware in UTC.

    SQLite stores no zone and hands back naive values while PostgreSQL hands
    back aware ones; comparing the two raises, so both are normalised here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record):
    """WAL lets readers work while the sweeper writes; the busy timeout makes
    writers queue instead of failing with "database is locked"."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if isinstance(dbapi_connection, writelock.QueuedConnection):
            # They checkpoint after their commits, outside the writer lock.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()


def engine_options(url: str) -> dict:
    """Pool settings per dialect; documented in README's Production section."""
    if url.startswith("sqlite"):
        # A generous timeout covers writers outside the hub; the hub's own
        # take turns on an OS lock (webhooks/writelock.py) instead of sleeping.
        connect_args = {"timeout": 30, "check_same_thread": False}
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            connect_args["factory"] = writelock.connection_class(database)
        return {"connect_args": connect_args}
    # Without a connect timeout a database behind a dead network hangs every
    # request and sweep until the kernel gives up, minutes later.
    return {
        "pool_size": 10,
        "max_overflow": 20,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5},
    }


def init_app(app: Flask) -> None:
    """Bind the database, register ``flask db`` (migrations) and create the schema on first start."""
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    migrate.init_app(app, db)
    if not _running_migration_command():
        with app.app_context():
            create_schema()


def create_schema() -> None:
    """Give an empty database the current schema, stamped as migrated to the head revision.

    The tables are created from the models in one pass rather than by replaying
    every migration: it is faster (each test starts on an empty database) and
    tests/test_migrations.py fails whenever the two would differ. A database
    that already has a revision belongs to ``flask db upgrade``; when it is
    behind, this only warns, so the web keeps serving during a rolling deploy.
    Several processes starting on one empty database take turns under a lock.
    """
    from webhooks import models  # noqa: F401  (registers the tables)

    with db.engine.begin() as connection:
        _lock_schema(connection)
        context = _migration_context(connection)
        current, head = context.get_current_revision(), head_revision()
        if current is None:
            legacy = inspect(connection).has_table("tenants")
            db.metadata.create_all(connection)
            if legacy:
                log.warning(
                    "the database has tables but no migration revision; if its schema matches the models,"
                    " run 'flask --app app db stamp head' once, then 'flask --app app db upgrade' after updates"
                )
            else:
                context.stamp(scripts(), "head")
        elif current != head:
            log.warning(
                "the database schema is at revision %s, the code expects %s; run 'flask --app app db upgrade'",
                current,
                head,
            )


def upgrade_schema() -> None:
    """Create the schema of an empty database, or migrate an older one to the head revision."""
    create_schema()
    flask_migrate.upgrade(directory=str(MIGRATIONS))


@functools.cache
def scripts() -> ScriptDirectory:
    """The migration scripts in ``migrations/versions``."""
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str | None:
    """The newest migration revision: the schema the models describe."""
    return scripts().get_current_head()


def _migration_context(connection) -> MigrationContext:
    """Alembic's view of the database, without its INFO lines on every start of every process."""
    alembic_log = logging.getLogger("alembic.runtime.migration")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        return MigrationContext.configure(connection)
    finally:
        alembic_log.setLevel(level)


def _lock_schema(connection) -> None:
    """Serialise schema creation between processes until the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    elif connection.dialect.name == "sqlite":
        # The stdlib driver runs DDL outside transactions; an explicit one that
        # takes the write lock makes the check and the creation atomic.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _running_migration_command() -> bool:
    """True under ``flask db ...``: Alembic alone decides the schema then, so
    ``flask db upgrade`` on an empty database replays the migrations and
    ``flask db migrate`` compares the models with the real schema.

    Flask loads the app to list its commands before it knows which one runs,
    so the command line itself is read.
    """
    if click.get_current_context(silent=True) is None:
        return False  # a server or a test, not the flask command
    args = iter(sys.argv[1:])
    for arg in args:
        if arg in FLASK_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg == migrate.command
    return False


class DriverStatement:
    """SQL compiled once for a dialect, to run on a DBAPI cursor with the columns' own conversions.

    For the few statements every request runs (storing a received hook):
    SQLAlchemy's execution around a one-row INSERT (context, parameter
    processing, result wrapping) cost more CPU than the database's insert.
    ``sql`` names its parameters ``:name``; ``converted`` gives the column type
    of those that need a conversion (JSON, timestamps), applied the way
    SQLAlchemy would for this dialect.
    """

    def __init__(self, sql: str, dialect, converted: dict[str, types.TypeEngine] | None = None) -> None:
        compiled = text(sql).compile(dialect=dialect)
        self.dialect = dialect
        self.sql = compiled.string
        self.order = compiled.positiontup  # None for drivers that take a dict
        self.processors = {}
        for name, type_ in (converted or {}).items():
            processor = type_.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor

    def execute(self, cursor, values: dict):
        """Run on ``cursor`` with ``values`` by name; returns the cursor, to fetch from."""
        if self.processors:
            values = dict(values)
            for name, processor in self.processors.items():
                if name in values:
                    values[name] = processor(values[name])
        with driver_errors(self.dialect, self.sql):
            cursor.execute(self.sql, values if self.order is None else tuple(values[name] for name in self.order))
        return cursor


@contextlib.contextmanager
def driver_errors(dialect, statement: str | None = None):
    """Raise the driver's errors as SQLAlchemy would have (``OperationalError`` for a database
    gone, ``IntegrityError``...), which is what the app's error handlers and retries catch."""
    try:
        yield
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(statement, None, error, dialect.loaded_dbapi.Error, dialect=dialect) from error


def is_postgres() -> bool:
    """True when the bound database is PostgreSQL (claims use SKIP LOCKED there)."""
    return db.engine.dialect.name == "postgresql"
