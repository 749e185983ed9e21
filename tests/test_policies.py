"""Delivery policies end to end: circuit breaker, disabling and the replay offer,
rate limits, ordered mode and batching, against loopback receivers with the real worker."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

from standardwebhooks.webhooks import Webhook
from werkzeug.wrappers import Response

from webhooks import claims
from webhooks import delivery as delivering
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.testing import Receiver
from webhooks.testing import wait_until


def pump(drainer, until, timeout: float = 15.0):
    """Sweep with the real worker, letting each sweep's attempts finish, until ``until()`` holds."""

    def done():
        drainer.sweep()
        drainer.worker.wait_idle(10)
        return until()

    return wait_until(done, timeout=timeout)


def deliveries(app) -> list[Delivery]:
    with app.app_context():
        rows = db.session.query(Delivery).order_by(Delivery.id).all()
        db.session.expunge_all()
        return rows


def attempt_count(app) -> int:
    with app.app_context():
        return db.session.query(Attempt).count()


def make_due(app, **changes) -> None:
    with app.app_context():
        db.session.query(Delivery).filter(Delivery.status == "pending").update({"next_attempt_at": now_utc(), **changes})
        db.session.commit()


def numbers(request) -> list[int]:
    """The ``n`` of each event a request carried; ``request`` is recorded or live."""
    body = json.loads(request.body if hasattr(request, "body") else request.get_data())
    return [item["data"]["n"] for item in body] if isinstance(body, list) else [body["data"]["n"]]


def publish_numbered(api, count: int) -> None:
    response = api.post("/api/v1/events", json=[{"type": "order.created", "payload": {"n": n}} for n in range(count)])
    assert response.status_code == 202


class Switch:
    """A receiver's answer that a test flips: 500 until ``healthy`` is set."""

    def __init__(self, delay: float = 0.0) -> None:
        self.healthy = False
        self.delay = delay

    def __call__(self, request):
        if self.delay:
            time.sleep(self.delay)  # a slow receiver: the worker claims while requests are on the wire
        return Response("ok") if self.healthy else Response("down", 500)


# -- circuit breaker -------------------------------------------------------------------------------


def test_open_circuit_holds_the_queue_then_probes_once(app, api, drainer):
    switch = Switch(delay=0.3)
    with Receiver(switch) as receiver:
        endpoint = api.endpoint(
            receiver.url, circuit_threshold=3, circuit_cooldown_seconds=1, backoff_seconds=1, max_attempts=10
        )
        publish_numbered(api, 8)
        drainer.drain()
        assert len(receiver.requests) == 3, "three failures open the circuit; the rest is not sent"
        circuit = api.get(f"/api/v1/endpoints/{endpoint['id']}").get_json()["circuit"]
        assert circuit["consecutive_failures"] == 3 and circuit["open_until"]
        waiting = [d for d in deliveries(app) if d.attempts == 0]
        assert len(waiting) == 5 and all(d.status == "pending" for d in waiting)
        assert attempt_count(app) == 3, "held deliveries spend no attempt"
        drainer.drain()
        assert len(receiver.requests) == 3, "nothing goes while the circuit is open"

        pump(drainer, lambda: len(receiver.requests) >= 4)
        drainer.drain()
        assert len(receiver.requests) == 4, "after the cool-down exactly one probe goes; it failed, the circuit reopened"

        switch.healthy = True
        pump(drainer, lambda: all(d.status == "succeeded" for d in deliveries(app)))
    assert len(receiver.requests) == 12  # 4 failures, then each of the 8 once
    assert sum(d.attempts for d in deliveries(app)) == 12
    circuit = api.get(f"/api/v1/endpoints/{endpoint['id']}").get_json()["circuit"]
    assert circuit == {"consecutive_failures": 0, "failing_since": None, "open_until": None}


def test_delivery_claimed_before_the_circuit_opened_waits_without_an_attempt(app, api, receiver, drainer):
    api.endpoint(receiver.url)
    api.publish()
    open_until = now_utc() + timedelta(seconds=60)
    with app.app_context():
        [(delivery_id, _)] = claims.claim_due("w", 5, lease_seconds=30)
        # Another worker's failure opens the circuit while this one holds the claim.
        db.session.query(Endpoint).update({"circuit_open_until": open_until, "consecutive_failures": 5})
        db.session.commit()
        rows = delivering.select_jobs([delivery_id], "w")
        db.session.commit()  # as the sweep does: the claim's transaction ends before anything is sent
        assert delivering.deliver_read(rows, "w", drainer.worker.settings) == {}
        held = db.session.get(Delivery, delivery_id)
        assert held.status == "pending" and held.attempts == 0 and held.lease_owner is None
        assert abs((held.next_attempt_at - open_until).total_seconds()) < 0.01
        assert db.session.query(Attempt).count() == 0
    assert receiver.requests == []


def test_half_open_probe_is_the_delivery_due_first(app, api, drainer):
    """A retry scheduled far ahead does not keep a recovered receiver waiting."""
    switch = Switch()
    with Receiver(switch) as receiver:
        api.endpoint(receiver.url, circuit_threshold=1, circuit_cooldown_seconds=1, backoff_seconds=3600)
        api.publish(payload={"n": 0})
        drainer.drain()
        assert len(receiver.requests) == 1
        api.publish(payload={"n": 1})
        switch.healthy = True
        pump(drainer, lambda: len(receiver.requests) >= 2)
    assert numbers(receiver.requests[1]) == [1]
    first, second = deliveries(app)
    assert first.status == "pending" and first.attempts == 1, "its retry keeps its own schedule"
    assert second.status == "succeeded"


def test_failing_too_long_disables_and_reenabling_offers_the_replay(app, api, drainer):
    switch = Switch()
    with Receiver(switch) as receiver:
        endpoint = api.endpoint(
            receiver.url, disable_after_hours=1, backoff_seconds=1, max_attempts=10, circuit_threshold=100
        )
        publish_numbered(api, 3)
        drainer.drain()
        assert len(receiver.requests) == 3
        with app.app_context():
            db.session.query(Endpoint).update({"failing_since": now_utc() - timedelta(hours=2)})
            db.session.commit()
        make_due(app)
        drainer.drain()
        fetched = api.get(f"/api/v1/endpoints/{endpoint['id']}").get_json()
        assert fetched["enabled"] is False
        assert fetched["disabled_reason"].startswith("failing since") and "over 1 h" in fetched["disabled_reason"]
        assert fetched["disabled_at"]
        sent = len(receiver.requests)
        make_due(app)
        drainer.drain()
        assert len(receiver.requests) == sent, "a disabled endpoint is not called"
        assert [d.status for d in deliveries(app)] == ["failed"] * 3
        assert api.publish()["deliveries"] == 0

        switch.healthy = True
        answer = api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": True}).get_json()
        offer = answer["replay_offer"]
        assert offer["status"] == "failed" and offer["count"] == 3 and offer["since"]
        assert answer["enabled"] is True and answer["disabled_reason"] is None and answer["disabled_at"] is None
        assert answer["circuit"]["failing_since"] is None
        again = api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": True}).get_json()
        assert "replay_offer" not in again, "only re-enabling a disabled endpoint offers a replay"

        replay = api.post(f"/api/v1/endpoints/{endpoint['id']}/replay", json={"status": "failed", "since": offer["since"]})
        assert replay.get_json() == {"redelivered": 3}
        drainer.drain()
    assert [d.status for d in deliveries(app)] == ["succeeded"] * 3


def test_disabling_by_hand_offers_what_failed_meanwhile(app, api, drainer):
    with Receiver(lambda r: Response("no", 500) if numbers(r) == [0] else Response("ok")) as receiver:
        endpoint = api.endpoint(receiver.url, max_attempts=1)
        for n in range(2):
            api.publish(payload={"n": n})
            drainer.drain()  # 0 fails for good, 1 succeeds: the endpoint is healthy again
        api.publish(payload={"n": 2})
        disabled = api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False}).get_json()
        assert disabled["disabled_at"] and "replay_offer" not in disabled
        drainer.drain()
        assert len(receiver.requests) == 2
    assert [(d.status, d.last_error) for d in deliveries(app)] == [
        ("failed", "HTTP 500"),
        ("succeeded", None),
        ("failed", "endpoint disabled: by a user"),
    ]
    offer = api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": True}).get_json()["replay_offer"]
    assert offer["count"] == 1, "the failure from before the endpoint was disabled is not offered"
    replay = api.post(f"/api/v1/endpoints/{endpoint['id']}/replay", json={"since": offer["since"]}).get_json()
    assert replay == {"redelivered": 1}
    assert [d.status for d in deliveries(app)] == ["failed", "succeeded", "pending"]


# -- rate limit ------------------------------------------------------------------------------------


def test_rate_limit_spreads_requests_and_drops_none(app, api, receiver, drainer):
    api.endpoint(receiver.url, rate_limit={"max": 5, "per": "second"})
    publish_numbered(api, 20)
    pump(drainer, lambda: len(receiver.requests) >= 20, timeout=30)
    with app.app_context():
        starts = sorted(db.session.scalars(db.select(Attempt.started_at)))
    # No six attempts started within a second anywhere, give or take the moment between the
    # limiter's answer and the start of the send (exact at the limiter:
    # test_sliding_limit_never_exceeds_the_limit_in_any_span). Arrival times at the receiver
    # would add the network and the receiver's scheduling, which a loaded machine stretches.
    tightest = min((later - earlier).total_seconds() for earlier, later in zip(starts, starts[5:]))
    assert tightest >= 0.8, tightest
    assert (starts[-1] - starts[0]).total_seconds() >= 2.8
    assert sorted(n for r in receiver.requests for n in numbers(r)) == list(range(20))
    rows = deliveries(app)
    assert all(d.status == "succeeded" and d.attempts == 1 for d in rows)
    assert attempt_count(app) == 20, "waiting for the rate limit spent no attempt"


def test_sliding_limit_never_exceeds_the_limit_in_any_span(app):
    """Takes every 10 ms for 3 s of a made-up clock, across window edges: 5 per second, never 6."""
    from webhooks import ratelimit

    clock = [1_800_000_000.55]
    allowed = []
    with app.app_context():
        while clock[0] < 1_800_000_003.55:
            if ratelimit.take_sliding("endpoint:1", 5, "second", clock=lambda: clock[0]) is None:
                allowed.append(clock[0])
            db.session.commit()
            clock[0] += 0.01
    assert min(later - earlier for earlier, later in zip(allowed, allowed[5:])) >= 1.0 - 1e-6
    assert len(allowed) >= 13, "at most a tenth of the rate is given up: 5 per 1.1 s"


def test_delivery_over_the_rate_limit_waits_without_spending_an_attempt(app, api, receiver, drainer):
    api.endpoint(receiver.url, rate_limit={"max": 1, "per": "minute"})
    publish_numbered(api, 2)
    before = now_utc()
    drainer.drain()
    assert len(receiver.requests) == 1
    waiting = [d for d in deliveries(app) if d.status == "pending"]
    assert len(waiting) == 1 and waiting[0].attempts == 0 and waiting[0].last_error is None
    assert before < waiting[0].next_attempt_at <= before + timedelta(seconds=67)
    assert attempt_count(app) == 1


# -- ordered mode ----------------------------------------------------------------------------------


class Tracking:
    """Answers after a short pause, fails chosen events, and notes how many requests overlapped."""

    def __init__(self, failures: dict[int, int]) -> None:
        self.failures = dict(failures)
        self.in_flight = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        n = numbers(request)[0]
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.02)  # a receiver's work: long enough for a second request to overlap
        with self.lock:
            self.in_flight -= 1
            if self.failures.get(n, 0) > 0:
                self.failures[n] -= 1
                return Response("not yet", 500)
        return Response("ok")


def test_ordered_mode_sends_one_at_a_time_in_publish_order_even_through_retries(app, api, drainer):
    tracking = Tracking(failures={2: 2})
    with Receiver(tracking) as receiver:
        api.endpoint(receiver.url, ordered=True, backoff_seconds=1, max_attempts=2)
        publish_numbered(api, 6)
        pump(drainer, lambda: all(d.status != "pending" for d in deliveries(app)))
    # Event 2 blocks the queue through its retry, fails for good, then the rest follows.
    assert [numbers(r)[0] for r in receiver.requests] == [0, 1, 2, 2, 3, 4, 5]
    assert tracking.most == 1
    statuses = {d.id: (d.status, d.attempts) for d in deliveries(app)}
    assert sorted(statuses.values()) == [("failed", 2)] + [("succeeded", 1)] * 5


# -- batching --------------------------------------------------------------------------------------


def test_batches_go_as_one_signed_json_array(app, api, receiver, drainer):
    endpoint = api.endpoint(receiver.url, batch_size=5, batch_window_seconds=60)
    publish_numbered(api, 12)
    drainer.drain()
    # Two full batches, sent side by side (so in either order).
    assert sorted(numbers(r) for r in receiver.requests) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    waiting = [d for d in deliveries(app) if d.status == "pending"]
    assert len(waiting) == 2 and all(d.attempts == 0 for d in waiting), "two wait for the window to fill the batch"

    first, second = sorted(receiver.requests, key=numbers)
    headers = {k.lower(): v for k, v in first.headers.items()}
    assert headers["webhook-id"].startswith("batch_")
    assert headers["webhook-id"] != second.headers["Webhook-Id"]
    body = Webhook(endpoint["secret"]).verify(first.body, headers)
    assert isinstance(body, list) and all(set(item) == {"id", "type", "created_at", "data"} for item in body)
    assert len({item["id"] for item in body}) == 5 and all(item["id"].startswith("msg_") for item in body)

    delivery_id = deliveries(app)[0].id
    detail = api.get(f"/api/v1/deliveries/{delivery_id}").get_json()
    attempt = detail["attempt_log"][0]
    assert detail["status"] == "succeeded" and detail["attempts"] == 1
    assert attempt["batch"] == {"id": headers["webhook-id"], "size": 5}
    assert json.loads(attempt["request"]["body"]) == body[0], "each attempt keeps its own element"
    assert attempt["request"]["headers"]["webhook-signature"] == headers["webhook-signature"]
    assert attempt_count(app) == 10

    with app.app_context():
        db.session.query(Delivery).filter(Delivery.status == "pending").update(
            {"next_attempt_at": now_utc() - timedelta(seconds=61)}
        )
        db.session.commit()
    drainer.drain()
    assert numbers(receiver.requests[2]) == [10, 11], "once the oldest waited the window, a partial batch goes"


def test_batch_window_lets_a_batch_fill(app, api, receiver, drainer):
    api.endpoint(receiver.url, batch_size=100, batch_window_seconds=1)
    started = time.time()
    for n in range(3):
        api.publish(payload={"n": n})
    drainer.drain()
    assert receiver.requests == []
    pump(drainer, lambda: receiver.requests)
    [request] = receiver.requests
    assert numbers(request) == [0, 1, 2]
    assert request.at - started >= 0.95


def test_a_failed_batch_retries_together_under_the_same_webhook_id(app, api, drainer):
    answers = iter([Response("down", 500), Response("ok", 200)])
    with Receiver(lambda r: next(answers)) as receiver:
        endpoint = api.endpoint(receiver.url, batch_size=3, backoff_seconds=1)
        publish_numbered(api, 3)
        drainer.drain()
        rows = deliveries(app)
        assert [(d.status, d.attempts, d.last_status_code) for d in rows] == [("pending", 1, 500)] * 3
        fetched = api.get(f"/api/v1/endpoints/{endpoint['id']}").get_json()
        assert fetched["circuit"]["consecutive_failures"] == 1, "one request, one failure, however many it carried"
        make_due(app)
        drainer.drain()
    first, second = receiver.requests
    assert first.headers["Webhook-Id"] == second.headers["Webhook-Id"]
    assert first.body == second.body
    assert [(d.status, d.attempts) for d in deliveries(app)] == [("succeeded", 2)] * 3
    assert attempt_count(app) == 6


def test_batch_elements_use_the_payload_template(app, api, receiver, drainer):
    template = api.post(
        "/api/v1/templates", json={"name": "slim", "body": '{"number": {{ n | tojson }}, "kind": {{ event.type | tojson }}}'}
    ).get_json()
    api.endpoint(receiver.url, batch_size=2, template_id=template["id"])
    publish_numbered(api, 2)
    drainer.drain()
    assert json.loads(receiver.requests[0].body) == [
        {"number": 0, "kind": "order.created"},
        {"number": 1, "kind": "order.created"},
    ]


def test_ordered_batches_keep_publish_order(app, api, drainer):
    tracking = Tracking(failures={})
    with Receiver(tracking) as receiver:
        api.endpoint(receiver.url, batch_size=3, ordered=True)
        publish_numbered(api, 7)
        pump(drainer, lambda: len(receiver.requests) >= 3)
    assert [numbers(r) for r in receiver.requests] == [[0, 1, 2], [3, 4, 5], [6]]
    assert tracking.most == 1


def test_half_open_probe_of_a_batching_endpoint_is_an_array_of_one(app, api, drainer):
    switch = Switch()
    with Receiver(switch) as receiver:
        api.endpoint(receiver.url, batch_size=10, circuit_threshold=1, circuit_cooldown_seconds=1, backoff_seconds=1)
        publish_numbered(api, 4)
        drainer.drain()
        assert [numbers(r) for r in receiver.requests] == [[0, 1, 2, 3]]
        switch.healthy = True
        pump(drainer, lambda: len(receiver.requests) >= 2)
        assert len(json.loads(receiver.requests[1].body)) == 1, "the probe carries one delivery"
        pump(drainer, lambda: all(d.status == "succeeded" for d in deliveries(app)))
    # The other three go once their retries are due, in one batch or more.
    assert sorted(n for r in receiver.requests[2:] for n in numbers(r)) == sorted(
        set(range(4)) - set(numbers(receiver.requests[1]))
    )


def test_batch_and_policy_fields_are_validated_and_shown(api, receiver):
    created = api.endpoint(receiver.url, batch_size=50, batch_window_seconds=2.5)
    assert created["batch_size"] == 50 and created["batch_window_seconds"] == 2.5
    assert created["warnings"] == []
    plain = api.endpoint(receiver.url)
    assert plain["batch_size"] == 1 and plain["batch_window_seconds"] == 0.0
    for field, value in [
        ("batch_size", 0),
        ("batch_size", 1001),
        ("batch_size", 2.5),
        ("batch_size", "5"),
        ("batch_size", True),
        ("batch_window_seconds", -1),
        ("batch_window_seconds", 301),
        ("batch_window_seconds", None),
        ("rate_limit", {"max": True}),
        ("rate_limit", {"max": 5, "per": "hour"}),
        ("rate_limit", [5]),
    ]:
        response = api.patch(f"/api/v1/endpoints/{created['id']}", json={field: value})
        assert response.status_code == 422, (field, value)
        assert response.get_json()["error"]["field"] == field


def test_turning_tls_verification_off_shows_a_warning(api, receiver):
    endpoint = api.endpoint(receiver.url)
    patched = api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"verify_tls": False}).get_json()
    assert patched["verify_tls"] is False
    assert len(patched["warnings"]) == 1 and "TLS certificate verification is off" in patched["warnings"][0]
    listed = api.get("/api/v1/endpoints").get_json()["data"][0]
    assert listed["warnings"] == patched["warnings"]
