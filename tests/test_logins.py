"""Login throttling: five failures per username and address within 15 minutes."""

from __future__ import annotations

from datetime import timedelta

from webhooks import logins
from webhooks.db import now_utc


def test_five_failures_block_until_the_oldest_leaves_the_window(app):
    start = now_utc()
    with app.app_context():
        for minute in range(5):
            assert logins.blocked_for("Ada", "10.0.0.1", now=start + timedelta(minutes=minute)) is None
            logins.note_failure("Ada", "10.0.0.1", now=start + timedelta(minutes=minute))
        wait = logins.blocked_for("ada", "10.0.0.1", now=start + timedelta(minutes=5))
        assert wait == timedelta(minutes=10)
        assert logins.blocked_for("ada", "10.0.0.2", now=start + timedelta(minutes=5)) is None
        assert logins.blocked_for("bob", "10.0.0.1", now=start + timedelta(minutes=5)) is None
        assert logins.blocked_for("ada", "10.0.0.1", now=start + timedelta(minutes=15, seconds=1)) is None


def test_clear_forgets_and_old_failures_are_deleted(app):
    from webhooks.db import db
    from webhooks.models import LoginFailure

    start = now_utc()
    with app.app_context():
        logins.note_failure("ada", "10.0.0.1", now=start - timedelta(hours=1))
        logins.note_failure("bob", "10.0.0.1", now=start)  # deletes ada's stale row
        assert db.session.scalar(db.select(db.func.count()).select_from(LoginFailure)) == 1
        logins.clear("bob", "10.0.0.1")
        assert db.session.scalar(db.select(db.func.count()).select_from(LoginFailure)) == 0
