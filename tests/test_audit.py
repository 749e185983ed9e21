"""The audit log never stores a credential, at any depth."""

from __future__ import annotations

from webhooks import audit


def test_masked_replaces_values_of_sensitive_keys():
    data = {
        "url": "https://example.com",
        "headers": {"X-Api-Key": "sk_live_1", "X-Team": "billing", "Authorization": "Bearer x"},
        "auth": {"type": "basic", "password": "hunter22", "username": "erp"},
        "secret": "whsec_abc",
        "client_secret": "",
        "routes": [{"token": "t0k"}],
    }
    assert audit.masked(data) == {
        "url": "https://example.com",
        "headers": {"X-Api-Key": "***", "X-Team": "billing", "Authorization": "***"},
        "auth": {"type": "basic", "password": "***", "username": "erp"},
        "secret": "***",
        "client_secret": "",
        "routes": [{"token": "***"}],
    }
    assert audit.masked(None) is None and audit.masked([1, "a"]) == [1, "a"]


def test_record_masks_and_commits(app):
    from webhooks.db import db
    from webhooks.models import AuditEntry

    with app.app_context():
        audit.record(None, "endpoint.update", "endpoint", 7, before={"secret": "s1"}, after={"secret": "s2", "url": "u"}, actor="cli")
        db.session.remove()
        entry = db.session.scalar(db.select(AuditEntry))
        assert (entry.actor, entry.object_id, entry.before, entry.after) == ("cli", "7", {"secret": "***"}, {"secret": "***", "url": "u"})


def test_changes_lists_top_level_differences():
    assert audit.changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": (2, 3), "c": (None, 4)}
    assert audit.changes(None, {"a": 1}) == {}
