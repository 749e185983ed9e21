"""Sources (where providers post) and what they received: CRUD, the inbound log, reprocessing."""

from __future__ import annotations

from flask import g
from flask import request
from sqlalchemy import select

from webhooks import inbound
from webhooks import serialize
from webhooks import sources
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest
from webhooks.models import Source
from webhooks.views.api import bp
from webhooks.views.api import decode_cursor
from webhooks.views.api import encode_cursor
from webhooks.views.api import json_object
from webhooks.views.api import owned
from webhooks.views.api import page_limit
from webhooks.views.api import tenant_row


@bp.post("/sources")
def create_source():
    source = sources.create(tenant_row(), json_object())
    # The only answer that shows the secrets in full.
    return {**sources.serialize(source), "secrets": source.secrets}, 201


@bp.get("/sources")
def list_sources():
    items = db.session.scalars(select(Source).where(Source.tenant_id == g.tenant.id).order_by(Source.id))
    return {"data": [sources.serialize(item) for item in items]}


@bp.get("/sources/<int:source_id>")
def get_source(source_id: int):
    return sources.serialize(owned(Source, source_id, "source"))


@bp.patch("/sources/<int:source_id>")
def update_source(source_id: int):
    source = owned(Source, source_id, "source")
    sources.apply(source, json_object())
    sources.save(source)
    return sources.serialize(source)


@bp.delete("/sources/<int:source_id>")
def delete_source(source_id: int):
    sources.delete(owned(Source, source_id, "source"))
    return "", 204


@bp.get("/inbound")
def list_inbound():
    status = request.args.get("status") or None
    if status is not None and status not in inbound.STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(inbound.STATUSES)}", field="status")
    limit, cursor = page_limit(), decode_cursor()
    query = select(InboundRequest).where(InboundRequest.tenant_id == g.tenant.id)
    if reference := request.args.get("source"):
        source = sources.by_reference(g.tenant.id, reference)
        if source is None:
            raise ApiError(404, f"no source {reference!r}", field="source")
        query = query.where(InboundRequest.source_id == source.id)
    if status:
        query = query.where(InboundRequest.status == status)
    if cursor is not None:
        query = query.where(InboundRequest.id < cursor)
    items = list(db.session.scalars(query.order_by(InboundRequest.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return {"data": [serialize.inbound_request(item) for item in items[:limit]], "next_cursor": next_cursor}


@bp.get("/inbound/<int:request_id>")
def get_inbound(request_id: int):
    item = owned(InboundRequest, request_id, "inbound request")
    attempts = db.session.scalars(
        select(InboundAttempt).where(InboundAttempt.request_id == item.id).order_by(InboundAttempt.id)
    )
    return serialize.inbound_detail(item, list(attempts))


@bp.post("/inbound/<int:request_id>/reprocess")
def reprocess_inbound(request_id: int):
    item = inbound.reprocess(owned(InboundRequest, request_id, "inbound request"))
    return serialize.inbound_request(item), 202
