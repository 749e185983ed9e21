"""Endpoint pages: list, create and edit with errors beside fields, enable/disable,
secret rotation, test events, delete, and the filter editor with its preview."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from conftest import Dashboard
from conftest import make_app
from conftest import make_tenant
from werkzeug.wrappers import Response
from webhooks.testing import Receiver
from webhooks.db import db
from webhooks.models import AuditEntry
from webhooks.models import Delivery
from webhooks.models import Endpoint

VALID = {
    "url": "http://127.0.0.1:9/hook",
    "description": "ERP",
    "event_types": "order.*, invoice.paid",
    "headers": "X-Team: billing\nX-Api-Key: sk_live_abcdefghijklmnop",
    "template_id": "0",
    "timeout_seconds": "10",
    "max_attempts": "4",
    "backoff_seconds": "30",
    "rate_limit": "",
    "rate_period": "second",
    "batch_size": "1",
    "batch_window_seconds": "0",
    "circuit_threshold": "5",
    "circuit_cooldown_seconds": "60",
    "disable_after_hours": "72",
    "verify_tls": "y",
    "auth_type": "",
}


def endpoint_row(app, endpoint_id):
    with app.app_context():
        item = db.session.get(Endpoint, endpoint_id)
        db.session.expunge(item)
        return item


def audit_entries(app, action):
    with app.app_context():
        return [(e.actor, e.before, e.after) for e in db.session.scalars(select(AuditEntry).where(AuditEntry.action == action))]


def squash(html: str) -> str:
    """HTML with runs of whitespace as one space, so phrases can be looked for across template lines."""
    return " ".join(html.split())


def create(dashboard, **changes):
    return dashboard.post("/t/acme/endpoints/new", {**VALID, **changes})


def created_id(response) -> int:
    return int(re.search(r"Endpoints</a> / #(\d+)", response.text).group(1))


def test_create_shows_the_secret_once_and_audits_without_it(app, editor):
    response = create(editor)
    assert response.status_code == 201
    secret = re.search(r'id="new-secret"[^>]*>(whsec_[^<]+)<', response.text).group(1)
    endpoint = endpoint_row(app, created_id(response))
    assert endpoint.secret == secret
    assert endpoint.event_types == ["invoice.paid", "order.*"]
    assert endpoint.headers == {"X-Team": "billing", "X-Api-Key": "sk_live_abcdefghijklmnop"}
    assert endpoint.max_attempts == 4 and endpoint.timeout_seconds == 10
    (actor, before, after), = audit_entries(app, "endpoint.create")
    assert actor == "eddie" and before is None
    assert after["url"] == VALID["url"] and after["headers"] == {"X-Team": "billing", "X-Api-Key": "***"}
    assert secret not in str(after) and secret[:10] not in str(after)
    later = editor.get(f"/t/acme/endpoints/{endpoint.id}")
    assert secret not in later.text
    assert secret[:10] + "…" in later.text


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"url": ""}, "url", "the URL is required"),
        ({"url": "ftp://example.com/x"}, "url", "http"),
        ({"max_attempts": "0"}, "max_attempts", "max_attempts must be between 1 and 20"),
        ({"max_attempts": "many"}, "max_attempts", "Not a valid integer value"),
        ({"timeout_seconds": "600"}, "timeout_seconds", "between 1 and 60"),
        ({"headers": "no colon here"}, "headers", "line 1: write &#39;Name: value&#39;"),
        ({"headers": "Content-Type: text/plain"}, "headers", "set by the hub"),
        ({"auth_type": "basic", "auth_username": "u"}, "auth_type", "auth.password is required"),
        ({"rate_limit": "0"}, "rate_limit", "rate_limit must be"),
    ],
)
def test_invalid_input_is_shown_beside_its_field(app, editor, changes, field, message):
    response = create(editor, **changes)
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', response.text)
    assert error, response.text
    assert message in error.group(1)
    assert f'id="{field}"' in response.text and 'aria-invalid="true"' in response.text
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Endpoint)) == 0


def test_private_targets_are_refused_beside_the_url(app, database_url, tmp_path):
    # Its own app: the fixture's allows private targets, as loopback receivers need.
    # It shares the database, which the ``app`` fixture cleans up after.
    strict = make_app(database_url, tmp_path / "strict", ALLOW_PRIVATE_TARGETS=False)
    acme, _ = make_tenant(strict, "acme")
    dashboard = Dashboard(strict)
    dashboard.login_as(dashboard.user("eddie", roles={acme: "editor"}))
    for url in ("http://127.0.0.1:8080/hook", "http://169.254.169.254/latest/meta-data", "http://10.0.0.5/x"):
        response = create(dashboard, url=url)
        assert response.status_code == 422
        assert re.search(r'<p class="field-error" id="url-error">[^<]*(private|loopback|not allowed|link-local|reserved)', response.text), url
    with strict.app_context():
        db.engine.dispose()


def test_create_without_csrf_changes_nothing(app, editor):
    response = editor.post("/t/acme/endpoints/new", VALID, csrf=False)
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Endpoint)) == 0


def test_edit_keeps_stored_credentials_left_blank(app, editor):
    response = create(editor, auth_type="basic", auth_username="erp", auth_password="s3cret-password")
    endpoint_id = created_id(response)
    form = editor.get(f"/t/acme/endpoints/{endpoint_id}/edit")
    assert form.status_code == 200
    assert "s3cret-password" not in form.text and 'value="erp"' in form.text
    saved = editor.post(f"/t/acme/endpoints/{endpoint_id}/edit", {**VALID, "description": "new words", "auth_type": "basic", "auth_username": "erp2"})
    assert saved.status_code == 302
    endpoint = endpoint_row(app, endpoint_id)
    assert endpoint.description == "new words"
    assert endpoint.auth == {"type": "basic", "username": "erp2", "password": "s3cret-password"}
    (_, before, after), = audit_entries(app, "endpoint.update")
    assert before["description"] == "ERP" and after["description"] == "new words"
    assert "s3cret-password" not in str(before) + str(after)


def test_edit_errors_leave_the_endpoint_unchanged(app, editor):
    endpoint_id = created_id(create(editor))
    response = editor.post(f"/t/acme/endpoints/{endpoint_id}/edit", {**VALID, "description": "changed", "backoff_seconds": "0"})
    assert response.status_code == 422
    assert "backoff_seconds must be between" in response.text
    assert endpoint_row(app, endpoint_id).description == "ERP"


def test_tls_off_is_warned_about(editor):
    response = create(editor, verify_tls="")
    assert "TLS certificate verification is off" in response.text
    listing = editor.get("/t/acme/endpoints/")
    assert "TLS off" in listing.text


def test_disable_and_enable(app, editor):
    endpoint_id = created_id(create(editor))
    response = editor.post(f"/t/acme/endpoints/{endpoint_id}/enabled", {"enabled": "0"})
    assert response.status_code == 302
    endpoint = endpoint_row(app, endpoint_id)
    assert not endpoint.enabled and endpoint.disabled_reason == "disabled by eddie"
    page = editor.get(f"/t/acme/endpoints/{endpoint_id}")
    assert "Disabled: disabled by eddie" in page.text and ">Enable<" in page.text
    editor.post(f"/t/acme/endpoints/{endpoint_id}/enabled", {"enabled": "1"})
    assert endpoint_row(app, endpoint_id).enabled
    assert [after["enabled"] for _, _, after in audit_entries(app, "endpoint.disable") + audit_entries(app, "endpoint.enable")] == [False, True]


def test_enabling_after_failures_offers_a_replay(app, editor, api, drainer):
    with Receiver(lambda request: Response("down", 500)) as broken:
        endpoint = api.endpoint(broken.url, max_attempts=1)
        api.publish()
        drainer.drain()
    with app.app_context():
        assert db.session.scalar(select(Delivery.status)) == "failed"
    editor.post(f"/t/acme/endpoints/{endpoint['id']}/enabled", {"enabled": "0"})
    response = editor.post(f"/t/acme/endpoints/{endpoint['id']}/enabled", {"enabled": "1"})
    assert "/deliveries/replay" in response.headers["Location"]
    confirm = editor.get(response.headers["Location"])
    assert "<strong>1</strong> failed delivery" in confirm.text


def test_rotate_secret_shows_the_new_one_once(app, editor):
    response = create(editor)
    endpoint_id = created_id(response)
    old = endpoint_row(app, endpoint_id).secret
    fragment = editor.post(f"/t/acme/endpoints/{endpoint_id}/rotate-secret", htmx=True)
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="secret-panel"')
    new = re.search(r'id="new-secret"[^>]*>(whsec_[^<]+)<', fragment.text).group(1)
    endpoint = endpoint_row(app, endpoint_id)
    assert endpoint.secret == new != old and endpoint.previous_secret == old
    assert new not in editor.get(f"/t/acme/endpoints/{endpoint_id}").text
    (actor, _, after), = audit_entries(app, "endpoint.rotate_secret")
    assert new not in str(after) and old not in str(after)


def test_send_test_event_queues_a_delivery(app, editor, receiver, drainer):
    endpoint_id = created_id(create(editor, url=receiver.url))
    fragment = editor.post(f"/t/acme/endpoints/{endpoint_id}/test", htmx=True)
    assert "Test event <code>msg_" in fragment.text
    assert fragment.headers["HX-Trigger"] == "deliveries-changed"
    drainer.drain()
    assert receiver.wait_for(1)[0].headers["Webhook-Id"].startswith("msg_")
    recent = editor.get(f"/t/acme/endpoints/{endpoint_id}/deliveries", htmx=True)
    assert "webhook.test" in recent.text and "succeeded" in recent.text


def test_delete(app, editor):
    endpoint_id = created_id(create(editor))
    response = editor.post(f"/t/acme/endpoints/{endpoint_id}/delete")
    assert response.headers["Location"] == "/t/acme/endpoints/"
    with app.app_context():
        assert db.session.get(Endpoint, endpoint_id) is None
    assert audit_entries(app, "endpoint.delete")[0][1]["url"] == VALID["url"]


def test_list_and_detail_pages(editor, api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook", description="Warehouse")
    listing = editor.get("/t/acme/endpoints/")
    assert "Warehouse" in listing.text and "http://127.0.0.1:9/hook" in listing.text
    detail = editor.get(f"/t/acme/endpoints/{endpoint['id']}")
    assert detail.status_code == 200
    assert "Last 24 hours" in detail.text and "<svg" in detail.text and "Recent deliveries" in detail.text


def test_viewer_sees_no_controls_and_is_refused(app, viewer, api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook")
    page = viewer.get(f"/t/acme/endpoints/{endpoint['id']}")
    assert page.status_code == 200
    for control in ("Rotate secret", "Send test event", ">Disable<", ">Delete<", ">Edit<"):
        assert control not in page.text
    for path in ("enabled", "rotate-secret", "test", "delete", "edit", "filter"):
        assert viewer.post(f"/t/acme/endpoints/{endpoint['id']}/{path}", {"enabled": "0", "url": "http://127.0.0.1:9/x"}).status_code == 403
    assert viewer.get(f"/t/acme/endpoints/{endpoint['id']}/edit").status_code == 403
    assert endpoint_row(app, endpoint["id"]).enabled


@pytest.mark.parametrize("path", ["", "/edit", "/filter", "/deliveries"])
def test_other_tenants_endpoints_are_not_found(editor, other_api, path):
    theirs = other_api.endpoint("http://127.0.0.1:9/hook")
    assert editor.get(f"/t/acme/endpoints/{theirs['id']}{path}").status_code == 404


@pytest.mark.parametrize("path", ["/enabled", "/rotate-secret", "/test", "/delete", "/edit", "/filter", "/filter/preview"])
def test_other_tenants_endpoints_cannot_be_changed(app, editor, other_api, path):
    theirs = other_api.endpoint("http://127.0.0.1:9/hook")
    response = editor.post(f"/t/acme/endpoints/{theirs['id']}{path}", {**VALID, "enabled": "0", "match": "all"})
    assert response.status_code == 404
    assert endpoint_row(app, theirs["id"]).enabled


# -- the filter editor ------------------------------------------------------------


def test_filter_editor_saves_rules_in_page_order(app, editor, api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook", event_types=["order.created"])
    page = editor.get(f"/t/acme/endpoints/{endpoint['id']}/filter")
    assert page.status_code == 200 and "No rules" in page.text
    response = editor.post(
        f"/t/acme/endpoints/{endpoint['id']}/filter",
        {"match": "any", "rule": ["order.total > 100", "  ", '"vip" in customer.tags']},
    )
    assert response.status_code == 302
    saved = endpoint_row(app, endpoint["id"])
    assert saved.filter_match == "any"
    assert saved.filter_rules == ["order.total > 100", '"vip" in customer.tags']
    (_, before, after), = audit_entries(app, "endpoint.filter")
    assert before["filter"]["rules"] == [] and after["filter"]["match"] == "any"
    shown = editor.get(f"/t/acme/endpoints/{endpoint['id']}/filter")
    assert 'value="order.total &gt; 100"' in shown.text


def test_a_broken_rule_is_shown_beside_its_row(app, editor, api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook")
    response = editor.post(f"/t/acme/endpoints/{endpoint['id']}/filter", {"match": "all", "rule": ["order.total > 1", "order.total >"]})
    assert response.status_code == 422
    error = re.search(r'<p class="field-error" id="rule-1-error">(.*?)</p>', response.text)
    assert error and "rule 2" in error.group(1) and "column" in error.group(1)
    assert endpoint_row(app, endpoint["id"]).filter_rules == []


def test_filter_preview_against_the_sample_and_recent_events(editor, api):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": {"order": {"total": 250}}})
    endpoint = api.endpoint("http://127.0.0.1:9/hook", event_types=["order.created"])
    for total in (50, 150, 300):
        api.publish("order.created", {"order": {"total": total}})
    page = editor.get(f"/t/acme/endpoints/{endpoint['id']}/filter")
    assert "&#34;total&#34;: 250" in page.text  # the sample fills the payload box
    preview = editor.post(
        f"/t/acme/endpoints/{endpoint['id']}/filter/preview",
        {"match": "all", "rule": ["order.total > 100"], "event_type": "order.created", "payload": '{"order": {"total": 250}}'},
        htmx=True,
    )
    assert preview.status_code == 200
    assert "badge-succeeded\">matches" in preview.text
    assert "Of the last 3 events of <code>order.created</code>, <strong>2</strong> would match." in squash(preview.text)
    miss = editor.post(
        f"/t/acme/endpoints/{endpoint['id']}/filter/preview",
        {"match": "all", "rule": ["order.total > 1000", "order.total >"], "payload": '{"order": {"total": 5}}'},
        htmx=True,
    )
    assert "no match" in miss.text and "<strong>0</strong> would match" in squash(miss.text)
    assert "badge-failed\">error" in miss.text
    bad_json = editor.post(f"/t/acme/endpoints/{endpoint['id']}/filter/preview", {"match": "all", "payload": "{nope"}, htmx=True)
    assert "not valid JSON" in bad_json.text


def test_viewers_may_try_filters_but_not_save_them(app, viewer, api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook")
    page = viewer.get(f"/t/acme/endpoints/{endpoint['id']}/filter")
    assert "Save filter" not in page.text and "Add rule" not in page.text
    preview = viewer.post(f"/t/acme/endpoints/{endpoint['id']}/filter/preview", {"match": "all", "rule": ["true"], "payload": "{}"}, htmx=True)
    assert preview.status_code == 200
    assert viewer.post(f"/t/acme/endpoints/{endpoint['id']}/filter", {"match": "all", "rule": ["true"]}).status_code == 403
    assert endpoint_row(app, endpoint["id"]).filter_rules == []
