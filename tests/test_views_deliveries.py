"""Delivery pages: history with filters and keyset pages, live rows, detail with
attempts and curl, redelivery, and replaying failures after a confirmation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy import update
from werkzeug.wrappers import Response

from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import AuditEntry
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.testing import Receiver


def squash(html: str) -> str:
    return " ".join(html.split())


def row_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="delivery-(\d+)"', html)]


def delivery(app, delivery_id: int) -> Delivery:
    with app.app_context():
        item = db.session.get(Delivery, delivery_id)
        db.session.expunge(item)
        return item


def test_history_lists_newest_first_with_status_words(editor, api, receiver, drainer):
    api.endpoint(receiver.url)
    for number in range(3):
        api.publish("order.created", {"n": number})
    drainer.drain()
    page = editor.get("/t/acme/deliveries/")
    assert page.status_code == 200
    assert row_ids(page.text) == [3, 2, 1]
    assert page.text.count('<span class="badge badge-succeeded">succeeded</span>') == 3
    assert "Redeliver" in page.text


def test_filters_narrow_the_history(app, editor, api, receiver, drainer):
    first = api.endpoint(receiver.url)
    second = api.endpoint(receiver.url + "?second")
    api.publish("order.created", {})
    event = api.publish("invoice.paid", {})
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.id == 1).values(status="failed"))
        db.session.commit()
    assert row_ids(editor.get("/t/acme/deliveries/?status=failed").text) == [1]
    assert row_ids(editor.get(f"/t/acme/deliveries/?endpoint_id={second['id']}").text) == [4, 2]
    assert row_ids(editor.get("/t/acme/deliveries/?event_type=invoice.paid").text) == [4, 3]
    assert row_ids(editor.get(f"/t/acme/deliveries/?event={event['webhook_id']}").text) == [4, 3]
    assert row_ids(editor.get(f"/t/acme/deliveries/?event={event['id']}&endpoint_id={first['id']}").text) == [3]
    assert row_ids(editor.get("/t/acme/deliveries/?event=msg_unknown").text) == []


def test_time_range_filters(app, editor, api):
    api.endpoint("http://127.0.0.1:9/hook")
    api.publish("order.created", {})
    api.publish("order.created", {})
    earlier = now_utc() - timedelta(days=2)
    with app.app_context():
        db.session.execute(update(Event).where(Event.id == 1).values(created_at=earlier))
        db.session.execute(update(Delivery).where(Delivery.id == 1).values(created_at=earlier))
        db.session.commit()
    yesterday = (now_utc() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert row_ids(editor.get(f"/t/acme/deliveries/?since={yesterday}").text) == [2]
    assert row_ids(editor.get(f"/t/acme/deliveries/?until={yesterday}").text) == [1]
    tomorrow = (now_utc() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert row_ids(editor.get(f"/t/acme/deliveries/?since={tomorrow}").text) == []


def test_invalid_filters_are_shown_beside_the_field(editor, api):
    response = editor.get("/t/acme/deliveries/?since=yesterday&endpoint_id=999")
    assert response.status_code == 422
    assert re.search(r'id="since-error">Not a valid datetime value', response.text)
    assert re.search(r'id="endpoint_id-error">Not a valid choice', response.text)


def test_keyset_pages(app, editor, api):
    api.endpoint("http://127.0.0.1:9/hook")
    api.post("/api/v1/events", json=[{"type": "order.created", "payload": {"n": n}} for n in range(60)])
    first = editor.get("/t/acme/deliveries/?event_type=order.created")
    ids = row_ids(first.text)
    assert ids == list(range(60, 10, -1))
    older = re.search(r'href="\?([^"]*before=\d+[^"]*)">Older', first.text).group(1).replace("&amp;", "&")
    assert "event_type=order.created" in older and "before=11" in older
    second = editor.get("/t/acme/deliveries/?" + older)
    assert row_ids(second.text) == list(range(10, 0, -1))
    assert "Older" not in second.text and "Newest" in second.text
    assert 'id="newer-rows"' not in second.text  # only the first page polls for new rows


def test_pending_rows_poll_until_final(app, editor, api, receiver, drainer):
    api.endpoint(receiver.url)
    api.publish()
    page = editor.get("/t/acme/deliveries/")
    assert re.search(r'<tr id="delivery-1" class="status-pending"\s+hx-get="/t/acme/deliveries/1/row" hx-trigger="every 2s"', page.text)
    pending = editor.get("/t/acme/deliveries/1/row", htmx=True)
    assert pending.status_code == 200 and 'hx-trigger="every 2s"' in pending.text
    drainer.drain()
    final = editor.get("/t/acme/deliveries/1/row", htmx=True)
    assert final.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in final.text and "badge-succeeded" in final.text


def test_new_deliveries_appear_above_the_list(editor, api):
    api.endpoint("http://127.0.0.1:9/hook")
    api.publish()
    page = editor.get("/t/acme/deliveries/?event_type=order.created")
    sentinel = re.search(r'<tr id="newer-rows"[^>]*hx-get="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert "after=1" in sentinel and "event_type=order.created" in sentinel
    assert row_ids(editor.get(sentinel, htmx=True).text) == []
    api.publish()
    api.publish("other.type")
    fresh = editor.get(sentinel, htmx=True)
    assert row_ids(fresh.text) == [2]
    assert re.search(r'<tr id="newer-rows"[^>]*hx-get="[^"]*after=2', fresh.text)


def test_detail_shows_every_attempt_with_secrets_masked(app, editor, api, drainer):
    answers = iter([Response("busy", 503, {"Retry-After": "0"}), Response('{"ok": true}', 200, content_type="application/json")])
    with Receiver(lambda request: next(answers)) as receiver:
        api.endpoint(
            receiver.url,
            backoff_seconds=1,
            headers={"X-Api-Key": "sk_live_0123456789abcdef"},
            auth={"type": "bearer", "token": "tok_0123456789abcdef"},
        )
        api.publish("order.created", {"order": {"id": 7}})
        drainer.drain()
        with app.app_context():
            db.session.execute(update(Delivery).values(next_attempt_at=now_utc()))
            db.session.commit()
        drainer.drain()
        receiver.wait_for(2)
    page = editor.get("/t/acme/deliveries/1")
    assert page.status_code == 200
    text = squash(page.text)
    assert "badge-succeeded\">succeeded" in text and "2 attempts" in text
    assert text.index('attempt-number">#2') < text.index('attempt-number">#1')  # newest attempt first
    assert "busy" in text and "&#34;ok&#34;: true" in text
    assert "tok_0123456789abcdef" not in page.text and "sk_live_0123456789abcdef" not in page.text
    assert "Bear…" in page.text or "***" in page.text
    curl = re.search(r'<textarea id="curl-2"[^>]*>(.*?)</textarea>', page.text, re.S).group(1)
    assert curl.startswith("curl -X POST ") and "-H &#39;webhook-id: msg_" in curl and "--data-raw" in curl
    assert "tok_0123456789abcdef" not in curl
    assert "&#34;order&#34;" in page.text  # the payload, pretty-printed


def test_detail_polls_while_pending(editor, api):
    api.endpoint("http://127.0.0.1:9/hook")
    api.publish()
    page = editor.get("/t/acme/deliveries/1")
    assert 'hx-get="/t/acme/deliveries/1/attempts" hx-trigger="every 2s"' in page.text
    assert editor.get("/t/acme/deliveries/1/attempts", htmx=True).status_code == 200


def test_redeliver_queues_one_manual_attempt(app, editor, api, receiver, drainer):
    api.endpoint(receiver.url)
    api.publish()
    drainer.drain()
    row = editor.post("/t/acme/deliveries/1/redeliver", {"from": "row"}, htmx=True)
    assert row.status_code == 200
    assert row.text.lstrip().startswith('<tr id="delivery-1" class="status-pending"')
    item = delivery(app, 1)
    assert item.status == "pending" and item.next_trigger == "manual"
    drainer.drain()
    assert len(receiver.wait_for(2)) == 2
    assert delivery(app, 1).attempts == 2
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "delivery.redeliver"))
        assert entry.actor == "eddie" and entry.object_id == "1"
    # without htmx the form posts and comes back to the detail page
    plain = editor.post("/t/acme/deliveries/1/redeliver")
    assert plain.headers["Location"] == "/t/acme/deliveries/1"


def test_redeliver_needs_csrf_and_the_editor_role(app, editor, viewer, api):
    api.endpoint("http://127.0.0.1:9/hook")
    api.publish()
    with app.app_context():
        db.session.execute(update(Delivery).values(status="failed"))
        db.session.commit()
    assert editor.post("/t/acme/deliveries/1/redeliver", csrf=False).status_code == 400
    assert editor.post("/t/acme/deliveries/1/redeliver", htmx=True, csrf=False).status_code == 400
    assert viewer.post("/t/acme/deliveries/1/redeliver").status_code == 403
    assert "Redeliver" not in viewer.get("/t/acme/deliveries/").text
    assert delivery(app, 1).status == "failed"


def test_other_tenants_deliveries_are_not_found(app, editor, other_api):
    other_api.endpoint("http://127.0.0.1:9/hook")
    other_api.publish()
    for path in ("/t/acme/deliveries/1", "/t/acme/deliveries/1/row", "/t/acme/deliveries/1/attempts"):
        assert editor.get(path).status_code == 404
    assert editor.post("/t/acme/deliveries/1/redeliver").status_code == 404
    assert row_ids(editor.get("/t/acme/deliveries/").text) == []
    assert editor.get("/t/globex/deliveries/1").status_code == 404
    assert delivery(app, 1).next_trigger == "scheduled"


def test_replay_failed_asks_with_the_count_first(app, editor, api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook")
    api.post("/api/v1/events", json=[{"type": "order.created", "payload": {}} for _ in range(3)])
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.id.in_([1, 2])).values(status="failed"))
        db.session.commit()
    confirm = editor.get(f"/t/acme/deliveries/replay?endpoint_id={endpoint['id']}", htmx=True)
    assert confirm.status_code == 200
    assert "<strong>2</strong> failed deliveries" in squash(confirm.text)
    assert "Replay 2 deliveries" in confirm.text
    none_yet = editor.get(f"/t/acme/deliveries/replay?endpoint_id={endpoint['id']}&since={(now_utc() + timedelta(hours=1)):%Y-%m-%dT%H:%M}")
    assert "Nothing to replay" in none_yet.text
    done = editor.post("/t/acme/deliveries/replay", {"endpoint_id": str(endpoint["id"])})
    assert done.headers["Location"] == f"/t/acme/deliveries/?endpoint_id={endpoint['id']}"
    assert [delivery(app, n).status for n in (1, 2, 3)] == ["pending", "pending", "pending"]
    assert delivery(app, 1).next_trigger == "manual" and delivery(app, 3).next_trigger == "scheduled"
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "endpoint.replay"))
        assert entry.after["redelivered"] == 2
    assert "2 failed deliveries to http://127.0.0.1:9/hook queued again." in editor.get(done.headers["Location"]).text


def test_replay_refuses_bad_input_viewers_and_other_tenants(app, editor, viewer, api, other_api):
    endpoint = api.endpoint("http://127.0.0.1:9/hook")
    theirs = other_api.endpoint("http://127.0.0.1:9/hook")
    bad = editor.get(f"/t/acme/deliveries/replay?endpoint_id={endpoint['id']}&since=soon")
    assert bad.status_code == 422 and "Not a valid datetime value" in bad.text
    assert editor.get(f"/t/acme/deliveries/replay?endpoint_id={theirs['id']}").status_code == 422
    assert editor.post("/t/acme/deliveries/replay", {"endpoint_id": str(theirs["id"])}).status_code == 422
    assert viewer.post("/t/acme/deliveries/replay", {"endpoint_id": str(endpoint["id"])}).status_code == 403
    assert editor.post("/t/acme/deliveries/replay", {"endpoint_id": str(endpoint["id"])}, csrf=False).status_code == 400


def test_history_queries_use_indexes_only(app, api):
    """Every filter of the history page is answered through an index (SQLite's plan
    says SEARCH, never a bare SCAN of deliveries), so pages stay fast at millions of rows."""
    from sqlalchemy.dialects import sqlite

    from webhooks import history

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("checks SQLite's query plans; PostgreSQL chooses plans by statistics")
    endpoint = api.endpoint("http://127.0.0.1:9/hook")
    api.publish()
    cases = [
        (history.Filters(), "ix_deliveries_tenant_id"),
        (history.Filters(status="failed"), "ix_deliveries_tenant_status_id"),
        (history.Filters(endpoint_id=endpoint["id"]), "ix_deliveries_endpoint_id"),
        (history.Filters(endpoint_id=endpoint["id"], status="failed"), "ix_deliveries_endpoint_id"),
        (history.Filters(event_type="order.created"), "ix_deliveries_tenant_type_id"),
        (history.Filters(event="1"), "ix_deliveries_event"),
        (history.Filters(since=now_utc() - timedelta(hours=1), until=now_utc()), "ix_deliveries_tenant_id"),
    ]
    with app.app_context():
        for filters, index in cases:
            where = history.conditions(api.tenant_id, filters) + [Delivery.id < 10**9]
            query = select(Delivery).where(*where).order_by(Delivery.id.desc()).limit(51)
            sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            plan = " | ".join(row[-1] for row in db.session.execute(db.text("EXPLAIN QUERY PLAN " + sql)))
            assert f"SEARCH deliveries USING INDEX {index} (" in plan, (filters, plan)
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (filters, plan)


def test_history_never_shows_another_tenants_rows_through_a_filter(app, api, other_api):
    from webhooks import history

    theirs = other_api.endpoint("http://127.0.0.1:9/hook")
    event = other_api.publish()
    with app.app_context():
        assert history.page(api.tenant_id, history.Filters(endpoint_id=theirs["id"])).deliveries == []
        assert history.page(api.tenant_id, history.Filters(event=str(event["id"]))).deliveries == []
        assert history.page(api.tenant_id, history.Filters(event=event["webhook_id"])).deliveries == []
        assert len(history.page(other_api.tenant_id, history.Filters(endpoint_id=theirs["id"])).deliveries) == 1
