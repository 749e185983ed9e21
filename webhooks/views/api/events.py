"""Publishing events, and reading one back with its deliveries."""

from __future__ import annotations

from flask import current_app
from flask import g
from sqlalchemy import select

from webhooks import publishing
from webhooks import serialize
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.views import json_answer
from webhooks.views.api import bp
from webhooks.views.api import json_body
from webhooks.views.api import owned


@bp.post("/events")
def publish_events():
    body = json_body()
    if isinstance(body, list):
        limit = current_app.config["MAX_BULK_EVENTS"]
        if not body or len(body) > limit:
            raise ApiError(422, f"a bulk request carries 1 to {limit} events, not {len(body)}")
        results = publishing.accept(g.tenant.id, body, bulk=True)
        return json_answer({"data": [_accepted(result) for result in results]}, 202)
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be an event object or a list of them")
    result = publishing.accept(g.tenant.id, [body], bulk=False)[0]
    return json_answer(_accepted(result), 202)


@bp.get("/events/<int:event_id>")
def get_event(event_id: int):
    event = owned(Event, event_id, "event")
    deliveries = db.session.scalars(select(Delivery).where(Delivery.event_id == event.id).order_by(Delivery.id))
    return {**serialize.event(event), "deliveries": [serialize.delivery(d) for d in deliveries]}


def _accepted(result: publishing.Published) -> dict:
    return {
        "id": result.id,
        "webhook_id": result.uid,
        "type": result.type,
        "deliveries": result.deliveries,
        "duplicate": not result.created,
    }
