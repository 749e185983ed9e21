"""Publishing: an event comes in, deliveries go out.

``publish`` is the Python API host applications call; the HTTP API calls the
same function. It validates the event against the tenant's catalog, honours
idempotency keys, and creates one pending delivery per endpoint that
subscribes to the type and whose filter matches, all in one transaction.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from webhooks import catalog
from webhooks import filters
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.errors import ApiError
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import Event
from webhooks.models import Tenant
from webhooks.models import new_event_uid

EVENT_TYPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")


@dataclass(frozen=True)
class Published:
    """A stored event and how many deliveries it made; ``created`` is False for an idempotent repeat."""

    id: int
    uid: str
    type: str
    created_at: datetime
    deliveries: int
    created: bool


def subscribes(patterns: Sequence[str], event_type: str) -> bool:
    """True when an endpoint with these type patterns wants ``event_type``.

    No patterns means every type; ``order.*`` matches ``order.created`` and
    ``order.item.added``; ``*`` matches everything.
    """
    return not patterns or any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def filter_context(event_type: str, payload: Any, *, uid: str, created_at) -> dict:
    """What filter rules see for an outbound event: the payload plus ``event``."""
    event = {"id": uid, "type": event_type, "created_at": created_at.isoformat()}
    return filters.build_context(payload, event=event)


def wants(endpoint: Endpoint, event_type: str, context: dict) -> bool:
    """Whether ``endpoint`` gets a delivery: enabled, subscribed, and its filter matches."""
    if not endpoint.enabled or not subscribes(endpoint.event_types or [], event_type):
        return False
    return filters.evaluate_rules(endpoint.filter_rules or [], endpoint.filter_match, context).matched


def publish(tenant: Tenant, type: str, payload: Any, idempotency_key: str | None = None) -> Published:
    """Publish one event for ``tenant`` and commit.

    :param tenant: The tenant the event belongs to.
    :param type: The event type, such as ``order.created``.
    :param payload: Any JSON value; usually an object.
    :param idempotency_key: Repeating a key within 24 h returns the first event and creates nothing.
    :raises ApiError: 413 for a payload over ``WEBHOOKS_MAX_EVENT_BYTES``, 422 for an invalid type or payload.
    """
    item = {"type": type, "payload": payload, "idempotency_key": idempotency_key}
    return publish_many(tenant, [item], bulk=False)[0]


def publish_many(tenant: Tenant, items: Sequence[dict], *, bulk: bool = True) -> list[Published]:
    """Publish a batch in one transaction: all of it is stored, or none of it.

    Errors in a ``bulk`` request name the item, as in ``[3].type``.

    Two requests racing with the same idempotency key meet the unique index;
    the loser rolls back and, on its second pass, finds the winner's event.
    """
    known = catalog.entries(tenant.id)
    checked = [check_item(tenant, known, item, index if bulk else None) for index, item in enumerate(items)]
    try:
        results = _store(tenant, checked)
    except IntegrityError:
        db.session.rollback()
        results = _store(tenant, checked)
    db.session.commit()
    return results


def check_item(tenant: Tenant, known: dict, item: Any, index: int | None) -> dict:
    """Validate one event of a request; errors name the field (``[3].type`` in a batch)."""
    where = "" if index is None else f"[{index}]."
    if not isinstance(item, dict):
        raise ApiError(422, "each event must be a JSON object", field=where.rstrip(".") or None)
    event_type, payload, key = item.get("type"), item.get("payload"), item.get("idempotency_key")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise ApiError(422, "type must be a name like 'order.created' (letters, digits, _ . : -)", field=f"{where}type")
    if "payload" not in item:
        raise ApiError(422, "payload is required", field=f"{where}payload")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 200 or "\x00" in key):
        raise ApiError(422, "idempotency_key must be a string of 1 to 200 characters, without NUL", field=f"{where}idempotency_key")
    size = len(json.dumps(payload, separators=(",", ":")))
    if size > current_app.config["MAX_EVENT_BYTES"]:
        raise ApiError(413, f"payload is {size} bytes; the limit is {current_app.config['MAX_EVENT_BYTES']}")
    catalog.check_event(tenant, known, event_type, payload, field=f"{where}payload")
    return {"type": event_type, "payload": payload, "idempotency_key": key}


def _store(tenant: Tenant, items: list[dict]) -> list[Published]:
    now = now_utc()
    existing = _existing_events(tenant, [item["idempotency_key"] for item in items if item["idempotency_key"]], now)
    rows: list[dict] = []
    plan: list[tuple[str, Any]] = []  # per item: ("existing", Event) | ("new" | "repeat", row index)
    row_of_key: dict[str, int] = {}
    for item in items:
        key = item["idempotency_key"]
        if key in existing:
            plan.append(("existing", existing[key]))
        elif key and key in row_of_key:
            plan.append(("repeat", row_of_key[key]))  # the same key twice in one batch
        else:
            if key:
                row_of_key[key] = len(rows)
            plan.append(("new", len(rows)))
            rows.append(_event_row(tenant, item, now))
    ids = list(db.session.scalars(insert(Event).returning(Event.id, sort_by_parameter_order=True), rows)) if rows else []
    counts = _fan_out(tenant, rows, ids, now)
    results = []
    for kind, ref in plan:
        if kind == "existing":
            results.append(Published(ref.id, ref.uid, ref.type, ref.created_at, _delivery_count(ref.id), created=False))
        else:
            row = rows[ref]
            results.append(Published(ids[ref], row["uid"], row["type"], now, counts[ref], created=kind == "new"))
    return results


def _event_row(tenant: Tenant, item: dict, now: datetime) -> dict:
    return {
        "uid": new_event_uid(),
        "tenant_id": tenant.id,
        "type": item["type"],
        "payload": item["payload"],
        "idempotency_key": item["idempotency_key"],
        "created_at": now,
    }


def _fan_out(tenant: Tenant, rows: list[dict], ids: list[int], now: datetime) -> list[int]:
    """Insert one pending delivery per interested endpoint; return the count per event."""
    if not rows:
        return []
    endpoints = list(db.session.scalars(select(Endpoint).where(Endpoint.tenant_id == tenant.id, Endpoint.enabled)))
    deliveries, counts = [], []
    for row, event_id in zip(rows, ids):
        context = filter_context(row["type"], row["payload"], uid=row["uid"], created_at=now)
        targets = [endpoint.id for endpoint in endpoints if wants(endpoint, row["type"], context)]
        counts.append(len(targets))
        deliveries += [
            {
                "tenant_id": tenant.id,
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "event_type": row["type"],
                "status": "pending",
                "next_attempt_at": now,
                "next_trigger": "scheduled",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for endpoint_id in targets
        ]
    if deliveries:
        db.session.execute(insert(Delivery), deliveries)
    return counts


def _existing_events(tenant: Tenant, keys: list[str], now: datetime) -> dict[str, Event]:
    """Events already published under these keys within the idempotency window.

    A key older than the window is released (set to NULL on its old event), so
    the unique index admits the new event that reuses it.
    """
    if not keys:
        return {}
    window = now - timedelta(hours=current_app.config["IDEMPOTENCY_HOURS"])
    found = db.session.scalars(select(Event).where(Event.tenant_id == tenant.id, Event.idempotency_key.in_(set(keys))))
    live = {}
    for event in found:
        if event.created_at >= window:
            live[event.idempotency_key] = event
        else:
            db.session.execute(update(Event).where(Event.id == event.id).values(idempotency_key=None))
    return live


def _delivery_count(event_id: int) -> int:
    return db.session.scalar(select(db.func.count()).select_from(Delivery).where(Delivery.event_id == event_id))


def direct_event(endpoint: Endpoint, event_type: str, payload: Any) -> Published:
    """An event delivered to one endpoint only (test events), bypassing subscriptions and filters."""
    now = now_utc()
    event = Event(tenant_id=endpoint.tenant_id, type=event_type, payload=payload, created_at=now)
    db.session.add(event)
    db.session.flush()
    db.session.add(
        Delivery(
            tenant_id=endpoint.tenant_id,
            event_id=event.id,
            endpoint_id=endpoint.id,
            event_type=event_type,
            next_attempt_at=now,
        )
    )
    db.session.commit()
    return Published(event.id, event.uid, event.type, event.created_at, 1, created=True)


def explain(event: Event) -> list[dict]:
    """Per endpoint of the tenant: would it get this event now, and which rule decided.

    Evaluated against the endpoints as they are now, which is what a person
    changing a filter wants to see.
    """
    context = filter_context(event.type, event.payload, uid=event.uid, created_at=event.created_at)
    endpoints = db.session.scalars(select(Endpoint).where(Endpoint.tenant_id == event.tenant_id).order_by(Endpoint.id))
    return [_explain_one(endpoint, event.type, context) for endpoint in endpoints]


def _explain_one(endpoint: Endpoint, event_type: str, context: dict) -> dict:
    subscribed = subscribes(endpoint.event_types or [], event_type)
    outcome = filters.evaluate_rules(endpoint.filter_rules or [], endpoint.filter_match, context)
    if not endpoint.enabled:
        reason = "endpoint is disabled"
    elif not subscribed:
        reason = f"not subscribed to {event_type}"
    elif outcome.decided_by is None:
        reason = "subscribed; no filter rules"
    else:
        rule = outcome.results[outcome.decided_by]
        verb = "matched" if rule.matched else "did not match"
        reason = f"rule {rule.index + 1} {verb}: {rule.rule}" + (f" ({rule.error})" if rule.error else "")
    return {
        "endpoint_id": endpoint.id,
        "url": endpoint.url,
        "matched": endpoint.enabled and subscribed and outcome.matched,
        "enabled": endpoint.enabled,
        "subscribed": subscribed,
        "filter": {
            "match": endpoint.filter_match,
            "matched": outcome.matched,
            "decided_by": outcome.decided_by,
            "rules": [{"rule": r.rule, "matched": r.matched, "error": r.error} for r in outcome.results],
        },
        "reason": reason,
    }


def recent_events(tenant_id: int, patterns: Sequence[str], limit: int = 100) -> list[Event]:
    """The tenant's latest events whose type matches any of ``patterns`` (all types when empty)."""
    query = select(Event).where(Event.tenant_id == tenant_id).order_by(Event.id.desc())
    exact = [p for p in patterns if not any(c in p for c in "*?[")]
    if patterns and len(exact) == len(patterns):
        return list(db.session.scalars(query.where(Event.type.in_(exact)).limit(limit)))
    if not patterns:
        return list(db.session.scalars(query.limit(limit)))
    # Wildcards: scan recent history in pages until enough match, bounded to keep previews fast.
    found: list[Event] = []
    for event in db.session.scalars(query.limit(limit * 20)):
        if subscribes(patterns, event.type):
            found.append(event)
            if len(found) == limit:
                break
    return found
