"""Leases: one winner per delivery, expired leases reclaimed, fenced outcomes."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from webhooks import claims
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Delivery
from webhooks.worker import Worker


def test_two_sweepers_send_each_delivery_once(app, api, receiver):
    api.endpoint(receiver.url)
    api.post("/api/v1/events", json=[{"type": "a", "payload": {"n": n}} for n in range(120)])
    workers = [Worker(app, concurrency=4, name=f"w{n}") for n in range(2)]
    barrier = threading.Barrier(2)

    def run(worker):
        barrier.wait()
        with app.app_context():
            for _ in range(200):
                started = worker.sweep(budget=0.5)
                worker.wait_idle(10)
                if not started:
                    break
            db.session.remove()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in workers:
        worker.stop(5)
    ids = Counter(r.headers["Webhook-Id"] for r in receiver.requests)
    assert len(ids) == 120 and set(ids.values()) == {1}
    with app.app_context():
        statuses = Counter(status for (status,) in db.session.query(Delivery.status))
    assert statuses == {"succeeded": 120}


def test_claims_are_exclusive(app, api, receiver):
    api.endpoint(receiver.url)
    api.post("/api/v1/events", json=[{"type": "a", "payload": {}} for _ in range(10)])
    with app.app_context():
        first = claims.claim_due("one", 6, lease_seconds=30)
        second = claims.claim_due("two", 6, lease_seconds=30)
        third = claims.claim_due("three", 6, lease_seconds=30)
    assert len(first) == 6 and len(second) == 4 and third == []
    assert not {i for i, _ in first} & {i for i, _ in second}


def test_a_claim_still_open_does_not_hide_the_rest_of_the_backlog(app, api, receiver):
    """Two sweepers claiming at once both get work: the second skips what the first is taking."""
    api.endpoint(receiver.url)
    api.post("/api/v1/events", json=[{"type": "a", "payload": {"n": n}} for n in range(10)])  # two claims' worth
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite runs one claim at a time (a single writer): no claim is ever open beside another")
        _, first = claims.take_work("one", 5, 5, lease_seconds=30)  # claimed, not yet committed
        outcome = {}

        def second_sweeper():
            with app.app_context():
                outcome["claimed"] = claims.claim_due("two", 5, lease_seconds=30)
                db.session.remove()

        thread = threading.Thread(target=second_sweeper)
        thread.start()
        thread.join(10)
        db.session.commit()
        db.session.remove()
    assert len(first) == 5 and len(outcome["claimed"]) == 5
    assert not {i for i, _ in first} & {i for i, _ in outcome["claimed"]}


def test_expired_lease_is_reclaimed_and_delivered(app, api, receiver, drainer):
    """A worker that crashed mid-delivery leaves a lease; once it expires, another worker sends."""
    api.endpoint(receiver.url)
    api.publish()
    with app.app_context():
        [(delivery_id, _)] = claims.claim_due("crashed-worker", 10, lease_seconds=30)
        assert drainer.sweep() == 0, "a live lease is not claimed again"
        db.session.query(Delivery).update({"lease_expires_at": now_utc() - timedelta(seconds=1)})
        db.session.commit()
    drainer.worker._last_reclaim = 0
    drainer.drain()
    assert len(receiver.wait_for(1)) == 1
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "succeeded" and delivery.lease_owner is None


def test_lost_lease_does_not_overwrite_the_new_owner(app, api, receiver):
    from webhooks import delivery as delivering

    api.endpoint(receiver.url)
    api.publish()
    with app.app_context():
        [(delivery_id, _)] = claims.claim_due("old", 1, lease_seconds=30)
        [job] = delivering.to_jobs(delivering.select_jobs([delivery_id], "old"))
        db.session.query(Delivery).update({"lease_owner": "new"})
        db.session.commit()
        assert delivering.select_jobs([delivery_id], "old") == []
        exchange = delivering.egress.Exchange(status=200, duration_ms=5)
        delivering.record(job, "old", {}, b"{}", exchange, delivering.Outcome("succeeded"))
        delivery = db.session.get(Delivery, delivery_id)
        db.session.refresh(delivery)
        assert delivery.status == "delivering" and delivery.lease_owner == "new"
        assert len(delivery.attempt_list) == 1, "the attempt that happened is still recorded"


def test_release_returns_without_spending_an_attempt(app, api, receiver):
    api.endpoint(receiver.url)
    api.publish()
    with app.app_context():
        [(delivery_id, _)] = claims.claim_due("w", 1, lease_seconds=30)
        assert claims.release([delivery_id], "someone-else") == 0
        assert claims.release([delivery_id], "w") == 1
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "pending" and delivery.attempts == 0


def test_one_endpoint_cannot_take_every_slot(app, api, receiver):
    slow = api.endpoint(receiver.url + "/slow")
    api.post("/api/v1/events", json=[{"type": "a", "payload": {}} for _ in range(20)])
    other = api.endpoint(receiver.url + "/other")
    api.publish("b")
    with app.app_context():
        claimed = claims.claim_due("w", 4, lease_seconds=30, excluded=[slow["id"]], per_endpoint=3)
    assert [endpoint for _, endpoint in claimed] == [other["id"]]
