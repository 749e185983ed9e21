"""Event types, payload templates, filter/template previews, routing explanations, and
the end-to-end promise of issue 4: each endpoint gets only what it wants, in its shape."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

from webhooks.testing import Receiver

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order"],
    "properties": {
        "order": {
            "type": "object",
            "required": ["id", "total"],
            "properties": {"id": {"type": "integer"}, "total": {"type": "number"}, "status": {"type": "string"}},
        }
    },
}
ORDER_SAMPLE = {"order": {"id": 1, "total": 150.0, "status": "paid"}, "customer": {"tags": ["vip"]}}
TEMPLATE = '{"order_id": {{ order.id | tojson }}, "total": {{ order.total }}, "at": {{ event.created_at | tojson }}}'


def test_event_type_crud_and_schema_validation_at_publish(api):
    created = api.post("/api/v1/event-types", json={"name": "order.created", "schema": ORDER_SCHEMA, "sample": ORDER_SAMPLE})
    assert created.status_code == 201
    type_id = created.get_json()["id"]
    assert api.get("/api/v1/event-types").get_json()["data"][0]["name"] == "order.created"
    bad = api.post("/api/v1/events", json={"type": "order.created", "payload": {"order": {"id": "x", "total": 1}}})
    assert bad.status_code == 422
    error = bad.get_json()["error"]
    assert error["field"] == "payload" and "$.order.id" in error["message"]
    assert api.post("/api/v1/events", json={"type": "order.created", "payload": ORDER_SAMPLE}).status_code == 202
    assert api.post("/api/v1/events", json={"type": "unknown.type", "payload": {}}).status_code == 202
    patched = api.patch(f"/api/v1/event-types/{type_id}", json={"description": "An order was placed"})
    assert patched.get_json()["description"] == "An order was placed"
    assert api.delete(f"/api/v1/event-types/{type_id}").status_code == 204


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({}, 422, "name"),
        ({"name": "bad name"}, 422, "name"),
        ({"name": "a.b", "schema": {"type": "nonsense"}}, 422, "schema"),
        ({"name": "a.b", "schema": ORDER_SCHEMA, "sample": {"order": {}}}, 422, "sample"),
        ({"name": "a.b", "colour": "red"}, 422, "colour"),
    ],
)
def test_event_type_errors(api, body, status, field):
    response = api.post("/api/v1/event-types", json=body)
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field


def test_duplicate_event_type_is_409(api):
    api.post("/api/v1/event-types", json={"name": "a.b"})
    assert api.post("/api/v1/event-types", json={"name": "a.b"}).status_code == 409


def test_strict_mode_refuses_unknown_types(app, api):
    from webhooks.db import db
    from webhooks.models import Tenant

    with app.app_context():
        db.session.get(Tenant, api.tenant_id).strict_event_types = True
        db.session.commit()
    response = api.post("/api/v1/events", json={"type": "unknown.type", "payload": {}})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "type"


def test_template_is_validated_against_the_sample_when_saved(api):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": ORDER_SAMPLE})
    good = api.post("/api/v1/templates", json={"name": "compact", "body": TEMPLATE, "event_type": "order.created"})
    assert good.status_code == 201
    broken = api.post("/api/v1/templates", json={"name": "broken", "body": '{"a": {{ order.id }',"event_type": "order.created"})
    assert broken.status_code == 422
    assert broken.get_json()["error"]["field"] == "body" and "line 1" in broken.get_json()["error"]["message"]
    not_json = api.post("/api/v1/templates", json={"name": "nj", "body": '{"s": {{ order.status }}}', "event_type": "order.created"})
    assert not_json.status_code == 422 and "JSON" in not_json.get_json()["error"]["message"]
    assert api.post("/api/v1/templates", json={"name": "compact", "body": "{}"}).status_code == 409
    template_id = good.get_json()["id"]
    assert api.patch(f"/api/v1/templates/{template_id}", json={"body": "{{"}).status_code == 422
    assert api.get(f"/api/v1/templates/{template_id}").get_json()["body"] == TEMPLATE


def test_template_preview(api):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": ORDER_SAMPLE})
    result = api.post("/api/v1/templates/preview", json={"body": TEMPLATE, "event_type": "order.created"}).get_json()
    assert result["ok"] and result["value"]["order_id"] == 1 and result["value"]["total"] == 150.0
    error = api.post("/api/v1/templates/preview", json={"body": '{\n"a": {{ 1 + }}\n}', "payload": {}}).get_json()
    assert error["ok"] is False and error["line"] == 2


def test_filter_test_reports_each_rule_and_recent_matches(api):
    for total in (50, 150, 250):
        api.publish("order.created", {"order": {"total": total, "status": "paid"}})
    api.publish("order.created", {"order": {"total": 500, "status": "draft"}})
    body = {"match": "all", "rules": ['order.total > 100', 'order.status != "draft"'], "event_type": "order.created"}
    result = api.post("/api/v1/filters/test", json={**body, "payload": {"order": {"total": 120, "status": "paid"}}}).get_json()
    assert result["matched"] is True
    assert [r["matched"] for r in result["rules"]] == [True, True]
    assert result["recent"] == {"checked": 4, "matched": 2}
    broken = api.post("/api/v1/filters/test", json={"rules": ["order.total >"], "payload": {}}).get_json()
    assert broken["matched"] is False and "column" in broken["rules"][0]["error"]
    assert api.post("/api/v1/filters/test", json={"rules": []}).status_code == 422
    assert api.post("/api/v1/filters/test", json={"match": "some", "rules": [], "payload": {}}).status_code == 422


def test_endpoint_filter_is_validated_on_save(api, receiver):
    response = api.post("/api/v1/endpoints", json={"url": receiver.url, "filter": {"match": "all", "rules": ["a >"]}})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "filter.rules[0]"
    assert "column" in response.get_json()["error"]["message"]


def test_event_matching_two_of_three_endpoints_reaches_exactly_those_in_their_shapes(api, drainer):
    """Issue 4's end-to-end promise: routing by filter, shaping by template, valid signatures."""
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": ORDER_SAMPLE})
    compact = api.post("/api/v1/templates", json={"name": "compact", "body": TEMPLATE, "event_type": "order.created"}).get_json()
    slack_like = api.post(
        "/api/v1/templates", json={"name": "chat", "body": '{"text": {{ ("Order " ~ order.id ~ " paid") | tojson }}}'}
    ).get_json()
    with Receiver() as big, Receiver() as vip, Receiver() as drafts:
        big_ep = api.endpoint(
            big.url, filter={"match": "all", "rules": ["order.total > 100", 'order.status != "draft"']},
            template_id=compact["id"],
        )
        vip_ep = api.endpoint(vip.url, filter={"match": "any", "rules": ['"vip" in customer.tags']}, template_id=slack_like["id"])
        api.endpoint(drafts.url, filter={"rules": ['order.status == "draft"']})
        event = api.publish("order.created", {"order": {"id": 42, "total": 150, "status": "paid"}, "customer": {"tags": ["vip"]}})
        assert event["deliveries"] == 2
        drainer.drain()
        big_request, vip_request = big.wait_for(1)[0], vip.wait_for(1)[0]
        assert drafts.requests == []
    big_body = Webhook(big_ep["secret"]).verify(big_request.body, _lower(big_request.headers))
    assert big_body["order_id"] == 42 and big_body["total"] == 150 and big_body["at"].startswith("20")
    assert Webhook(vip_ep["secret"]).verify(vip_request.body, _lower(vip_request.headers)) == {"text": "Order 42 paid"}
    routing = api.get(f"/api/v1/events/{event['id']}/routing").get_json()["endpoints"]
    assert [r["matched"] for r in routing] == [True, True, False]
    assert routing[2]["reason"].startswith("rule 1 did not match")
    assert routing[0]["filter"]["rules"][1]["matched"] is True


def test_template_failing_at_send_time_fails_without_retry(api, receiver, drainer):
    api.post("/api/v1/event-types", json={"name": "order.created", "sample": {"order": {"id": 1}}})
    # Valid against the sample (a number), but not for an event whose id is a string.
    body = {"name": "t", "body": '{"n": {{ order.id }}}', "event_type": "order.created"}
    template = api.post("/api/v1/templates", json=body).get_json()
    api.endpoint(receiver.url, template_id=template["id"])
    event = api.publish("order.created", {"order": {"id": "abc"}})
    drainer.drain()
    assert receiver.requests == []
    delivery = api.get(f"/api/v1/events/{event['id']}").get_json()["deliveries"][0]
    assert delivery["status"] == "failed" and "payload template failed" in delivery["last_error"]
    assert delivery["attempts"] == 1


def test_catalog_objects_are_tenant_scoped(api, other_api):
    entry = api.post("/api/v1/event-types", json={"name": "a.b"}).get_json()
    template = api.post("/api/v1/templates", json={"name": "t", "body": "{}"}).get_json()
    assert other_api.get(f"/api/v1/event-types/{entry['id']}").status_code == 404
    assert other_api.get(f"/api/v1/templates/{template['id']}").status_code == 404
    assert other_api.post("/api/v1/endpoints", json={"url": "http://127.0.0.1:9/", "template_id": template["id"]}).status_code == 422
    event = api.publish()
    assert other_api.get(f"/api/v1/events/{event['id']}/routing").status_code == 404


def _lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def test_template_source_is_capped(api):
    response = api.post("/api/v1/templates", json={"name": "big", "body": "{}" + " " * 70_000})
    assert response.status_code == 422 and "at most" in response.get_json()["error"]["message"]


def test_filter_test_counts_recent_events_of_a_type_pattern(api):
    """The dashboard's "N of the last 100" works for a subscription pattern, not only for one type."""
    api.post("/api/v1/events", json=[{"type": "order.created", "payload": {"total": n}} for n in (50, 150, 250)])
    api.post("/api/v1/events", json={"type": "invoice.paid", "payload": {"total": 500}})
    answer = api.post("/api/v1/filters/test", json={"rules": ["total > 100"], "payload": {"total": 1}, "event_type": "order.*"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["recent"] == {"checked": 3, "matched": 2}
    refused = api.post("/api/v1/filters/test", json={"rules": [], "event_type": "order.\x00"})
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "event_type"
