"""Endpoints: CRUD, secret rotation, test events, replay."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

from flask import g
from sqlalchemy import select

from webhooks import endpoints
from webhooks import serialize
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.models import Endpoint
from webhooks.views.api import bp
from webhooks.views.api import json_object
from webhooks.views.api import owned
from webhooks.views.api import tenant_row


@bp.post("/endpoints")
def create_endpoint():
    endpoint = endpoints.create(tenant_row(), json_object())
    return {**serialize.endpoint(endpoint), "secret": endpoint.secret}, 201


@bp.get("/endpoints")
def list_endpoints():
    items = db.session.scalars(select(Endpoint).where(Endpoint.tenant_id == g.tenant.id).order_by(Endpoint.id))
    return {"data": [serialize.endpoint(item) for item in items]}


@bp.get("/endpoints/<int:endpoint_id>")
def get_endpoint(endpoint_id: int):
    return serialize.endpoint(owned(Endpoint, endpoint_id, "endpoint"))


@bp.patch("/endpoints/<int:endpoint_id>")
def update_endpoint(endpoint_id: int):
    endpoint = owned(Endpoint, endpoint_id, "endpoint")
    offer = endpoints.apply(endpoint, json_object())
    db.session.commit()
    answer = serialize.endpoint(endpoint)
    if offer is not None:
        answer["replay_offer"] = offer
    return answer


@bp.delete("/endpoints/<int:endpoint_id>")
def delete_endpoint(endpoint_id: int):
    db.session.delete(owned(Endpoint, endpoint_id, "endpoint"))
    db.session.commit()
    return "", 204


@bp.post("/endpoints/<int:endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: int):
    endpoint = owned(Endpoint, endpoint_id, "endpoint")
    secret = endpoints.rotate_secret(endpoint)
    return {**serialize.endpoint(endpoint), "secret": secret}


@bp.post("/endpoints/<int:endpoint_id>/test")
def test_endpoint(endpoint_id: int):
    published = endpoints.send_test(owned(Endpoint, endpoint_id, "endpoint"))
    return {"id": published.id, "webhook_id": published.uid, "deliveries": published.deliveries}, 202


@bp.post("/endpoints/<int:endpoint_id>/replay")
def replay(endpoint_id: int):
    endpoint = owned(Endpoint, endpoint_id, "endpoint")
    body = json_object(required=False)
    count = endpoints.replay(
        endpoint, status=body.get("status", "failed"), since=_time(body, "since"), until=_time(body, "until")
    )
    return {"redelivered": count}, 202


def _time(body: dict, name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, f"{name} must be an ISO 8601 timestamp", field=name) from None
    if parsed.tzinfo is None:
        raise ApiError(422, f"{name} needs a timezone, e.g. 2026-01-31T12:00:00Z", field=name)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before the year 1 in UTC
        raise ApiError(422, f"{name} is out of range", field=name) from None
