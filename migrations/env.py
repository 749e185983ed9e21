"""Alembic environment: the models' metadata, one set of migrations for SQLite and PostgreSQL.

``flask --app app db ...`` runs this inside the app context and migrates the
app's database. Tests and tools may hand over an open connection instead, in
``config.attributes["connection"]``, and need no app at all.
"""

from __future__ import annotations

import logging

from alembic import context
from sqlalchemy import types

from webhooks import models  # noqa: F401  (registers the tables)
from webhooks.db import db

log = logging.getLogger("alembic.env")
config = context.config
OPTIONS = {
    "target_metadata": db.metadata,
    "compare_type": True,
    # SQLite cannot ALTER most things; batch mode copies the table instead and
    # does plain ALTERs on PostgreSQL, so one migration serves both.
    "render_as_batch": True,
}


def render_item(kind, item, autogen_context):
    """Write our column types as the SQL types they store, so a migration never
    imports application code that may change or disappear after it was written."""
    if kind == "type" and isinstance(item, types.TypeDecorator):
        return f"sa.{item.impl_instance!r}"
    return False


def skip_empty_revision(migration_context, revision, directives):
    """``flask db migrate`` with no model changes writes no file."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        log.info("No changes in schema detected.")


def run_offline() -> None:
    """``flask db upgrade --sql``: print the SQL for someone to review and run."""
    from flask import current_app

    url = current_app.extensions["migrate"].db.engine.url
    context.configure(url=url, literal_binds=True, render_item=render_item, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    from flask import current_app

    with current_app.extensions["migrate"].db.engine.connect() as connection:
        _migrate(connection)


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        render_item=render_item,
        process_revision_directives=skip_empty_revision,
        **OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
