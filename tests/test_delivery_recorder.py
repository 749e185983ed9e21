"""Outcomes written together: one transaction for many attempts, each still fenced on its lease."""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook

from webhooks import claims
from webhooks import delivery as delivering
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.testing import wait_until


def claimed_jobs(app, api, receiver, count: int, owner: str = "w") -> list[delivering.Job]:
    api.endpoint(receiver.url)
    for n in range(count):
        api.publish(payload={"n": n})
    with app.app_context():
        ids = [delivery_id for delivery_id, _ in claims.claim_due(owner, count, lease_seconds=30)]
        jobs = delivering.to_jobs(delivering.select_jobs(ids, owner))
        db.session.commit()
        return jobs


def outcome_record(job, status="succeeded", code=200, owner="w") -> delivering.Record:
    outcome = delivering.Outcome(status, error=None if status == "succeeded" else f"HTTP {code}")
    exchange = delivering.egress.Exchange(status=code, duration_ms=3)
    return delivering.Record([job], owner, {}, [b"{}"], exchange, [outcome], None, now_utc())


def test_one_transaction_writes_only_the_outcomes_whose_lease_holds(app, api, receiver):
    kept, lost = claimed_jobs(app, api, receiver, 2)
    with app.app_context():
        db.session.query(Delivery).filter(Delivery.id == lost.delivery_id).update({"lease_owner": "other"})
        db.session.commit()
        delivering.write_records([outcome_record(kept), outcome_record(lost)])
        rows = {row.id: row for row in db.session.query(Delivery)}
        assert rows[kept.delivery_id].status == "succeeded" and rows[kept.delivery_id].lease_owner is None
        assert rows[lost.delivery_id].status == "delivering" and rows[lost.delivery_id].lease_owner == "other"
        assert db.session.query(Attempt).count() == 2, "both requests went out, so both are logged"


def test_circuit_breaker_counts_each_request_of_a_group_in_order(app, api, receiver):
    jobs = claimed_jobs(app, api, receiver, 4)
    with app.app_context():
        delivering.write_records([outcome_record(job, "pending", 500) for job in jobs[:2]])
        assert db.session.query(Endpoint).one().consecutive_failures == 2
        delivering.write_records([outcome_record(jobs[2], "pending", 500), outcome_record(jobs[3])])
        endpoint = db.session.query(Endpoint).one()
        assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None, "the last request succeeded"


def test_a_refused_record_does_not_lose_the_others(app, api, receiver):
    jobs = claimed_jobs(app, api, receiver, 3)
    recorder = delivering.Recorder(app, backlog=10)
    good = [outcome_record(job) for job in jobs]
    refused = delivering.Record(**{**good[0].__dict__, "sent_headers": {"x": object()}})  # not JSON: the insert fails
    try:
        for item in [good[0], refused, *good[1:]]:
            recorder.write(item)
        assert recorder.flush(10)
    finally:
        recorder.stop()
    with app.app_context():
        assert {row.status for row in db.session.query(Delivery)} == {"succeeded"}
        assert db.session.query(Attempt).count() == 3


def test_the_worker_waits_for_outcomes_before_it_counts_as_idle(app, api, receiver, drainer):
    api.endpoint(receiver.url)
    for n in range(12):
        api.publish(payload={"n": n})
    drainer.drain()
    with app.app_context():
        assert db.session.query(Delivery).filter(Delivery.status == "succeeded").count() == 12
        assert db.session.query(Attempt).count() == 12


def test_a_rotated_secret_signs_the_next_delivery(app, api, receiver, drainer):
    endpoint = api.endpoint(receiver.url)
    api.publish()
    drainer.drain()  # the old secret is now decrypted and cached
    with app.app_context():
        row = db.session.get(Endpoint, endpoint["id"])
        row.secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
        db.session.commit()
    api.publish()
    drainer.drain()
    request = wait_until(lambda: receiver.requests[1:] and receiver.requests[1])
    headers = {k.lower(): v for k, v in request.headers.items()}
    Webhook("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=").verify(request.body, headers)
