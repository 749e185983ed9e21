"""Many rows fast: copy a template row the hub wrote, with ``INSERT ... SELECT``.

The ORM would take minutes for a million rows; one statement per chunk takes
seconds. Copying a real row keeps every column (and any column added later)
filled the way the hub fills it; ``overrides`` change the few that must vary,
as SQL expressions of ``n``, the row number 1..count.
"""

from __future__ import annotations

from sqlalchemy import text


def copy(model, template_id: int, count: int, overrides: dict[str, str], **params) -> None:
    """``INSERT INTO table SELECT`` the template row ``count`` times, with ``n`` = 1..count in ``overrides``."""
    from webhooks.db import db
    from webhooks.db import is_postgres

    columns = [column.name for column in model.__table__.columns if column.name != "id"]
    values = ", ".join(overrides.get(name, f't."{name}"') for name in columns)
    names = ", ".join(f'"{name}"' for name in columns)
    table = model.__tablename__
    if is_postgres():
        sequence = "generate_series(1, :count) AS seq(n)"
        statement = f"INSERT INTO {table} ({names}) SELECT {values} FROM {table} t, {sequence} WHERE t.id = :template"
    else:
        sequence = "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count) "
        statement = f"INSERT INTO {table} ({names}) {sequence}SELECT {values} FROM {table} t, seq WHERE t.id = :template"
    db.session.execute(text(statement), {"count": count, "template": template_id, **params})
