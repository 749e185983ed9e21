"""Delivery history and the inbound request log for the dashboard: keyset pages
that stay fast at millions of rows.

Every predicate is served by an index: the tenant alone or with the status
or the event type, the endpoint (each ``(..., id)``), or the event. Time ranges
become id ranges: deliveries are inserted in the same transaction as their
event, so ids grow with time, and the first delivery after an instant is
found through the index on ``events.created_at``. Pages are ``id < before``,
never ``OFFSET``, and nothing counts the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from webhooks.db import db
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import Event
from webhooks.models import InboundRequest

PAGE = 50


@dataclass(frozen=True)
class Filters:
    """What the person narrowed the history to; every field is optional."""

    status: str | None = None
    endpoint_id: int | None = None
    event_type: str | None = None
    event: str | None = None  # a numeric event id or a ``msg_...`` webhook id
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    """Deliveries of one page, and the ``before`` of the next."""

    deliveries: list[Delivery]
    older: int | None  # the ``before`` of the next page, None on the last one


def first_delivery_id_since(moment: datetime) -> int | None:
    """The id of the first delivery created at or after ``moment``; None when there is none.

    Two index lookups: the first event at or after ``moment`` (``events.created_at``),
    then the first delivery of that or a later event (``deliveries.event_id``).
    """
    event_id = db.session.scalar(
        select(Event.id).where(Event.created_at >= moment).order_by(Event.created_at, Event.id).limit(1)
    )
    if event_id is None:
        return None
    return db.session.scalar(
        select(Delivery.id).where(Delivery.event_id >= event_id).order_by(Delivery.event_id, Delivery.id).limit(1)
    )


def event_id_for(tenant_id: int, reference: str) -> int | None:
    """The tenant's event named by a numeric id or a ``msg_...`` webhook id; None when unknown."""
    reference = reference.strip()
    if reference.isdigit():
        query = select(Event.id).where(Event.id == int(reference))
    else:
        query = select(Event.id).where(Event.uid == reference)
    return db.session.scalar(query.where(Event.tenant_id == tenant_id))


def conditions(tenant_id: int, filters: Filters) -> list | None:
    """The WHERE clause for ``filters``, or None when it can match nothing.

    An endpoint or an event of the tenant already pins the tenant, so the
    tenant is left out of the clause then: the planner takes the narrow
    ``(endpoint_id, id)`` or ``event_id`` index instead of walking the
    tenant's whole history.
    """
    where = []
    if filters.endpoint_id is not None:
        if db.session.scalar(select(Endpoint.tenant_id).where(Endpoint.id == filters.endpoint_id)) != tenant_id:
            return None
        where.append(Delivery.endpoint_id == filters.endpoint_id)
    if filters.event:
        event_id = event_id_for(tenant_id, filters.event)
        if event_id is None:
            return None
        where.append(Delivery.event_id == event_id)
    if not where:
        where.append(Delivery.tenant_id == tenant_id)
    if filters.status:
        where.append(Delivery.status == filters.status)
    if filters.event_type:
        where.append(Delivery.event_type == filters.event_type)
    if filters.since is not None:
        first = first_delivery_id_since(filters.since)
        if first is None:
            return None
        where.append(Delivery.id >= first)
    if filters.until is not None:
        first_after = first_delivery_id_since(filters.until)
        if first_after is not None:
            where.append(Delivery.id < first_after)
    return where


def page(tenant_id: int, filters: Filters, *, before: int | None = None, limit: int = PAGE) -> Page:
    """One page of deliveries, newest first, older than ``before``."""
    where = conditions(tenant_id, filters)
    if where is None:
        return Page([], None)
    if before is not None:
        where.append(Delivery.id < before)
    rows = list(db.session.scalars(select(Delivery).where(*where).order_by(Delivery.id.desc()).limit(limit + 1)))
    older = rows[limit - 1].id if len(rows) > limit else None
    return Page(rows[:limit], older)


def newer(tenant_id: int, filters: Filters, after: int, *, limit: int = PAGE) -> list[Delivery]:
    """Deliveries created since the page was drawn (``id > after``), newest first, for live updates."""
    where = conditions(tenant_id, filters)
    if where is None:
        return []
    query = select(Delivery).where(*where, Delivery.id > after).order_by(Delivery.id.desc()).limit(limit)
    return list(db.session.scalars(query))


def recent(endpoint_id: int, limit: int = 20) -> list[Delivery]:
    """An endpoint's latest deliveries, for its detail page."""
    query = select(Delivery).where(Delivery.endpoint_id == endpoint_id).order_by(Delivery.id.desc()).limit(limit)
    return list(db.session.scalars(query))


@dataclass(frozen=True)
class InboundPage:
    """Received requests of one page, and the ``before`` of the next."""

    requests: list[InboundRequest]
    older: int | None


def inbound_page(
    tenant_id: int, *, source_id: int | None = None, status: str | None = None, before: int | None = None, limit: int = PAGE
) -> InboundPage:
    """One page of received requests, newest first, through ``(tenant_id, id)`` or ``(source_id, id)``.

    ``source_id`` must be one of the tenant's sources (the caller looked it up).
    """
    where = inbound_conditions(tenant_id, source_id, status)
    if before is not None:
        where.append(InboundRequest.id < before)
    query = select(InboundRequest).where(*where).order_by(InboundRequest.id.desc()).limit(limit + 1)
    rows = list(db.session.scalars(query))
    return InboundPage(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


def inbound_newer(
    tenant_id: int, *, source_id: int | None = None, status: str | None = None, after: int, limit: int = PAGE
) -> list[InboundRequest]:
    """Requests received since the log was drawn (``id > after``), newest first, for live updates."""
    where = inbound_conditions(tenant_id, source_id, status)
    query = select(InboundRequest).where(*where, InboundRequest.id > after).order_by(InboundRequest.id.desc())
    return list(db.session.scalars(query.limit(limit)))


def inbound_conditions(tenant_id: int, source_id: int | None, status: str | None) -> list:
    """The log's filters; a source (one of the tenant's, looked up by the caller) narrows to its index."""
    where = [InboundRequest.source_id == source_id] if source_id is not None else [InboundRequest.tenant_id == tenant_id]
    if status:
        where.append(InboundRequest.status == status)
    return where
