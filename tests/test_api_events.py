"""Publishing over HTTP and through the Python API: fan-out, idempotency, bulk, errors."""

from __future__ import annotations

import json

import pytest

import webhooks
from webhooks.db import db
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.models import Tenant


def test_publish_fans_out_to_subscribed_endpoints(api, receiver):
    all_types = api.endpoint(receiver.url + "/all")
    orders = api.endpoint(receiver.url + "/orders", event_types=["order.*"])
    api.endpoint(receiver.url + "/invoices", event_types=["invoice.paid"])
    accepted = api.publish("order.created", {"total": 10})
    assert accepted["deliveries"] == 2
    event = api.get(f"/api/v1/events/{accepted['id']}").get_json()
    assert event["payload"] == {"total": 10}
    assert event["webhook_id"].startswith("msg_")
    assert sorted(d["endpoint_id"] for d in event["deliveries"]) == [all_types["id"], orders["id"]]
    assert {d["status"] for d in event["deliveries"]} == {"pending"}


def test_disabled_endpoints_get_nothing(api, receiver):
    api.endpoint(receiver.url, enabled=False)
    assert api.publish()["deliveries"] == 0


def test_idempotency_key_returns_the_first_event(app, api, receiver):
    api.endpoint(receiver.url)
    first = api.publish("order.created", {"n": 1}, idempotency_key="order-1")
    again = api.publish("order.created", {"n": 2}, idempotency_key="order-1")
    assert again["id"] == first["id"] and again["duplicate"] is True and again["deliveries"] == 1
    with app.app_context():
        assert db.session.query(Event).count() == 1
        assert db.session.query(Delivery).count() == 1


def test_idempotency_key_is_released_after_the_window(app, api, receiver):
    first = api.publish("order.created", {}, idempotency_key="k")
    app.config["IDEMPOTENCY_HOURS"] = 1e-9
    second = api.publish("order.created", {}, idempotency_key="k")
    assert second["id"] != first["id"] and second["duplicate"] is False


def test_idempotency_keys_are_per_tenant(api, other_api):
    assert api.publish(idempotency_key="same")["id"] != other_api.publish(idempotency_key="same")["id"]


def test_bulk_publish_is_one_transaction(app, api, receiver):
    api.endpoint(receiver.url)
    events = [{"type": "order.created", "payload": {"n": n}} for n in range(250)]
    response = api.post("/api/v1/events", json=events)
    assert response.status_code == 202
    data = response.get_json()["data"]
    assert len(data) == 250 and all(item["deliveries"] == 1 for item in data)
    bad = events[:10] + [{"type": "bad type!", "payload": {}}]
    response = api.post("/api/v1/events", json=bad)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "[10].type"
    with app.app_context():
        assert db.session.query(Event).count() == 250


def test_bulk_repeated_keys_within_one_request(api):
    data = api.post(
        "/api/v1/events",
        json=[{"type": "a", "payload": {}, "idempotency_key": "x"}, {"type": "a", "payload": {}, "idempotency_key": "x"}],
    ).get_json()["data"]
    assert data[0]["id"] == data[1]["id"] and data[1]["duplicate"] is True


def test_bulk_limits(api):
    assert api.post("/api/v1/events", json=[]).status_code == 422
    too_many = [{"type": "a", "payload": {}}] * 1001
    response = api.post("/api/v1/events", json=too_many)
    assert response.status_code == 422 and "1 to 1000" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"payload": {}}, 422, "type"),
        ({"type": "", "payload": {}}, 422, "type"),
        ({"type": "has space", "payload": {}}, 422, "type"),
        ({"type": "a" * 201, "payload": {}}, 422, "type"),
        ({"type": "order.created"}, 422, "payload"),
        ({"type": "order.created", "payload": {}, "idempotency_key": 5}, 422, "idempotency_key"),
        ("just a string", 400, None),
        ([1], 422, "[0]"),
    ],
)
def test_publish_errors(api, body, status, field):
    response = api.post("/api/v1/events", json=body)
    assert response.status_code == status
    assert response.get_json()["error"].get("field") == field


def test_oversized_payload_is_413(app, api):
    app.config["MAX_EVENT_BYTES"] = 100
    response = api.post("/api/v1/events", json={"type": "a", "payload": {"x": "y" * 200}})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_oversized_request_is_413_json(api):
    response = api.post("/api/v1/events", data=b"x" * (17 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_invalid_json_is_400(api):
    response = api.post("/api/v1/events", data="{", content_type="application/json")
    assert response.status_code == 400


def test_other_tenants_event_is_404(api, other_api):
    event = api.publish()
    assert other_api.get(f"/api/v1/events/{event['id']}").status_code == 404


def test_python_api_publishes_like_http(app, api, receiver):
    api.endpoint(receiver.url, event_types=["payment.*"])
    with app.app_context():
        tenant = db.session.get(Tenant, api.tenant_id)
        published = webhooks.publish(tenant, "payment.received", {"amount": 5}, idempotency_key="p1")
        again = webhooks.publish(tenant, "payment.received", {"amount": 5}, idempotency_key="p1")
    assert published.deliveries == 1 and published.created
    assert again.id == published.id and not again.created
    fetched = api.get(f"/api/v1/events/{published.id}").get_json()
    assert json.dumps(fetched["payload"]) == '{"amount": 5}'
