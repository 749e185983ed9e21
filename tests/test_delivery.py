"""Deliveries end to end against a real loopback receiver, driven by the real worker."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from standardwebhooks.webhooks import Webhook
from werkzeug.wrappers import Response

from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.testing import Receiver


def make_due(app):
    """Skip the backoff wait: make every pending delivery due now."""
    with app.app_context():
        db.session.query(Delivery).filter(Delivery.status == "pending").update({"next_attempt_at": now_utc()})
        db.session.commit()


def delivery_of(api, event):
    return api.get(f"/api/v1/events/{event['id']}").get_json()["deliveries"][0]


def detail(api, delivery_id):
    return api.get(f"/api/v1/deliveries/{delivery_id}").get_json()


def test_signed_delivery_verifies_with_the_official_package(api, receiver, drainer):
    endpoint = api.endpoint(receiver.url, headers={"X-Team": "billing"})
    event = api.publish("order.created", {"order": {"id": 7, "total": 120.5}})
    drainer.drain()
    request = receiver.wait_for(1)[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("webhooks-hub/")
    assert headers["x-team"] == "billing"
    assert headers["webhook-id"] == event["webhook_id"]
    body = Webhook(endpoint["secret"]).verify(request.body, headers)
    assert body["type"] == "order.created" and body["data"] == {"order": {"id": 7, "total": 120.5}}
    assert set(body) == {"id", "type", "created_at", "data"}
    delivery = detail(api, delivery_of(api, event)["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
    attempt = delivery["attempt_log"][0]
    assert attempt["trigger"] == "scheduled" and attempt["response"]["status"] == 200
    assert attempt["request"]["body"] == request.body.decode()
    assert attempt["request"]["headers"]["webhook-signature"] == headers["webhook-signature"]
    assert attempt["response"]["body"] == "ok" and attempt["duration_ms"] >= 0


def test_retry_then_succeed(app, api, drainer):
    answers = iter([Response("down", 500), Response("still down", 502), Response("fine", 200)])
    with Receiver(lambda r: next(answers)) as receiver:
        api.endpoint(receiver.url)
        event = api.publish()
        for _ in range(3):
            drainer.drain()
            make_due(app)
        requests = receiver.wait_for(3)
    assert len({r.headers["Webhook-Id"] for r in requests}) == 1, "webhook-id is stable across retries"
    delivery = detail(api, delivery_of(api, event)["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert [a["trigger"] for a in delivery["attempt_log"]] == ["scheduled", "retry", "retry"]
    assert [a["response"]["status"] for a in delivery["attempt_log"]] == [500, 502, 200]
    assert delivery["attempt_log"][0]["response"]["body"] == "down"


def test_backoff_schedules_the_next_attempt(app, api, drainer):
    with Receiver(lambda r: Response("no", 500)) as receiver:
        api.endpoint(receiver.url, backoff_seconds=100)
        event = api.publish()
        before = now_utc()
        drainer.drain()
    delivery = delivery_of(api, event)
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 500
    with app.app_context():
        row = db.session.get(Delivery, delivery["id"])
        wait = (row.next_attempt_at - before).total_seconds()
    assert 80 <= wait <= 121


def test_fails_after_max_attempts(app, api, drainer):
    with Receiver(lambda r: Response("no", 500)) as receiver:
        api.endpoint(receiver.url, max_attempts=3)
        event = api.publish()
        for _ in range(4):
            drainer.drain()
            make_due(app)
        assert len(receiver.requests) == 3
    delivery = detail(api, delivery_of(api, event)["id"])
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert delivery["last_error"] == "HTTP 500"


def test_retry_after_is_honoured(app, api, drainer):
    with Receiver(lambda r: Response("slow down", 429, {"Retry-After": "42"})) as receiver:
        api.endpoint(receiver.url)
        event = api.publish()
        before = now_utc()
        drainer.drain()
        assert len(receiver.requests) == 1
    with app.app_context():
        row = db.session.get(Delivery, delivery_of(api, event)["id"])
        assert timedelta(seconds=41) <= row.next_attempt_at - before <= timedelta(seconds=44)


def test_gone_disables_the_endpoint(api, drainer):
    with Receiver(lambda r: Response("gone", 410)) as receiver:
        endpoint = api.endpoint(receiver.url)
        event = api.publish()
        drainer.drain()
        second = api.publish()
        assert second["deliveries"] == 0, "a disabled endpoint gets no new deliveries"
    assert delivery_of(api, event)["status"] == "failed"
    fetched = api.get(f"/api/v1/endpoints/{endpoint['id']}").get_json()
    assert fetched["enabled"] is False and "410" in fetched["disabled_reason"]


def test_connection_errors_and_timeouts_are_recorded(app, api, drainer):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.endpoint(f"http://127.0.0.1:{port}/nobody-home")
    with Receiver(lambda r: (time.sleep(2), Response("late"))[1]) as slow:
        api.endpoint(slow.url, timeout_seconds=1)
        event = api.publish()
        drainer.drain()
    deliveries = api.get(f"/api/v1/events/{event['id']}").get_json()["deliveries"]
    errors = sorted(detail(api, d["id"])["attempt_log"][0]["error"] for d in deliveries)
    assert errors[0].startswith("connection error") and errors[1].startswith("timeout after 1")
    assert all(d["status"] == "pending" for d in deliveries)


def test_redirect_is_a_failure(api, drainer):
    with Receiver(lambda r: Response("", 301, {"Location": "http://example.com/"})) as receiver:
        api.endpoint(receiver.url)
        event = api.publish()
        drainer.drain()
        assert len(receiver.requests) == 1
    assert delivery_of(api, event)["last_status_code"] == 301


def test_redeliver_makes_a_manual_attempt(api, receiver, drainer):
    api.endpoint(receiver.url)
    event = api.publish()
    drainer.drain()
    delivery_id = delivery_of(api, event)["id"]
    response = api.post(f"/api/v1/deliveries/{delivery_id}/redeliver")
    assert response.status_code == 202 and response.get_json()["status"] == "pending"
    drainer.drain()
    requests = receiver.wait_for(2)
    assert requests[0].headers["Webhook-Id"] == requests[1].headers["Webhook-Id"]
    delivery = detail(api, delivery_id)
    assert [a["trigger"] for a in delivery["attempt_log"]] == ["scheduled", "manual"]
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 2


def test_replay_failed_deliveries(app, api, drainer):
    healthy = {"ok": False}
    with Receiver(lambda r: Response("ok" if healthy["ok"] else "no", 200 if healthy["ok"] else 500)) as receiver:
        endpoint = api.endpoint(receiver.url, max_attempts=1)
        for n in range(3):
            api.publish(payload={"n": n})
        drainer.drain()
        assert api.get("/api/v1/deliveries?status=failed").get_json()["data"].__len__() == 3
        healthy["ok"] = True
        response = api.post(f"/api/v1/endpoints/{endpoint['id']}/replay", json={"status": "failed"})
        assert response.status_code == 202 and response.get_json() == {"redelivered": 3}
        drainer.drain()
        assert len(receiver.requests) == 6
    assert len(api.get("/api/v1/deliveries?status=succeeded").get_json()["data"]) == 3
    assert api.post(f"/api/v1/endpoints/{endpoint['id']}/replay", json={"since": "yesterday"}).status_code == 422


def test_deliveries_list_filters_and_paginates(api, receiver):
    first = api.endpoint(receiver.url + "/a")
    api.endpoint(receiver.url + "/b", event_types=["invoice.*"])
    for n in range(5):
        api.publish("order.created", {"n": n})
    api.publish("invoice.paid", {})
    page = api.get("/api/v1/deliveries?limit=2").get_json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    ids = [d["id"] for d in page["data"]]
    while page["next_cursor"]:
        page = api.get(f"/api/v1/deliveries?limit=2&cursor={page['next_cursor']}").get_json()
        ids += [d["id"] for d in page["data"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 7
    by_endpoint = api.get(f"/api/v1/deliveries?endpoint_id={first['id']}").get_json()["data"]
    assert len(by_endpoint) == 6  # /a subscribes to every type
    assert len(api.get("/api/v1/deliveries?event_type=invoice.paid").get_json()["data"]) == 2
    assert api.get("/api/v1/deliveries?status=nope").status_code == 400
    assert api.get("/api/v1/deliveries?limit=0").status_code == 400
    assert api.get("/api/v1/deliveries?cursor=%%%").status_code == 400
    assert api.get("/api/v1/deliveries?endpoint_id=x").status_code == 400


def test_other_tenants_deliveries_are_invisible(api, other_api, receiver):
    api.endpoint(receiver.url)
    event = api.publish()
    delivery_id = delivery_of(api, event)["id"]
    assert other_api.get("/api/v1/deliveries").get_json()["data"] == []
    assert other_api.get(f"/api/v1/deliveries/{delivery_id}").status_code == 404
    assert other_api.post(f"/api/v1/deliveries/{delivery_id}/redeliver").status_code == 404


def test_huge_response_body_is_capped_in_the_attempt(app, api, drainer):
    with Receiver(lambda r: Response("z" * 300_000)) as receiver:
        api.endpoint(receiver.url)
        event = api.publish()
        drainer.drain()
    attempt = detail(api, delivery_of(api, event)["id"])["attempt_log"][0]
    assert len(attempt["response"]["body"]) == 64 * 1024


def test_disabled_endpoint_fails_pending_deliveries_without_sending(app, api, receiver, drainer):
    endpoint = api.endpoint(receiver.url)
    event = api.publish()
    api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False})
    drainer.drain()
    assert receiver.requests == []
    delivery = detail(api, delivery_of(api, event)["id"])
    assert delivery["status"] == "failed" and "endpoint disabled" in delivery["last_error"]


def test_attempt_rows_keep_request_and_response(app, api, receiver, drainer):
    api.endpoint(receiver.url)
    api.publish("a.b", {"x": 1})
    drainer.drain()
    with app.app_context():
        attempt = db.session.query(Attempt).one()
        assert json.loads(attempt.request_body)["data"] == {"x": 1}
        assert attempt.response_status == 200 and attempt.response_headers
        assert db.session.query(Endpoint).one().consecutive_failures == 0
