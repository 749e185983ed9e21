"""The per-process cache of what a hook URL names: edits made here apply at once, edits made
by other processes within ``CACHE_SECONDS``, and apps sharing a process never share it."""

from __future__ import annotations

import json

from sqlalchemy import create_engine
from sqlalchemy import text

from conftest import make_app
from conftest import make_tenant
from webhooks import providers
from webhooks import sources
from webhooks.testing import wait_until

SECRET = "gh-secret-0123456789abcdef"
NEW_SECRET = "gh-secret-fedcba9876543210"


def post(client, n: int, *, secret: str = SECRET, path: str = "/hooks/acme/gh") -> int:
    """A signed GitHub delivery; returns the status code of the answer."""
    body = json.dumps({"n": n}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"delivery-{n}",
        **providers.sign("github", secret, body),
    }
    return client.post(path, data=body, headers=headers).status_code


def elsewhere(database_url: str, statement: str) -> None:
    """Change the database the way another process would: this process's cache knows nothing of it."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


def test_changes_made_in_this_process_apply_at_once(api, client):
    source = api.source("gh", "github", secret=SECRET)
    assert post(client, 1) == 202
    assert api.patch(f"/api/v1/sources/{source['id']}", json={"secret": NEW_SECRET}).status_code == 200
    assert post(client, 2) == 401
    assert post(client, 3, secret=NEW_SECRET) == 202
    assert api.patch(f"/api/v1/sources/{source['id']}", json={"enabled": False}).status_code == 200
    assert post(client, 4, secret=NEW_SECRET) == 404
    assert api.patch(f"/api/v1/sources/{source['id']}", json={"enabled": True, "slug": "github"}).status_code == 200
    assert post(client, 5, secret=NEW_SECRET) == 404
    assert post(client, 6, secret=NEW_SECRET, path="/hooks/acme/github") == 202
    assert api.delete(f"/api/v1/sources/{source['id']}").status_code == 204
    assert post(client, 7, secret=NEW_SECRET, path="/hooks/acme/github") == 404


def test_unknown_urls_are_cached_until_a_source_is_made_here(api, client):
    assert post(client, 1) == 404
    api.source("gh", "github", secret=SECRET)
    assert post(client, 2) == 202


def test_other_processes_changes_show_once_the_cached_answer_expires(api, client, database_url, monkeypatch):
    monkeypatch.setattr(sources, "CACHE_SECONDS", 3600.0)
    api.source("gh", "github", secret=SECRET)
    assert post(client, 1) == 202
    elsewhere(database_url, "UPDATE sources SET enabled = false")
    assert post(client, 2) == 202, "within CACHE_SECONDS the process still answers from its cache"
    monkeypatch.setattr(sources, "CACHE_SECONDS", 0.05)
    with client.application.app_context():
        sources.forget()  # the entry above was stored with the long lifetime
    assert post(client, 3) == 404
    elsewhere(database_url, "UPDATE sources SET enabled = true")
    counter = iter(range(100, 10_000))
    wait_until(lambda: post(client, next(counter)) == 202)


def test_apps_in_one_process_keep_their_own_sources(api, client, tmp_path):
    api.source("gh", "github", secret=SECRET)
    other = make_app(f"sqlite:///{tmp_path / 'other.sqlite'}", tmp_path / "other")
    tenant_id, key = make_tenant(other, "acme")
    other_client = other.test_client()
    response = other_client.post(
        "/api/v1/sources",
        json={"slug": "gh", "provider": "github", "secret": NEW_SECRET},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201
    assert post(client, 1) == 202
    assert post(other_client, 1, secret=NEW_SECRET) == 202
    assert post(other_client, 2) == 401
    with other.app_context():
        from webhooks.db import db

        db.session.remove()
        db.engine.dispose()
