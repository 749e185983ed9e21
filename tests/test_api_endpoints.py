"""The endpoints API: create, read, update, delete, rotate, test, and every error path."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook


def test_create_returns_secret_once(api, receiver):
    created = api.endpoint(receiver.url, description="orders", event_types=["order.*"])
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["order.*"]
    fetched = api.get(f"/api/v1/endpoints/{created['id']}").get_json()
    assert "secret" not in fetched
    assert created["secret"] not in str(api.get("/api/v1/endpoints").get_json())
    assert fetched["secret_hint"] == created["secret"][:10] + "…"


def test_list_patch_delete(api, receiver):
    first = api.endpoint(receiver.url)
    api.endpoint(receiver.url + "/2")
    assert [e["id"] for e in api.get("/api/v1/endpoints").get_json()["data"]] == [first["id"], first["id"] + 1]
    patched = api.patch(f"/api/v1/endpoints/{first['id']}", json={"enabled": False, "max_attempts": 3})
    assert patched.status_code == 200
    assert patched.get_json()["enabled"] is False and patched.get_json()["max_attempts"] == 3
    assert api.delete(f"/api/v1/endpoints/{first['id']}").status_code == 204
    assert api.get(f"/api/v1/endpoints/{first['id']}").status_code == 404


def test_given_secret_is_used(api, receiver):
    secret = "whsec_" + "A" * 32
    assert api.endpoint(receiver.url, secret=secret)["secret"] == secret


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://no-such-host.invalid/"}, "url"),
        ({"url": "RECEIVER", "timeout_seconds": 0}, "timeout_seconds"),
        ({"url": "RECEIVER", "timeout_seconds": "5"}, "timeout_seconds"),
        ({"url": "RECEIVER", "max_attempts": 2.5}, "max_attempts"),
        ({"url": "RECEIVER", "max_attempts": 99}, "max_attempts"),
        ({"url": "RECEIVER", "backoff_seconds": -1}, "backoff_seconds"),
        ({"url": "RECEIVER", "enabled": "yes"}, "enabled"),
        ({"url": "RECEIVER", "event_types": "order.created"}, "event_types"),
        ({"url": "RECEIVER", "event_types": [""]}, "event_types"),
        ({"url": "RECEIVER", "headers": {"X-A": 1}}, "headers"),
        ({"url": "RECEIVER", "headers": {"webhook-signature": "x"}}, "headers"),
        ({"url": "RECEIVER", "headers": {"X-A": "a\r\nInjected: 1"}}, "headers"),
        ({"url": "RECEIVER", "secret": "short"}, "secret"),
        ({"url": "RECEIVER", "description": 5}, "description"),
        ({"url": "RECEIVER", "nonsense": 1}, "nonsense"),
        ({"url": "RECEIVER", "auth": {"type": "basic", "username": "u"}}, "auth"),
        ({"url": "RECEIVER", "auth": {"type": "magic"}}, "auth"),
        ({"url": "RECEIVER", "rate_limit": {"max": 0}}, "rate_limit"),
        ({"url": "RECEIVER", "template_id": 12345}, "template_id"),
    ],
)
def test_invalid_fields_are_422_with_the_field(api, receiver, body, field):
    body = {k: receiver.url if v == "RECEIVER" else v for k, v in body.items()}
    response = api.post("/api/v1/endpoints", json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == field
    assert error["message"]


def test_private_targets_refused_when_not_allowed(app, api):
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    response = api.post("/api/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 422
    assert "private" in response.get_json()["error"]["message"]


def test_bad_json_is_400(api):
    response = api.post("/api/v1/endpoints", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]["message"]
    assert api.post("/api/v1/endpoints", json=[1, 2]).status_code == 400


def test_unknown_endpoint_is_404(api):
    for call in (api.get, api.patch, api.delete):
        response = call("/api/v1/endpoints/999", json={})
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_missing_or_wrong_key_is_401(client):
    assert client.get("/api/v1/endpoints").status_code == 401
    response = client.get("/api/v1/endpoints", headers={"Authorization": "Bearer whk_wrong"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_other_tenant_sees_404_never_data(api, other_api, receiver):
    mine = api.endpoint(receiver.url, description="secret plans")
    for call, path in [
        (other_api.get, f"/api/v1/endpoints/{mine['id']}"),
        (other_api.patch, f"/api/v1/endpoints/{mine['id']}"),
        (other_api.delete, f"/api/v1/endpoints/{mine['id']}"),
        (other_api.post, f"/api/v1/endpoints/{mine['id']}/rotate-secret"),
        (other_api.post, f"/api/v1/endpoints/{mine['id']}/test"),
        (other_api.post, f"/api/v1/endpoints/{mine['id']}/replay"),
    ]:
        response = call(path, json={})
        assert response.status_code == 404, path
        assert "secret plans" not in response.get_data(as_text=True)
    assert other_api.get("/api/v1/endpoints").get_json()["data"] == []
    assert api.get(f"/api/v1/endpoints/{mine['id']}").status_code == 200


def test_rotate_secret_signs_with_both_for_the_overlap(api, receiver, drainer):
    created = api.endpoint(receiver.url)
    rotated = api.post(f"/api/v1/endpoints/{created['id']}/rotate-secret").get_json()
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"]
    api.publish("order.created", {"n": 1})
    drainer.drain()
    request = receiver.requests[0]
    assert len(request.headers["Webhook-Signature"].split()) == 2
    for secret in (created["secret"], rotated["secret"]):
        Webhook(secret).verify(request.body, _standard_headers(request.headers))


def test_test_event_reaches_the_endpoint_whatever_its_subscriptions(api, receiver, drainer):
    created = api.endpoint(receiver.url, event_types=["invoice.*"])
    response = api.post(f"/api/v1/endpoints/{created['id']}/test")
    assert response.status_code == 202
    drainer.drain()
    assert receiver.requests[0].body.startswith(b'{"id":"msg_')
    assert b'"type":"webhook.test"' in receiver.requests[0].body


def _standard_headers(headers):
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")}
