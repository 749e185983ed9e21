"""Migrations: the models and ``migrations/`` describe the same schema, on SQLite and PostgreSQL.

A failure of ``test_migrations_build_the_models_schema`` after a model change
means a migration is missing: ``flask --app app db migrate -m "..."`` (README,
Production) writes one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from pprint import pformat

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON
from sqlalchemy import MetaData
from sqlalchemy import create_engine
from sqlalchemy import select

from conftest import ENCRYPTION_KEY
from conftest import make_app
from webhooks import models  # noqa: F401  (registers the tables)
from webhooks.db import MIGRATIONS
from webhooks.db import create_schema
from webhooks.db import db
from webhooks.db import head_revision
from webhooks.db import scripts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path):
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def engine(empty_url):
    engine = create_engine(empty_url)
    yield engine
    engine.dispose()


def migrate(engine, revision: str = "head") -> None:
    """Run the project's migrations on ``engine`` without an app, as Alembic's API allows."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def differences(engine) -> list:
    """What ``flask db migrate`` would write into a new migration for this database."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def revision_of(engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def flask_db(url: str, *args: str) -> subprocess.CompletedProcess:
    """``flask --app app db ...`` in its own process, as an operator runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "WEBHOOKS_SECRET_KEY": "test-secret",
        "WEBHOOKS_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    flask = [sys.executable, "-m", "flask", "--app", "app", "db", *args]
    return subprocess.run(flask, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_migrations_build_the_models_schema(engine):
    migrate(engine)
    found = differences(engine)
    assert found == [], (
        "webhooks/models.py and migrations/ disagree; add a migration with"
        " `flask --app app db migrate -m '...'` (see README, Production):\n" + pformat(found)
    )
    assert revision_of(engine) == head_revision()


def test_flask_db_upgrade_builds_an_empty_database_from_the_migrations(tmp_path):
    """The ``db`` commands leave the schema to Alembic: no create_all before them.

    Which commands skip create_all does not depend on the dialect; SQLite keeps it quick.
    """
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    result = flask_db(url, "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"Running upgrade  -> {scripts().get_base()}" in result.stderr
    engine = create_engine(url)
    assert revision_of(engine) == head_revision()
    assert differences(engine) == []
    engine.dispose()


def test_first_start_creates_the_schema_stamped_at_head(engine, empty_url, tmp_path):
    app = make_app(empty_url, tmp_path)
    with app.app_context():
        db.engine.dispose()
    assert revision_of(engine) == head_revision()
    assert differences(engine) == []


def test_processes_starting_together_on_an_empty_database_take_turns(engine, empty_url, tmp_path):
    """Several gunicorn workers start at once: the schema lock lets one create it.

    Each thread has its own connection, as each process would.
    """
    app = make_app(empty_url, tmp_path)
    with app.app_context():
        db.metadata.drop_all(db.engine)
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE alembic_version")
    errors = []
    barrier = threading.Barrier(4)

    def start() -> None:
        with app.app_context():
            barrier.wait()
            try:
                create_schema()
            except Exception as exc:  # reported below with every failure
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with app.app_context():
        db.engine.dispose()
    assert errors == []
    assert revision_of(engine) == head_revision() and differences(engine) == []


def test_database_made_before_migrations_is_not_stamped_blindly(engine, empty_url, tmp_path, caplog):
    """Tables without a revision may be older than the models: the operator decides."""
    db.metadata.create_all(engine)
    with caplog.at_level(logging.WARNING, logger="webhooks.db"):
        make_app(empty_url, tmp_path)
    assert "no migration revision" in caplog.text and "db stamp head" in caplog.text
    assert revision_of(engine) is None


def test_older_revision_upgrades_to_head_keeping_its_data(engine, empty_url, tmp_path, caplog):
    head = scripts().get_revision(head_revision())
    if head.down_revision is None:
        pytest.skip("migrations/ holds a single revision; there is no older schema to upgrade from yet")
    previous = head.down_revision
    migrate(engine, previous)
    with engine.begin() as connection:
        before = fill_every_table(connection)
    with caplog.at_level(logging.WARNING, logger="webhooks.db"):
        make_app(empty_url, tmp_path)
    assert "run 'flask --app app db upgrade'" in caplog.text, "a start on an older schema says what to do"

    result = flask_db(empty_url, "upgrade")
    assert result.returncode == 0, result.stderr
    assert revision_of(engine) == head_revision() and differences(engine) == []
    with engine.connect() as connection:
        after = read_rows(connection, before)
    for table, row in before.items():
        assert {name: after[table].get(name) for name in row} == row, f"{table} lost data in the upgrade"


def fill_every_table(connection) -> dict[str, dict]:
    """Insert one row into every table of the schema as it is now; return the rows read back."""
    metadata = MetaData()
    metadata.reflect(connection)
    for table in metadata.sorted_tables:
        if table.name != "alembic_version":
            connection.execute(table.insert().values({c.name: sample_value(c) for c in table.columns}))
    return read_rows(connection, {t.name: {} for t in metadata.sorted_tables if t.name != "alembic_version"})


def read_rows(connection, tables) -> dict[str, dict]:
    metadata = MetaData()
    metadata.reflect(connection, only=list(tables))
    return {name: dict(connection.execute(select(metadata.tables[name])).mappings().one()) for name in tables}


def sample_value(column):
    """A value the column accepts; foreign keys point at the row inserted into the parent."""
    if column.foreign_keys:
        return 1
    if isinstance(column.type, JSON):
        return {"k": [1, "x"]}
    kind = column.type.python_type
    samples = {int: 1, bool: False, float: 1.5, str: "x", bytes: b"x"}
    if kind is datetime:
        return datetime(2020, 1, 2, 3, 4, 5)
    return samples[kind]



def test_init_db_creates_or_upgrades_and_says_so(engine, empty_url, tmp_path):
    app = make_app(empty_url, tmp_path)
    with app.app_context():  # the flask command pushes one; the test runner does not for plain commands
        result = app.test_cli_runner().invoke(args=["init-db"])
        db.engine.dispose()
    assert result.exit_code == 0 and "schema ready" in result.output, result.output
    assert revision_of(engine) == head_revision()


@pytest.mark.parametrize("built_by", ["migrations", "models"])
def test_either_schema_records_the_attempt_of_a_request_stored_ignored(engine, empty_url, tmp_path, built_by):
    """The ``inbound_stored_ignored`` trigger is part of both schemas: a hook to a source
    without routes is stored finished, with the attempt the dashboard shows."""
    from webhooks import providers
    from webhooks import sources
    from webhooks.cli import create_tenant

    if built_by == "migrations":
        migrate(engine)
    app = make_app(empty_url, tmp_path)
    with app.app_context():
        tenant, _ = create_tenant("acme")
        sources.create(tenant, {"slug": "gh", "provider": "github", "secret": "s3cret-s3cret"})
        db.session.remove()
    body = b'{"zen": "Keep it logically awesome."}'
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"}
    response = app.test_client().post("/hooks/acme/gh", data=body, headers={**headers, **providers.sign("github", "s3cret-s3cret", body)})
    assert response.status_code == 202, response.get_json()
    with engine.connect() as connection:
        request = connection.exec_driver_sql("SELECT id, status, attempts FROM inbound_requests").one()
        attempts = connection.exec_driver_sql(
            "SELECT request_id, number, outcome, detail, duration_ms FROM inbound_attempts"
        ).all()
    with app.app_context():
        db.engine.dispose()
    assert tuple(request) == (response.get_json()["id"], "ignored", 1)
    assert [tuple(row) for row in attempts] == [(request.id, 1, "ignored", "no route matched event type ping", 0)]
