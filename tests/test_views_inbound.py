"""Inbound pages: sources with their hook URL and secrets, the request log with
accepted and rejected requests, the request detail with attempts, reprocessing."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from webhooks import providers
from webhooks.db import db
from webhooks.models import AuditEntry
from webhooks.models import InboundRequest
from webhooks.models import Source

FORM = {
    "slug": "gh",
    "name": "GitHub org",
    "provider": "github",
    "secret": "",
    "config": "",
    "ip_allowlist": "",
    "max_body_bytes": "1048576",
    "rate_limit_per_minute": "",
    "max_attempts": "5",
    "enabled": "y",
    "routes": '[{"action": "publish", "event_type": "github.{event_type}"}]',
}


def source_row(app, slug="gh") -> Source:
    with app.app_context():
        item = db.session.scalar(select(Source).where(Source.slug == slug))
        db.session.expunge(item)
        return item


def post_hook(client, secret: str, payload: dict, *, event: str = "push", delivery: str = "d-1", signed: bool = True):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if signed:
        headers.update(providers.sign("github", secret, body))
    return client.post("/hooks/acme/gh", data=body, headers=headers)


def test_create_a_source_shows_the_hook_url_and_secret_once(app, editor):
    response = editor.post("/t/acme/inbound/sources/new", FORM)
    assert response.status_code == 201
    secret = re.search(r'id="new-secret-1"[^>]*>([0-9a-f]{64})<', response.text).group(1)
    assert "http://localhost/hooks/acme/gh" in response.text
    source = source_row(app)
    assert source.secrets == [secret] and source.routes == [{"action": "publish", "event_type": "github.{event_type}"}]
    page = editor.get(f"/t/acme/inbound/sources/{source.id}")
    assert secret not in page.text and secret[:4] + "…" + secret[-4:] in page.text
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "source.create"))
        assert secret not in json.dumps(entry.after) and entry.after["slug"] == "gh"
    assert "gh" in editor.get("/t/acme/inbound/").text


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"slug": "Not A Slug"}, "slug", "slug must be"),
        ({"provider": "stripe"}, "secret", "secret is required for Stripe"),
        ({"ip_allowlist": "10.0.0.1\nnot-an-ip"}, "ip_allowlist", "is not an IP address"),
        ({"routes": '[{"action": "publish", "when": "a >", "event_type": "x"}]'}, "routes", "when:"),
        ({"routes": "[oops"}, "routes", "not valid JSON"),
        ({"config": '{"nope": 1}'}, "config", "unknown setting"),
        ({"max_attempts": "0"}, "max_attempts", "from 1 to 20"),
    ],
)
def test_source_errors_are_shown_beside_fields(app, editor, changes, field, message):
    response = editor.post("/t/acme/inbound/sources/new", {**FORM, **changes})
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', response.text, re.S)
    assert error and message in error.group(1), response.text
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Source)) == 0


def test_edit_keeps_secrets_and_rotation_adds_one_in_front(app, editor, api):
    created = api.source("gh", "github", secret="first-secret-0123456789")
    response = editor.post(f"/t/acme/inbound/sources/{created['id']}/edit", {**FORM, "name": "Renamed"})
    assert response.status_code == 302
    source = source_row(app)
    assert source.name == "Renamed" and source.secrets == ["first-secret-0123456789"]
    rotated = editor.post(f"/t/acme/inbound/sources/{created['id']}/secrets", {"secret": ""})
    new = re.search(r'id="new-secret-1"[^>]*>([0-9a-f]{64})<', rotated.text).group(1)
    assert source_row(app).secrets == [new, "first-secret-0123456789"]
    editor.post(f"/t/acme/inbound/sources/{created['id']}/secrets/drop-old")
    assert source_row(app).secrets == [new]
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        assert actions == ["source.update", "source.add_secret", "source.drop_secrets"]
        assert new not in json.dumps(list(db.session.scalars(select(AuditEntry.after))))


def test_a_provider_that_issues_secrets_needs_one_pasted(app, editor, api):
    created = api.source("st", "stripe", secret="whsec_abcdefghijklmnopqrstuvwxyz")
    response = editor.post(f"/t/acme/inbound/sources/{created['id']}/secrets", {"secret": ""})
    assert response.status_code == 422
    assert "Stripe issues its own secrets" in re.search(r'id="secret-error">(.*?)</p>', response.text).group(1)
    assert source_row(app, "st").secrets == ["whsec_abcdefghijklmnopqrstuvwxyz"]


def test_request_log_shows_accepted_and_rejected_with_reasons(app, editor, api, client, process_inbound):
    api.source("gh", "github", secret="s3cret-0123456789", routes=[{"action": "publish", "event_type": "github.{event_type}"}])
    assert post_hook(client, "s3cret-0123456789", {"ref": "main"}).status_code == 202
    assert post_hook(client, "wrong-secret-0123456789", {"ref": "evil"}, delivery="d-2").status_code == 401
    log = editor.get("/t/acme/inbound/requests")
    assert log.status_code == 200
    text = " ".join(log.text.split())
    assert re.search(r'<tr id="request-1" class="status-pending"\s+hx-get="/t/acme/inbound/requests/1/row" hx-trigger="every 2s"', log.text)
    assert '<span class="badge badge-received">received</span>' in text
    assert '<span class="badge badge-rejected">rejected</span>' in text and "signature" in text.lower()
    process_inbound()
    row = editor.get("/t/acme/inbound/requests/1/row", htmx=True)
    assert row.status_code == 286 and "badge-processed" in row.text and "hx-trigger" not in row.text
    rejected_only = editor.get("/t/acme/inbound/requests?status=rejected")
    assert 'id="request-2"' in rejected_only.text and 'id="request-1"' not in rejected_only.text


def test_request_detail_headers_body_attempts_and_reprocess(app, editor, api, client, process_inbound):
    api.source("gh", "github", secret="s3cret-0123456789", routes=[{"action": "publish", "event_type": "github.{event_type}"}])
    post_hook(client, "s3cret-0123456789", {"ref": "main", "commits": [1, 2]})
    process_inbound()
    page = editor.get("/t/acme/inbound/requests/1")
    assert page.status_code == 200
    text = " ".join(page.text.split())
    assert "X-Github-Event" in page.text or "X-GitHub-Event" in page.text
    assert "sha2…" in page.text  # the signature header, masked
    assert "&#34;ref&#34;: &#34;main&#34;" in page.text
    assert "github.push" in text and 'badge-succeeded">published' in text
    response = editor.post("/t/acme/inbound/requests/1/reprocess")
    assert response.headers["Location"] == "/t/acme/inbound/requests/1"
    with app.app_context():
        item = db.session.get(InboundRequest, 1)
        assert item.status == "received" and item.next_trigger == "manual"
        assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.action == "inbound.reprocess"))
    process_inbound()
    again = " ".join(editor.get("/t/acme/inbound/requests/1").text.split())
    assert again.count('badge-succeeded">published') == 2


def test_rejected_requests_cannot_be_reprocessed(app, editor, api, client):
    api.source("gh", "github", secret="s3cret-0123456789")
    post_hook(client, "wrong-secret-0123456789", {"ref": "evil"})
    page = editor.get("/t/acme/inbound/requests/1")
    assert "Reprocess" not in page.text and "rejected" in page.text
    refused = editor.post("/t/acme/inbound/requests/1/reprocess", follow_redirects=True)
    assert "never accepted" in refused.text


def test_viewers_and_other_tenants(app, editor, viewer, api, other_api, client):
    mine = api.source("gh", "github", secret="s3cret-0123456789")
    theirs = other_api.source("their", "github", secret="s3cret-0123456789")
    post_hook(client, "s3cret-0123456789", {})
    page = viewer.get(f"/t/acme/inbound/sources/{mine['id']}")
    assert page.status_code == 200 and "Add secret" not in page.text and ">Edit<" not in page.text
    assert viewer.get("/t/acme/inbound/sources/new").status_code == 403
    assert viewer.post(f"/t/acme/inbound/sources/{mine['id']}/secrets", {"secret": "x" * 20}).status_code == 403
    assert viewer.post("/t/acme/inbound/requests/1/reprocess").status_code == 403
    assert "Reprocess" not in viewer.get("/t/acme/inbound/requests/1").text
    for path in ("", "/edit"):
        assert editor.get(f"/t/acme/inbound/sources/{theirs['id']}{path}").status_code == 404
    for path in ("/secrets", "/secrets/drop-old", "/delete", "/edit"):
        assert editor.post(f"/t/acme/inbound/sources/{theirs['id']}{path}", FORM).status_code == 404
    assert editor.post("/t/acme/inbound/sources/new", FORM, csrf=False).status_code == 400
    assert source_row(app, "their").secrets == ["s3cret-0123456789"]


def test_delete_a_source(app, editor, api):
    created = api.source("gh", "github", secret="s3cret-0123456789")
    assert editor.post(f"/t/acme/inbound/sources/{created['id']}/delete").headers["Location"] == "/t/acme/inbound/"
    with app.app_context():
        assert db.session.get(Source, created["id"]) is None
