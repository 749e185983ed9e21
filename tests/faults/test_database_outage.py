"""The database goes away for a while (a TCP proxy between the hub and PostgreSQL
is cut, as a restart would): sweeps fail, log and resume; the web answers 503
JSON; nothing accepted before is lost.

The shared PostgreSQL server itself is never stopped: other suites use it.
"""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.engine import make_url

from processes import CountingReceiver
from processes import TcpProxy
from processes import hub  # noqa: F401  (fixture)
from webhooks.db import db
from webhooks.models import Delivery
from webhooks.models import Event
from webhooks.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def publish(web, key: str, count: int, start: int) -> requests.Response:
    events = [{"type": "outage.test", "payload": {"i": i}} for i in range(start, start + count)]
    return requests.post(f"{web.url}/api/v1/events", json=events, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_database_outage_is_ridden_out(hub):
    url = make_url(hub.database_url)
    proxy = TcpProxy((url.host, url.port or 5432))
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    receiver = CountingReceiver()
    try:
        api = hub.api()
        api.endpoint(receiver.url)
        web = hub.gunicorn("web", database_url=proxied, scheduler="off")
        worker = hub.worker("worker", database_url=proxied, lease_seconds=5)

        before = publish(web, api.key, 50, 0)
        assert before.status_code == 202
        accepted = {event["webhook_id"] for event in before.json()["data"]}
        receiver.wait_for_ids(accepted, timeout=60)

        receiver.gate.clear()  # the next deliveries stay on the wire until the database is gone
        during = publish(web, api.key, 20, 50)
        assert during.status_code == 202
        accepted |= {event["webhook_id"] for event in during.json()["data"]}
        wait_until(lambda: receiver.total() > 50, timeout=30)

        proxy.cut()
        cut_at = time.monotonic()
        with hub.app.app_context():  # the test reaches PostgreSQL directly, the hub no longer can
            leased = _leased()
        assert leased, "deliveries were in flight when the database went away"
        receiver.gate.set()  # their outcomes cannot be recorded now

        refused = publish(web, api.key, 1, 1000)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Content-Type"] == "application/json" and refused.headers["Retry-After"]
        assert refused.json()["error"]["code"] == "unavailable"
        read = requests.get(f"{web.url}/api/v1/deliveries", headers={"Authorization": f"Bearer {api.key}"}, timeout=30)
        assert read.status_code == 503 and read.json()["error"]["code"] == "unavailable"
        health = requests.get(f"{web.url}/healthz", timeout=30)
        assert health.status_code == 503 and health.json()["database"]["ok"] is False
        wait_until(lambda: "scheduled job failed, database unavailable" in worker.log(), timeout=30)
        wait_until(lambda: time.monotonic() - cut_at > 3, timeout=10, interval=0.5)  # a real outage lasts a while

        proxy.restore()
        after = wait_until(lambda: _accepted(publish(web, api.key, 30, 2000)), timeout=30, interval=0.5)
        accepted |= {event["webhook_id"] for event in after.json()["data"]}

        receiver.wait_for_ids(accepted, timeout=60)
        with hub.app.app_context():
            wait_until(lambda: _statuses() == {"succeeded": len(accepted)}, timeout=30)
        repeats = {webhook_id for webhook_id, n in receiver.ids.items() if n > 1}
        assert repeats, "the deliveries held on the wire during the cut are sent again"
        assert repeats <= leased, "only deliveries whose outcome could not be recorded are sent again"
        assert receiver.ids.keys() == accepted, "every accepted event arrives; nothing refused was stored"
        assert "Traceback" not in web.log(), "the web answered the outage, it did not crash on it"
        assert "database unavailable" in web.log()
    finally:
        receiver.close()
        proxy.close()


def _accepted(response: requests.Response) -> requests.Response | None:
    return response if response.status_code == 202 else None


def _leased() -> set[str]:
    """``webhook-id`` of every delivery under a lease (the hub cannot change them while cut off)."""
    query = select(Event.uid).join(Delivery, Delivery.event_id == Event.id).where(Delivery.status == "delivering")
    uids = set(db.session.scalars(query))
    db.session.rollback()
    return uids


def _statuses() -> dict[str, int]:
    counts = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    db.session.rollback()
    return counts
