"""Changing one's own password: the current one is required (and throttled like logins), the
new one is checked, and every other session of the user ends with the old password."""

from __future__ import annotations

from sqlalchemy import select

from conftest import Dashboard
from webhooks.db import db
from webhooks.models import AuditEntry

NEW = "a much better passphrase"


def change(client: Dashboard, current: str, new: str = NEW, confirm: str | None = None, **kwargs):
    data = {"current_password": current, "new_password": new, "confirm": new if confirm is None else confirm}
    return client.post("/account/password", data, **kwargs)


def test_the_new_password_works_the_old_one_does_not(app, editor):
    page = editor.get("/account/password")
    assert page.status_code == 200 and 'autocomplete="new-password"' in page.text
    answer = change(editor, Dashboard.PASSWORD)
    assert answer.status_code == 302
    assert "Password changed" in editor.get(answer.headers["Location"], follow_redirects=True).text
    assert editor.get("/t/acme/").status_code == 200, "the session that changed it stays logged in"
    fresh = Dashboard(app)
    assert fresh.login("eddie").status_code == 401
    assert fresh.login("eddie", NEW).status_code == 302
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.change_password"))
        assert entry is not None and NEW not in str(entry.after) and Dashboard.PASSWORD not in str(entry.after)


def test_other_sessions_of_the_user_are_logged_out(app, editor):
    elsewhere = Dashboard(app)
    assert elsewhere.login("eddie").status_code == 302
    assert elsewhere.get("/t/acme/").status_code == 200
    assert change(editor, Dashboard.PASSWORD).status_code == 302
    gone = elsewhere.get("/t/acme/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]


def test_a_wrong_current_password_is_refused_and_throttled(app, editor):
    wrong = change(editor, "not my password")
    assert wrong.status_code == 422 and "This is not your current password." in wrong.text
    for _ in range(4):
        change(editor, "not my password")
    assert change(editor, Dashboard.PASSWORD).status_code == 429  # even the right one, for a while
    assert Dashboard(app).login("eddie").status_code == 429, "the same lock as the login form"


def test_bad_new_passwords_get_errors_next_to_the_fields(editor):
    short = change(editor, Dashboard.PASSWORD, "short")
    assert short.status_code == 422 and "Use 8 to 200 characters." in short.text
    differ = change(editor, Dashboard.PASSWORD, NEW, confirm=NEW + "!")
    assert differ.status_code == 422 and "The two new passwords differ." in differ.text


def test_the_form_needs_a_login_and_a_csrf_token(app, editor):
    assert change(editor, Dashboard.PASSWORD, csrf=False).status_code == 400
    anonymous = Dashboard(app).client.get("/account/password")
    assert anonymous.status_code == 302 and "/login?next=/account/password" in anonymous.headers["Location"]
