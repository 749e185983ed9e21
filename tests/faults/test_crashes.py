"""A worker killed with SIGKILL in the middle of a batch: its leases run out and
another worker delivers everything; the only repeats are what it had in flight."""

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
from webhooks.models import Event
from webhooks.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = 300
LEASE_SECONDS = 5


def in_flight_of(process) -> set[str]:
    """``webhook-id`` of the deliveries ``process`` holds a lease on."""
    owner = f"%:{process.pid}:%"
    query = select(Event.uid).join(Delivery, Delivery.event_id == Event.id)
    uids = set(db.session.scalars(query.where(Delivery.status == "delivering", Delivery.lease_owner.like(owner))))
    db.session.rollback()
    return uids


def statuses() -> dict[str, int]:
    counts = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    db.session.rollback()
    return counts


def test_killed_worker_loses_nothing_and_repeats_only_its_in_flight_deliveries(hub):
    receiver = CountingReceiver(delay=0.3)  # slow enough that a batch is always on the wire
    try:
        api = hub.api()
        for n in range(4):
            api.endpoint(f"{receiver.url}/{n}", event_types=[f"crash.{n}"])
        response = api.post("/api/v1/events", json=[{"type": f"crash.{i % 4}", "payload": {"i": i}} for i in range(EVENTS)])
        published = {event["webhook_id"] for event in response.get_json()["data"]}

        victim, survivor = hub.workers(["victim", "survivor"], lease_seconds=LEASE_SECONDS, delivery_concurrency=8)
        wait_until(lambda: receiver.total() >= 40, timeout=60)
        with hub.app.app_context():
            wait_until(lambda: in_flight_of(victim), timeout=30)
            victim.signal(signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
            held = in_flight_of(victim)
        assert held, "the victim died holding leases"

        receiver.wait_for_ids(published, timeout=90)
        with hub.app.app_context():
            wait_until(lambda: statuses() == {"succeeded": EVENTS}, timeout=30)
            attempts = db.session.scalar(select(func.count()).select_from(Attempt))
        repeats = {webhook_id for webhook_id, n in receiver.ids.items() if n > 1}
        assert repeats, "what the victim had on the wire is sent again"
        assert repeats <= held, "nothing but the victim's in-flight deliveries is repeated"
        assert max(receiver.ids.values()) == 2 and receiver.ids.keys() == published
        assert attempts == EVENTS, "the killed attempts were never recorded; each delivery has one attempt"
        assert "reclaimed" in survivor.log()
    finally:
        receiver.close()
