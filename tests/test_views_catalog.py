"""Event types and payload templates: forms, errors beside fields, live preview."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from webhooks.db import db
from webhooks.models import AuditEntry
from webhooks.models import EventType
from webhooks.models import PayloadTemplate

SCHEMA = {"type": "object", "properties": {"order": {"type": "object", "properties": {"id": {"type": "integer"}}}}}


def field_error(html: str, field: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', html, re.S)
    return found.group(1) if found else None


def actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


# -- event types ------------------------------------------------------------------


def test_create_and_edit_an_event_type(app, editor):
    response = editor.post(
        "/t/acme/event-types/new",
        {"name": "order.created", "description": "An order", "schema": json.dumps(SCHEMA), "sample": '{"order": {"id": 1}}'},
    )
    assert response.status_code == 302
    with app.app_context():
        entry = db.session.scalar(select(EventType))
        assert entry.schema == SCHEMA and entry.sample == {"order": {"id": 1}}
    page = editor.get(response.headers["Location"])
    assert "order.created" in page.text and "&#34;id&#34;: 1" in page.text
    saved = editor.post(response.headers["Location"], {"name": "order.created", "description": "Placed", "schema": "", "sample": '{"order": {"id": "x"}}'})
    assert saved.status_code == 302
    with app.app_context():
        entry = db.session.scalar(select(EventType))
        assert entry.schema is None and entry.description == "Placed"
    assert actions(app) == ["event_type.create", "event_type.update"]
    assert "order.created" in editor.get("/t/acme/event-types").text


@pytest.mark.parametrize(
    "form, field, message",
    [
        ({"name": "", "sample": "{}"}, "name", "This field is required"),
        ({"name": "bad name!"}, "name", "an event type like"),
        ({"name": "a.b", "schema": "{nope"}, "schema", "not valid JSON"),
        ({"name": "a.b", "schema": '{"type": "nonsense"}'}, "schema", "invalid JSON Schema"),
        ({"name": "a.b", "schema": json.dumps(SCHEMA), "sample": '{"order": {"id": "x"}}'}, "sample", "the sample does not match the schema"),
    ],
)
def test_event_type_errors_are_shown_beside_fields(app, editor, form, field, message):
    response = editor.post("/t/acme/event-types/new", form)
    assert response.status_code == 422
    assert message in (field_error(response.text, field) or "")
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(EventType)) == 0


def test_duplicate_event_type_name(editor, api):
    api.post("/api/v1/event-types", json={"name": "order.created"})
    response = editor.post("/t/acme/event-types/new", {"name": "order.created"})
    assert response.status_code == 422
    assert "exists already" in field_error(response.text, "name")


def test_delete_event_type(app, editor, api):
    entry = api.post("/api/v1/event-types", json={"name": "order.created"}).get_json()
    assert editor.post(f"/t/acme/event-types/{entry['id']}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(EventType, entry["id"]) is None


def test_viewers_read_event_types_but_cannot_change_them(app, viewer, api):
    entry = api.post("/api/v1/event-types", json={"name": "order.created", "sample": {"a": 1}}).get_json()
    page = viewer.get(f"/t/acme/event-types/{entry['id']}")
    assert page.status_code == 200 and "disabled" in page.text and ">Save<" not in page.text
    assert "New event type" not in viewer.get("/t/acme/event-types").text
    assert viewer.get("/t/acme/event-types/new").status_code == 403
    assert viewer.post(f"/t/acme/event-types/{entry['id']}", {"name": "x.y"}).status_code == 403
    assert viewer.post(f"/t/acme/event-types/{entry['id']}/delete").status_code == 403


def test_other_tenants_event_types_are_not_found(editor, other_api):
    entry = other_api.post("/api/v1/event-types", json={"name": "order.created"}).get_json()
    assert editor.get(f"/t/acme/event-types/{entry['id']}").status_code == 404
    assert editor.post(f"/t/acme/event-types/{entry['id']}", {"name": "x.y"}).status_code == 404
    assert editor.post(f"/t/acme/event-types/{entry['id']}/delete").status_code == 404


def test_event_type_form_needs_csrf(app, editor):
    assert editor.post("/t/acme/event-types/new", {"name": "order.created"}, csrf=False).status_code == 400


# -- payload templates ---------------------------------------------------------------

BODY = '{"order_id": {{ order.id | tojson }}, "kind": {{ event.type | tojson }}}'


def test_create_a_template_checked_against_the_sample(app, editor, api):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": {"order": {"id": 42}}})
    page = editor.get("/t/acme/templates/new")
    assert page.status_code == 200 and "valid JSON" in page.text
    response = editor.post("/t/acme/templates/new", {"name": "ERP", "event_type": "order.created", "body": BODY, "payload": "{}"})
    assert response.status_code == 302
    with app.app_context():
        template = db.session.scalar(select(PayloadTemplate))
        assert template.body == BODY and template.event_type == "order.created"
    editor_page = editor.get(response.headers["Location"])
    assert "&#34;order_id&#34;: 42" in editor_page.text  # the preview rendered with the sample
    assert actions(app) == ["template.create"]


def test_template_errors_carry_their_line(app, editor):
    body = '{\n  "a": 1,\n  "b": {{ order.id | nosuchfilter }}\n}'
    response = editor.post("/t/acme/templates/new", {"name": "broken", "body": body, "payload": "{}"})
    assert response.status_code == 422
    error = field_error(response.text, "body")
    assert "line 3" in error
    assert '<li class="error-line" aria-current="true"><code>  &#34;b&#34;: {{ order.id | nosuchfilter }}</code></li>' in response.text
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(PayloadTemplate)) == 0


def test_template_output_must_be_json(editor):
    response = editor.post("/t/acme/templates/new", {"name": "text", "body": "hello {{ event.type }}"})
    assert response.status_code == 422
    assert "does not render valid JSON" in field_error(response.text, "body")


def test_a_bad_preview_payload_does_not_block_saving(app, editor):
    response = editor.post("/t/acme/templates/new", {"name": "ok", "body": "{}", "payload": "{half typed"})
    assert response.status_code == 302


def test_live_preview_renders_as_you_type(editor, api):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": {"order": {"id": 7}}})
    ok = editor.post("/t/acme/templates/preview", {"body": BODY, "event_type": "order.created", "payload": ""}, htmx=True)
    assert ok.status_code == 200 and "valid JSON" in ok.text and "&#34;order_id&#34;: 7" in ok.text
    pasted = editor.post("/t/acme/templates/preview", {"body": BODY, "payload": '{"order": {"id": 99}}'}, htmx=True)
    assert "&#34;order_id&#34;: 99" in pasted.text
    broken = editor.post("/t/acme/templates/preview", {"body": '{"a": {{ order.id }', "payload": "{}"}, htmx=True)
    assert broken.status_code == 200 and "badge-failed" in broken.text and "line 1" in broken.text
    bad_payload = editor.post("/t/acme/templates/preview", {"body": "{}", "payload": "[1,"}, htmx=True)
    assert "payload: not valid JSON" in bad_payload.text


def test_sample_payload_fragment_follows_the_event_type(editor, api):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": {"order": {"id": 7}}})
    fragment = editor.get("/t/acme/event-types/sample?event_type=order.created", htmx=True)
    assert fragment.text.lstrip().startswith('<div id="payload-field">') and "&#34;id&#34;: 7" in fragment.text
    assert fragment.headers["HX-Trigger"] == "sample-loaded"


def test_edit_and_delete_a_template(app, editor, api):
    template = api.post("/api/v1/templates", json={"name": "ERP", "body": "{}"}).get_json()
    saved = editor.post(f"/t/acme/templates/{template['id']}", {"name": "ERP v2", "body": BODY, "payload": "{}"})
    assert saved.status_code == 302
    clash = api.post("/api/v1/templates", json={"name": "Other", "body": "{}"}).get_json()
    taken = editor.post(f"/t/acme/templates/{clash['id']}", {"name": "ERP v2", "body": "{}"})
    assert taken.status_code == 422 and "exists already" in field_error(taken.text, "name")
    assert editor.post(f"/t/acme/templates/{template['id']}/delete").status_code == 302
    assert actions(app) == ["template.update", "template.delete"]
    assert "Other" in editor.get("/t/acme/templates").text


def test_viewers_may_preview_templates_but_not_save(app, viewer, api):
    template = api.post("/api/v1/templates", json={"name": "ERP", "body": "{}"}).get_json()
    page = viewer.get(f"/t/acme/templates/{template['id']}")
    assert page.status_code == 200 and "Save template" not in page.text
    assert viewer.post("/t/acme/templates/preview", {"body": "{}"}, htmx=True).status_code == 200
    assert viewer.post(f"/t/acme/templates/{template['id']}", {"name": "x", "body": "{}"}).status_code == 403
    assert viewer.get("/t/acme/templates/new").status_code == 403


def test_other_tenants_templates_are_not_found(editor, other_api):
    template = other_api.post("/api/v1/templates", json={"name": "ERP", "body": "{}"}).get_json()
    assert editor.get(f"/t/acme/templates/{template['id']}").status_code == 404
    assert editor.post(f"/t/acme/templates/{template['id']}", {"name": "x", "body": "{}"}).status_code == 404
    assert editor.post(f"/t/acme/templates/{template['id']}/delete").status_code == 404
