"""The database handle, its dialect tuning and the column types every model shares."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime
from sqlalchemy import MetaData
from sqlalchemy import event
from sqlalchemy import types
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

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
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def engine_options(url: str) -> dict:
    """Pool settings per dialect; documented in README's Production section."""
    if url.startswith("sqlite"):
        # The stdlib driver's own transaction handling would BEGIN lazily and
        # turn read-then-write into "database is locked"; a generous timeout
        # covers bursts of writers from the delivery pool.
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True, "pool_recycle": 1800}


def init_app(app: Flask) -> None:
    """Bind the database and create the schema on first start."""
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    with app.app_context():
        create_schema()


def create_schema() -> None:
    """Create missing tables. Alembic migrations take over for existing databases."""
    from webhooks import models  # noqa: F401  (registers the tables)

    db.create_all()


def is_postgres() -> bool:
    """True when the bound database is PostgreSQL (claims use SKIP LOCKED there)."""
    return db.engine.dialect.name == "postgresql"
