"""Retention: history older than ``WEBHOOKS_RETENTION_DAYS`` is deleted, a small batch at a time.

Every scheduler runs the job; runs in several processes at once only find
less to delete. Each batch is one short transaction, so deliveries never wait
long behind it (on SQLite the write lock is held for one batch at a time).
Nothing unfinished goes: an event stays while one of its deliveries is pending
or being delivered, and an inbound request stays until it has been processed.

Old rows are found by walking the primary key from the oldest: ids grow with
time, so the walk stops at the first younger row and never scans the rest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta

from flask import Flask
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import select

from webhooks import health
from webhooks import ratelimit
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import FAILED
from webhooks.models import SUCCEEDED
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest
from webhooks.scheduler import periodic

log = logging.getLogger("webhooks.retention")

BATCH = 500
RUN_EVERY = 600.0
FINISHED_DELIVERIES = (SUCCEEDED, FAILED)
UNFINISHED_INBOUND = ("received", "processing")


@periodic("retention", RUN_EVERY)
def run(app: Flask) -> None:
    """The scheduled job."""
    purge(app.config["RETENTION_DAYS"])


def purge(days: float, *, now: datetime | None = None, batch: int = BATCH) -> Counter:
    """Delete what is older than ``days``; return how many rows went, per table."""
    cutoff = (now or now_utc()) - timedelta(days=days)
    deleted = Counter()
    for ids in old_ids(Event, cutoff, batch):
        deleted += purge_events(ids)
    for ids in old_ids(InboundRequest, cutoff, batch):
        deleted += purge_inbound(ids)
    deleted["heartbeats"] = health.prune_heartbeats(now)
    deleted["rate_counters"] = ratelimit.prune()
    db.session.commit()
    if any(deleted.values()):
        log.info("retention deleted %s", " ".join(f"{table}={n}" for table, n in sorted(deleted.items()) if n))
    return deleted


def old_ids(model, cutoff: datetime, batch: int) -> Iterator[list[int]]:
    """Batches of ids of ``model`` rows created before ``cutoff``, oldest first.

    A row that must stay (unfinished) is skipped by the walk, so it cannot
    block the rows behind it.
    """
    after = 0
    while True:
        rows = db.session.execute(
            select(model.id, model.created_at).where(model.id > after).order_by(model.id).limit(batch)
        ).all()
        db.session.rollback()  # no snapshot held between batches
        old = [row.id for row in rows if row.created_at < cutoff]
        if old:
            yield old
        if len(old) < len(rows) or len(rows) < batch:
            return
        after = rows[-1].id


def purge_events(ids: list[int]) -> Counter:
    """Delete these events with their deliveries and attempts, unless a delivery is unfinished; commit."""
    finished = select(Delivery.id).where(Delivery.event_id.in_(ids), Delivery.status.in_(FINISHED_DELIVERIES))
    attempts = _delete(delete(Attempt).where(Attempt.delivery_id.in_(finished)))
    # The status is checked again by the DELETE itself: a redelivery that started
    # since the walk keeps its delivery, and then its event.
    deliveries = _delete(delete(Delivery).where(Delivery.event_id.in_(ids), Delivery.status.in_(FINISHED_DELIVERIES)))
    events = _delete(delete(Event).where(Event.id.in_(ids), ~exists().where(Delivery.event_id == Event.id)))
    db.session.commit()
    return Counter(attempts=attempts, deliveries=deliveries, events=events)


def purge_inbound(ids: list[int]) -> Counter:
    """Delete these inbound requests with their processing attempts, unless still to be processed; commit."""
    done = select(InboundRequest.id).where(InboundRequest.id.in_(ids), InboundRequest.status.not_in(UNFINISHED_INBOUND))
    attempts = _delete(delete(InboundAttempt).where(InboundAttempt.request_id.in_(done)))
    requests = _delete(delete(InboundRequest).where(InboundRequest.id.in_(done)))
    db.session.commit()
    return Counter(inbound_attempts=attempts, inbound_requests=requests)


def _delete(statement) -> int:
    """Run a bulk DELETE as plain SQL (no ORM bookkeeping of the deleted rows); return the row count."""
    return db.session.execute(statement.execution_options(synchronize_session=False)).rowcount
