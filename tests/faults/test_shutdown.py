"""SIGTERM to gunicorn: its workers stop claiming, finish what is on the wire,
release what never started, and exit cleanly; nothing stays leased by the dead."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func
from sqlalchemy import select

from processes import CountingReceiver
from processes import hub  # noqa: F401  (fixture)
from webhooks.db import db
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = 200


def leases() -> dict[int, str]:
    """Deliveries under a lease: id -> owning process id."""
    rows = db.session.execute(select(Delivery.id, Delivery.lease_owner).where(Delivery.status == "delivering")).all()
    db.session.rollback()
    return {delivery_id: owner.split(":")[1] for delivery_id, owner in rows}


def outcomes(ids) -> set[tuple[str, int]]:
    rows = db.session.execute(select(Delivery.status, Delivery.attempts).where(Delivery.id.in_(ids))).all()
    db.session.rollback()
    return {tuple(row) for row in rows}


def statuses() -> dict[str, int]:
    counts = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    db.session.rollback()
    return counts


def test_sigterm_finishes_or_releases_in_flight_deliveries(hub):
    receiver = CountingReceiver(delay=0.5)
    try:
        api = hub.api()
        for n in range(2):
            api.endpoint(f"{receiver.url}/{n}", event_types=[f"stop.{n}"])
        response = api.post("/api/v1/events", json=[{"type": f"stop.{i % 2}", "payload": {"i": i}} for i in range(EVENTS)])
        published = {event["webhook_id"] for event in response.get_json()["data"]}

        # A long lease: anything left leased after the shutdown would stay stuck for a minute.
        web = hub.gunicorn("web", workers=2, lease_seconds=120, delivery_concurrency=4)
        with hub.app.app_context():
            held = wait_until(lambda: len(set(leases().values())) == 2 and leases(), timeout=60)
        web.signal(signal.SIGTERM)  # both workers have deliveries on the wire
        assert web.wait(60) == 0, web.log()[-3000:]

        with hub.app.app_context():
            assert leases() == {}, "no delivery is left leased by a process that is gone"
            assert outcomes(held) <= {("succeeded", 1), ("pending", 0)}, "each finished, or went back unspent"
            assert ("succeeded", 1) in outcomes(held)
        log = web.log()
        assert log.count("Worker exiting") == 2 and "Traceback" not in log
        assert "still in flight" not in log

        hub.worker("after", lease_seconds=120)
        receiver.wait_for_ids(published, timeout=90)
        with hub.app.app_context():
            wait_until(lambda: statuses() == {"succeeded": EVENTS}, timeout=30)
            attempts = db.session.scalar(select(func.count()).select_from(Attempt))
        assert max(receiver.ids.values()) == 1, "a graceful stop repeats nothing"
        assert attempts == EVENTS
    finally:
        receiver.close()
