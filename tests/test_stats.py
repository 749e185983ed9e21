"""Overview numbers: counted from real deliveries, bounded to the last 24 hours."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from werkzeug.wrappers import Response

from webhooks import stats
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.testing import Receiver


def test_percentile_is_nearest_rank():
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([7], 0.95) == 7
    values = list(range(1, 101))
    assert stats.percentile(values, 0.5) == 50
    assert stats.percentile(values, 0.95) == 95
    assert stats.percentile([30, 10, 20], 0.5) == 20


def test_endpoint_stats_count_the_last_day_only(app, api, receiver, drainer):
    endpoint = api.endpoint(receiver.url)
    for _ in range(4):
        api.publish()
    drainer.drain()
    old = now_utc() - timedelta(days=2)
    with app.app_context():
        # the first event and its delivery and attempt happened two days ago
        db.session.execute(update(Event).where(Event.id == 1).values(created_at=old))
        db.session.execute(update(Delivery).where(Delivery.id == 1).values(created_at=old))
        db.session.execute(update(Attempt).where(Attempt.delivery_id == 1).values(started_at=old))
        db.session.commit()
        api.publish()  # pending: the backlog
        (item,) = stats.endpoint_stats(api.tenant_id)
        assert item.endpoint.id == endpoint["id"]
        assert (item.deliveries, item.succeeded, item.failed, item.backlog) == (4, 3, 0, 1)
        assert item.success_rate == 1.0 and item.state == "healthy"
        assert item.p50_ms is not None and item.p95_ms >= item.p50_ms
        hours = stats.hourly(api.tenant_id)
        assert len(hours) == 24 and hours[-1].attempts == 3 and sum(h.attempts for h in hours) == 3


def test_hourly_failures_and_other_tenants(app, api, other_api, drainer):
    with Receiver(lambda request: Response("no", 500)) as broken:
        api.endpoint(broken.url, max_attempts=1)
        other_api.endpoint(broken.url, max_attempts=1)
        api.publish()
        other_api.publish()
        other_api.publish()
        drainer.drain()
    with app.app_context():
        hours = stats.hourly(api.tenant_id)
        assert (hours[-1].attempts, hours[-1].failures) == (1, 1)
        (item,) = stats.endpoint_stats(api.tenant_id)
        assert (item.deliveries, item.failed, item.state) == (1, 1, "failing")
        assert item.success_rate == 0.0


def test_an_empty_window(app, api):
    api.endpoint("http://127.0.0.1:9/hook")
    with app.app_context():
        (item,) = stats.endpoint_stats(api.tenant_id)
        assert item.deliveries == 0 and item.success_rate is None and item.p50_ms is None
        assert all(h.attempts == 0 for h in stats.hourly(api.tenant_id))
