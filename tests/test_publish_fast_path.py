"""Publishing's fast path: plain inserts with the right ids, tenant profiles that
follow changes made by any process, and the API-key cache's revocation delay."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session

from conftest import make_app
from webhooks import auth
from webhooks import endpoints
from webhooks import publishing
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.models import ApiKey
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import Event
from webhooks.models import EventType
from webhooks.models import Tenant


def test_bulk_ids_belong_to_their_events_and_deliveries_follow_event_order(app, api, receiver):
    first = api.endpoint(receiver.url + "/a")["id"]
    second = api.endpoint(receiver.url + "/b", event_types=["order.*"])["id"]
    events = [{"type": "order.created" if n % 2 else "invoice.paid", "payload": {"n": n}} for n in range(300)]
    data = api.post("/api/v1/events", json=events).get_json()["data"]
    assert [item["deliveries"] for item in data] == [2 if n % 2 else 1 for n in range(300)]
    with app.app_context():
        stored = {event.id: event for event in db.session.scalars(select(Event))}
        for n, item in enumerate(data):
            event = stored[item["id"]]
            assert (event.uid, event.type, event.payload) == (item["webhook_id"], events[n]["type"], {"n": n})
        deliveries = list(db.session.scalars(select(Delivery).order_by(Delivery.id)))
    assert [d.event_id for d in deliveries if d.endpoint_id == first] == [item["id"] for item in data]
    assert [d.event_id for d in deliveries if d.endpoint_id == second] == [item["id"] for item in data[1::2]]
    assert all(d.event_type == stored[d.event_id].type and d.status == "pending" for d in deliveries)


def test_bulk_after_single_events_and_repeats(app, api, receiver):
    api.endpoint(receiver.url)
    single = api.publish(payload={"n": -1})
    events = [{"type": "order.created", "payload": {"n": n}, "idempotency_key": f"k{n % 3}"} for n in range(6)]
    data = api.post("/api/v1/events", json=events).get_json()["data"]
    assert len({item["id"] for item in data}) == 3 and all(item["id"] > single["id"] for item in data)
    for item in data:
        assert api.get(f"/api/v1/events/{item['id']}").get_json()["webhook_id"] == item["webhook_id"]


def test_awkward_payloads_round_trip(api):
    for payload in ["\x00", {"text": "a\x00b", "quote": '"\\', "emoji": "\U0001f600"}, [1, 2.5, None, True], "plain"]:
        event = _publish(api, payload)
        assert api.get(f"/api/v1/events/{event['id']}").get_json()["payload"] == payload


@pytest.mark.parametrize("payload", [float("nan"), {"when": object()}])
def test_a_payload_that_is_not_json_is_422(app, api, payload):
    with app.app_context():
        with pytest.raises(ApiError) as refused:
            publishing.publish(db.session.get(Tenant, api.tenant_id), "order.created", payload)
    assert (refused.value.status, refused.value.field) == (422, "payload")


def test_endpoint_changes_apply_to_the_next_publish(api, receiver):
    endpoint = api.endpoint(receiver.url, event_types=["order.*"])
    assert api.publish()["deliveries"] == 1  # the tenant's profile is cached now
    api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"event_types": ["invoice.*"]})
    assert api.publish()["deliveries"] == 0
    api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"event_types": [], "filter": {"rules": ["total > 5"]}})
    assert api.publish(payload={"total": 9})["deliveries"] == 1
    assert api.publish(payload={"total": 1})["deliveries"] == 0
    api.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False})
    assert api.publish(payload={"total": 9})["deliveries"] == 0
    added = api.endpoint(receiver.url + "/new")
    assert api.publish()["deliveries"] == 1
    assert api.delete(f"/api/v1/endpoints/{added['id']}").status_code == 204
    assert api.publish()["deliveries"] == 0


def test_catalog_changes_apply_to_the_next_publish(api):
    assert api.publish("order.created", {"total": "x"})["deliveries"] == 0
    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    assert api.post("/api/v1/event-types", json={"name": "order.created", "schema": schema}).status_code == 201
    response = api.post("/api/v1/events", json={"type": "order.created", "payload": {"total": "x"}})
    assert response.status_code == 422 and "$.total" in response.get_json()["error"]["message"]


def test_changes_made_by_other_processes_apply_to_the_next_publish(app, api, receiver, database_url, tmp_path):
    endpoint = api.endpoint(receiver.url)
    assert api.publish()["deliveries"] == 1  # the tenant's profile is cached now
    other = make_app(database_url, tmp_path)  # another process's app: its commits say nothing to ours
    with other.app_context():
        endpoints.apply(db.session.get(Endpoint, endpoint["id"]), {"enabled": False})
        db.session.commit()
    assert api.publish()["deliveries"] == 0
    with other.app_context():
        created = endpoints.create(db.session.get(Tenant, api.tenant_id), {"url": receiver.url + "/new"}).id
    assert api.publish()["deliveries"] == 1
    with other.app_context():
        db.session.delete(db.session.get(Endpoint, created))
        db.session.add(EventType(tenant_id=api.tenant_id, name="order.created", schema={"type": "array"}))
        db.session.get(Tenant, api.tenant_id).strict_event_types = True
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    assert api.post("/api/v1/events", json={"type": "order.created", "payload": {}}).status_code == 422
    assert api.post("/api/v1/events", json={"type": "order.other", "payload": {}}).status_code == 422
    assert api.post("/api/v1/events", json={"type": "order.created", "payload": []}).get_json()["deliveries"] == 0


def test_revoked_keys_are_refused_at_once(app, api):
    assert api.get("/api/v1/endpoints").status_code == 200  # the key is cached now
    with app.app_context():
        auth.revoke_api_key(db.session.scalar(select(ApiKey).where(ApiKey.tenant_id == api.tenant_id)))
        db.session.commit()
    assert api.get("/api/v1/endpoints").status_code == 401


def test_keys_revoked_elsewhere_are_refused_after_the_cache_time(app, api, monkeypatch):
    assert api.get("/api/v1/endpoints").status_code == 200
    with app.app_context():
        db.session.execute(text("UPDATE api_keys SET revoked_at = created_at"))
        db.session.commit()
    assert api.get("/api/v1/endpoints").status_code == 200  # within KEY_CACHE_SECONDS
    monkeypatch.setattr(auth, "KEY_CACHE_SECONDS", 0)
    assert api.get("/api/v1/endpoints").status_code == 401


def test_cached_keys_keep_tenants_apart(api, other_api, receiver):
    api.endpoint(receiver.url)
    for _ in range(2):
        mine, theirs = api.publish(), other_api.publish()
        assert (mine["deliveries"], theirs["deliveries"]) == (1, 0)
        assert other_api.get(f"/api/v1/events/{mine['id']}").status_code == 404


def _publish(api, payload) -> dict:
    response = api.post("/api/v1/events", json={"type": "order.created", "payload": payload})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_bulk_rows_keep_awkward_keys_types_and_payloads(app, api, receiver):
    api.endpoint(receiver.url)
    payloads = ["\x00", {"text": 'a\x00b"\\', "emoji": "\U0001f600", "é": [1, 2.5, None, True]}, "plain", None]
    keys = ['quote " and \\ backslash', "ключ \U0001f600", None, "x" * 200]
    types = ["order.created", "a:b-c_d.E9", "_x", "order.created"]
    events = [{"type": t, "payload": p, "idempotency_key": k} for t, p, k in zip(types, payloads, keys)]
    data = api.post("/api/v1/events", json=events).get_json()["data"]
    with app.app_context():
        stored = [db.session.get(Event, item["id"]) for item in data]
        assert [(e.type, e.payload, e.idempotency_key) for e in stored] == [(t, p, k) for t, p, k in zip(types, payloads, keys)]
    again = api.post("/api/v1/events", json=events).get_json()["data"]
    assert [item["duplicate"] for item in again] == [True, True, False, True]
    assert [item["id"] for item in again][:2] == [item["id"] for item in data][:2]


def test_bulk_routes_filtered_and_unfiltered_types_in_one_batch(app, api, receiver):
    everything = api.endpoint(receiver.url + "/all")["id"]
    big = api.endpoint(receiver.url + "/big", event_types=["order.*"], filter={"rules": ["total > 5"]})["id"]
    events = [{"type": "order.created" if n % 2 else "invoice.paid", "payload": {"total": n}} for n in range(12)]
    data = api.post("/api/v1/events", json=events).get_json()["data"]
    assert [item["deliveries"] for item in data] == [2 if n % 2 and n > 5 else 1 for n in range(12)]
    with app.app_context():
        deliveries = list(db.session.scalars(select(Delivery).order_by(Delivery.id)))
    assert [d.event_id for d in deliveries if d.endpoint_id == everything] == [item["id"] for item in data]
    assert [d.event_id for d in deliveries if d.endpoint_id == big] == [data[n]["id"] for n in (7, 9, 11)]


def test_a_publish_with_a_checked_key_and_a_known_profile_opens_no_session(api, receiver):
    """The JSON API's publish writes on the driver's connection; the ORM session costs more than the rows."""
    api.endpoint(receiver.url)
    api.publish()  # checks the key and reads the tenant's profile
    begun = []

    def note(session, transaction, connection):
        begun.append(session)

    event.listen(Session, "after_begin", note)
    try:
        assert api.publish()["deliveries"] == 1
        assert len(api.post("/api/v1/events", json=[{"type": "order.created", "payload": {}}] * 3).get_json()["data"]) == 3
    finally:
        event.remove(Session, "after_begin", note)
    assert begun == []


def test_simultaneous_publishes_with_one_key_store_one_event(app, api, receiver):
    """Eight requests at once share transactions (group commit) or race on the unique index: one event either way."""
    api.endpoint(receiver.url)
    barrier = threading.Barrier(8)
    answers = []

    def send():
        client = app.test_client()
        barrier.wait()
        body = {"type": "order.created", "payload": {"n": 1}, "idempotency_key": "once"}
        response = client.post("/api/v1/events", json=body, headers={"Authorization": f"Bearer {api.key}"})
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [code for code, _ in answers] == [202] * 8
    assert len({answer["id"] for _, answer in answers}) == 1
    assert sorted(answer["duplicate"] for _, answer in answers) == [False] + [True] * 7
    assert all(answer["deliveries"] == 1 for _, answer in answers)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event)) == 1
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1


def test_a_profile_gone_stale_is_read_again_inside_the_same_publish(app, api, receiver, database_url, tmp_path):
    """The fingerprint is checked by the write itself: a stale profile writes nothing and the event is routed again."""
    endpoint = api.endpoint(receiver.url, event_types=["order.*"])
    assert api.publish()["deliveries"] == 1
    other = make_app(database_url, tmp_path)
    with other.app_context():
        endpoints.apply(db.session.get(Endpoint, endpoint["id"]), {"event_types": ["invoice.*"]})
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    with app.app_context():
        stale, _ = publishing.tenant_profile(api.tenant_id)
        published = publishing.accept(api.tenant_id, [{"type": "order.created", "payload": {}}], bulk=False)[0]
        fresh, _ = publishing.tenant_profile(api.tenant_id)
        assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.event_id == published.id)) == 0
    assert published.deliveries == 0 and fresh != stale


def test_a_key_whose_tenant_was_deleted_elsewhere_creates_nothing(app, api, receiver, database_url, tmp_path):
    assert api.get("/api/v1/endpoints").status_code == 200  # the key is cached now
    other = make_app(database_url, tmp_path)
    with other.app_context():
        db.session.execute(text("DELETE FROM tenants WHERE id = :id"), {"id": api.tenant_id})
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    response = api.post("/api/v1/endpoints", json={"url": receiver.url})
    assert response.status_code == 401
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Endpoint)) == 0


def test_the_python_api_routes_to_an_endpoint_added_in_the_same_session(app, api, receiver):
    api.publish()  # the tenant's profile is cached now, without endpoints
    with app.app_context():
        tenant = db.session.get(Tenant, api.tenant_id)
        endpoint = Endpoint(tenant_id=tenant.id, url=receiver.url, secret="whsec_" + "A" * 32)
        db.session.add(endpoint)  # pending, not flushed
        published = publishing.publish(tenant, "order.created", {"n": 1})
        deliveries = db.session.scalars(select(Delivery.endpoint_id).where(Delivery.event_id == published.id)).all()
        assert published.deliveries == 1 and deliveries == [endpoint.id]
