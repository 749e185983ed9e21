"""inbound_stored_ignored: the attempt row of a request stored finished as ignored

Revision ID: 7c1f0e9b2d55
Revises: 5b7e1c2d9a41
Create Date: 2026-12-04 19:30:00

A request of a source without routes is stored as ``ignored``; this trigger
writes its attempt row in the same statement (see webhooks/models.py). The
SQL is copied here, not imported, so that this revision keeps doing what it
did when the models change.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7c1f0e9b2d55'
down_revision = '5b7e1c2d9a41'
branch_labels = None
depends_on = None

VALUES = """
    (request_id, number, "trigger", outcome, route_index, detail, error, duration_ms, started_at)
    VALUES (NEW.id, NEW.attempts, NEW.next_trigger, 'ignored', NULL,
            'no route matched event type ' || coalesce(NEW.event_type, '(none)'), NULL, 0, NEW.processed_at)"""


def upgrade():
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION inbound_stored_ignored() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN INSERT INTO inbound_attempts {VALUES}; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER inbound_stored_ignored AFTER INSERT ON inbound_requests\n"
            "FOR EACH ROW WHEN (NEW.status = 'ignored') EXECUTE FUNCTION inbound_stored_ignored()"
        )
    else:
        op.execute(
            "CREATE TRIGGER inbound_stored_ignored AFTER INSERT ON inbound_requests\n"
            f"FOR EACH ROW WHEN NEW.status = 'ignored'\nBEGIN INSERT INTO inbound_attempts {VALUES}; END"
        )


def downgrade():
    op.execute("DROP TRIGGER IF EXISTS inbound_stored_ignored" + (
        " ON inbound_requests" if op.get_context().dialect.name == "postgresql" else ""))
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS inbound_stored_ignored()")
