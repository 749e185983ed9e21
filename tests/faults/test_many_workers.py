"""Four worker processes sweep one PostgreSQL database: every event arrives, none twice."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func
from sqlalchemy import select

from processes import counting_receiver  # noqa: F401  (fixture)
from processes import hub  # noqa: F401  (fixture)
from webhooks.db import db
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = 10_000
ENDPOINTS = 10
WORKERS = 4


def test_four_workers_deliver_every_event_exactly_once(hub, counting_receiver):
    api = hub.api()
    for n in range(ENDPOINTS):
        api.endpoint(f"{counting_receiver.url}/{n}", event_types=[f"load.{n}"])
    published = set()
    for start in range(0, EVENTS, 1000):
        items = [{"type": f"load.{i % ENDPOINTS}", "payload": {"i": i}} for i in range(start, start + 1000)]
        response = api.post("/api/v1/events", json=items)
        assert response.status_code == 202
        published |= {event["webhook_id"] for event in response.get_json()["data"]}
    assert len(published) == EVENTS

    started = time.monotonic()
    workers = hub.workers([f"worker-{n}" for n in range(WORKERS)], delivery_concurrency=8)
    counting_receiver.wait_for_ids(published, timeout=240)  # a bound for 2 busy cores, not a target
    elapsed = time.monotonic() - started
    with hub.app.app_context():
        wait_until(lambda: succeeded() == EVENTS, timeout=30)

    repeats = {webhook_id: n for webhook_id, n in counting_receiver.ids.items() if n > 1}
    assert repeats == {}, f"{len(repeats)} events arrived more than once"
    assert counting_receiver.ids.keys() == published
    with hub.app.app_context():
        statuses = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        assert statuses == {"succeeded": EVENTS}
        assert db.session.scalar(select(func.count()).select_from(Attempt)) == EVENTS
    shares = [worker.log().count("attempt delivery=") for worker in workers]
    assert sum(shares) == EVENTS and all(shares), f"every worker takes part: {shares}"
    print(f"\n{EVENTS} deliveries by {WORKERS} worker processes in {elapsed:.0f} s, shares {shares}")  # with -s


def succeeded() -> int:
    count = db.session.scalar(select(func.count()).where(Delivery.status == "succeeded"))
    db.session.rollback()
    return count
