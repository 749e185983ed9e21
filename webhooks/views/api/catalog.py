"""Event types, payload templates, and the preview calls the dashboard's editors use."""

from __future__ import annotations

from flask import g
from sqlalchemy import select

from webhooks import catalog
from webhooks import filters
from webhooks import payload_templates
from webhooks import publishing
from webhooks import templating
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.errors import checked_text
from webhooks.models import Event
from webhooks.models import EventType
from webhooks.models import PayloadTemplate
from webhooks.views.api import bp
from webhooks.views.api import json_object
from webhooks.views.api import owned
from webhooks.views.api import tenant_row


@bp.post("/event-types")
def create_event_type():
    entry = EventType(tenant_id=g.tenant.id, name="")
    catalog.apply(entry, json_object(), creating=True)
    db.session.add(entry)
    db.session.commit()
    return catalog.serialize(entry), 201


@bp.get("/event-types")
def list_event_types():
    items = db.session.scalars(select(EventType).where(EventType.tenant_id == g.tenant.id).order_by(EventType.name))
    return {"data": [catalog.serialize(item) for item in items]}


@bp.get("/event-types/<int:type_id>")
def get_event_type(type_id: int):
    return catalog.serialize(owned(EventType, type_id, "event type"))


@bp.patch("/event-types/<int:type_id>")
def update_event_type(type_id: int):
    entry = owned(EventType, type_id, "event type")
    catalog.apply(entry, json_object(), creating=False)
    db.session.commit()
    return catalog.serialize(entry)


@bp.delete("/event-types/<int:type_id>")
def delete_event_type(type_id: int):
    db.session.delete(owned(EventType, type_id, "event type"))
    db.session.commit()
    return "", 204


@bp.post("/templates")
def create_template():
    return payload_templates.serialize(payload_templates.create(tenant_row(), json_object())), 201


@bp.get("/templates")
def list_templates():
    query = select(PayloadTemplate).where(PayloadTemplate.tenant_id == g.tenant.id).order_by(PayloadTemplate.name)
    return {"data": [payload_templates.serialize(item) for item in db.session.scalars(query)]}


@bp.get("/templates/<int:template_id>")
def get_template(template_id: int):
    return payload_templates.serialize(owned(PayloadTemplate, template_id, "template"))


@bp.patch("/templates/<int:template_id>")
def update_template(template_id: int):
    template = owned(PayloadTemplate, template_id, "template")
    payload_templates.apply(template, json_object(), creating=False)
    db.session.commit()
    return payload_templates.serialize(template)


@bp.delete("/templates/<int:template_id>")
def delete_template(template_id: int):
    db.session.delete(owned(PayloadTemplate, template_id, "template"))
    db.session.commit()
    return "", 204


@bp.post("/templates/preview")
def preview_template():
    body = json_object()
    if not isinstance(body.get("body"), str):
        raise ApiError(422, "body (the template text) is required", field="body")
    event_type = _event_type(body)
    payload = body["payload"] if "payload" in body else payload_templates.sample_payload(g.tenant.id, event_type)
    return templating.preview(body["body"], payload, event=payload_templates.sample_event(event_type))


@bp.post("/filters/test")
def test_filter():
    body = json_object()
    match, rules = body.get("match", "all"), body.get("rules", [])
    if match not in ("all", "any"):
        raise ApiError(422, "match must be 'all' or 'any'", field="match")
    if not isinstance(rules, list) or not all(isinstance(rule, str) for rule in rules):
        raise ApiError(422, "rules must be a list of strings", field="rules")
    event_type = _event_type(body)
    if "payload" not in body and not event_type:
        raise ApiError(422, "give a payload or an event_type to test against", field="payload")
    payload = body["payload"] if "payload" in body else payload_templates.sample_payload(g.tenant.id, event_type)
    event = payload_templates.sample_event(event_type)
    outcome = filters.evaluate_rules(rules, match, filters.build_context(payload, event=event))
    answer = {
        "matched": outcome.matched,
        "decided_by": outcome.decided_by,
        "rules": [{"rule": r.rule, "matched": r.matched, "error": r.error} for r in outcome.results],
    }
    if event_type:
        recent = publishing.recent_events(g.tenant.id, [event_type])
        answer["recent"] = {"checked": len(recent), "matched": sum(_matches(rules, match, e) for e in recent)}
    return answer


@bp.get("/events/<int:event_id>/routing")
def event_routing(event_id: int):
    event = owned(Event, event_id, "event")
    return {"event_id": event.id, "type": event.type, "endpoints": publishing.explain(event)}


def _event_type(body: dict) -> str | None:
    """The optional ``event_type`` the previews take a sample from: a type, or a pattern like ``order.*``."""
    event_type = body.get("event_type")
    if event_type is None:
        return None
    return checked_text(event_type, "event_type", max_length=200) or None


def _matches(rules: list[str], match: str, event: Event) -> bool:
    context = publishing.filter_context(event.type, event.payload, uid=event.uid, created_at=event.created_at)
    return filters.evaluate_rules(rules, match, context).matched
