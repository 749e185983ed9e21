"""Retention: old history goes in small batches; nothing unfinished goes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from webhooks import health
from webhooks import ratelimit
from webhooks import retention
from webhooks import scheduler
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.models import Heartbeat
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest
from webhooks.models import RateCounter
from webhooks.models import Source


def age(model, ids, days: float) -> None:
    """Pretend these rows were created ``days`` ago."""
    db.session.execute(update(model).where(model.id.in_(ids)).values(created_at=now_utc() - timedelta(days=days)))
    db.session.commit()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def publish_and_deliver(api, drainer, n: int) -> list[int]:
    events = api.post("/api/v1/events", json=[{"type": "a", "payload": {"n": i}} for i in range(n)]).get_json()
    drainer.drain()
    return [event["id"] for event in events["data"]]


def test_old_history_goes_and_recent_history_stays(app, api, receiver, drainer):
    api.endpoint(receiver.url)
    api.endpoint(receiver.url + "/second")
    old = publish_and_deliver(api, drainer, 5)
    recent = publish_and_deliver(api, drainer, 3)
    with app.app_context():
        age(Event, old, days=91)
        deleted = retention.purge(90, batch=2)
        assert deleted["events"] == 5 and deleted["deliveries"] == 10 and deleted["attempts"] == 10
        assert set(db.session.scalars(select(Event.id))) == set(recent)
        assert count(Delivery) == 6 and count(Attempt) == 6
        assert retention.purge(90)["events"] == 0


def test_unfinished_deliveries_keep_their_events(app, api, receiver, drainer):
    """A delivery still pending (or in flight) is never deleted, nor is its event."""
    api.endpoint(receiver.url)
    held = publish_and_deliver(api, drainer, 1)
    behind = publish_and_deliver(api, drainer, 4)
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.event_id == held[0]).values(status="pending"))
        age(Event, held + behind, days=100)
        deleted = retention.purge(90, batch=2)
        assert deleted["events"] == 4, "the held event at the front does not stop the walk"
        assert list(db.session.scalars(select(Event.id))) == held
        assert db.session.scalar(select(Delivery.status)) == "pending"
        assert count(Attempt) == 1, "an unfinished delivery keeps its attempt history"
        db.session.execute(update(Delivery).values(status="delivering"))
        db.session.commit()
        assert retention.purge(90)["events"] == 0


def test_old_inbound_requests_go_once_processed(app, api):
    with app.app_context():
        source = Source(tenant_id=api.tenant_id, slug="github", provider="github")
        db.session.add(source)
        db.session.flush()
        requests = {
            status: InboundRequest(
                tenant_id=api.tenant_id, source_id=source.id, status=status, http_status=202, headers={}, body=b"{}"
            )
            for status in ("processed", "failed", "received", "processing")
        }
        db.session.add_all(requests.values())
        db.session.flush()
        db.session.add(InboundAttempt(request_id=requests["processed"].id, number=1, outcome="published"))
        db.session.commit()
        age(InboundRequest, [r.id for r in requests.values()], days=120)
        deleted = retention.purge(90)
        assert deleted["inbound_requests"] == 2 and deleted["inbound_attempts"] == 1
        assert set(db.session.scalars(select(InboundRequest.status))) == {"received", "processing"}


def test_dead_workers_heartbeats_and_old_rate_windows_go(app):
    with app.app_context():
        health.beat("alive")
        health.beat("dead", now=now_utc() - timedelta(days=2))
        ratelimit.take("endpoint:1", 10, "second", now=1_000.0)
        ratelimit.take("endpoint:1", 10, "second")
        db.session.commit()
        deleted = retention.purge(90)
        assert deleted["heartbeats"] == 1 and deleted["rate_counters"] == 1
        assert list(db.session.scalars(select(Heartbeat.worker))) == ["alive"]
        assert count(RateCounter) == 1


def test_every_scheduler_runs_retention(app):
    started = scheduler.start(app)
    try:
        job = started.get_job("retention")
        assert job is not None and job.trigger.interval == timedelta(seconds=retention.RUN_EVERY)
    finally:
        scheduler.stop(app, timeout=5)


def test_retention_days_is_configurable(database_url, tmp_path, monkeypatch):
    from conftest import make_app

    monkeypatch.setenv("WEBHOOKS_RETENTION_DAYS", "7")
    assert make_app(database_url, tmp_path).config["RETENTION_DAYS"] == 7
