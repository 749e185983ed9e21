"""Delivery history (keyset-paginated, newest first), detail with attempts, redelivery."""

from __future__ import annotations

from flask import g
from flask import request
from sqlalchemy import select

from webhooks import endpoints
from webhooks import serialize
from webhooks.errors import ApiError
from webhooks.db import db
from webhooks.models import DELIVERY_STATUSES
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.views.api import bp
from webhooks.views.api import decode_cursor
from webhooks.views.api import encode_cursor
from webhooks.views.api import int_arg
from webhooks.views.api import owned
from webhooks.views.api import page_limit


@bp.get("/deliveries")
def list_deliveries():
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(DELIVERY_STATUSES)}", field="status")
    limit, cursor = page_limit(), decode_cursor()
    query = select(Delivery).where(Delivery.tenant_id == g.tenant.id)
    if status:
        query = query.where(Delivery.status == status)
    if (endpoint_id := int_arg("endpoint_id", Delivery.endpoint_id)) is not None:
        query = query.where(Delivery.endpoint_id == endpoint_id)
    if event_type := request.args.get("event_type"):
        if "\x00" in event_type:  # no type has one, and PostgreSQL cannot even compare it
            raise ApiError(400, "event_type must not contain NUL characters", field="event_type")
        query = query.where(Delivery.event_type == event_type)
    if (event_id := int_arg("event_id", Delivery.event_id)) is not None:
        query = query.where(Delivery.event_id == event_id)
    if cursor is not None:
        query = query.where(Delivery.id < cursor)
    items = list(db.session.scalars(query.order_by(Delivery.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return {"data": [serialize.delivery(item) for item in items[:limit]], "next_cursor": next_cursor}


@bp.get("/deliveries/<int:delivery_id>")
def get_delivery(delivery_id: int):
    delivery = owned(Delivery, delivery_id, "delivery")
    attempts = db.session.scalars(select(Attempt).where(Attempt.delivery_id == delivery.id).order_by(Attempt.number))
    return {**serialize.delivery(delivery), "attempt_log": [serialize.attempt(a) for a in attempts]}


@bp.post("/deliveries/<int:delivery_id>/redeliver")
def redeliver(delivery_id: int):
    delivery = endpoints.redeliver(owned(Delivery, delivery_id, "delivery"))
    return serialize.delivery(delivery), 202
