"""The shared watchdog timer and the trimmed-down send path of egress."""

from __future__ import annotations

import threading
import time

from werkzeug.wrappers import Response

from webhooks import egress
from webhooks.testing import Receiver
from webhooks.testing import wait_until


def test_alarms_fire_in_order_and_cancelled_ones_never():
    alarms = egress.Alarms()
    fired = []
    now = time.monotonic()
    with alarms._changed:  # the alarm thread waits until all are in place
        cancelled = alarms.add(now, lambda: fired.append("cancelled"))
        alarms.cancel(cancelled)
        alarms.add(now + 0.02, lambda: fired.append("second"))
        alarms.add(now + 0.01, lambda: fired.append("first"))
    wait_until(lambda: len(fired) == 2)
    assert fired == ["first", "second"]


def test_many_cancelled_alarms_do_not_pile_up():
    alarms = egress.Alarms()
    far = time.monotonic() + 3600
    for _ in range(5000):
        alarms.cancel(alarms.add(far, lambda: None))
    assert len(alarms._heap) < 2100


def test_attempts_share_one_watchdog_thread():
    with Receiver() as receiver:
        session = egress.new_session(4)
        try:
            for _ in range(5):
                exchange = egress.post(
                    session, receiver.url, headers={}, body=b"{}", timeout=5.0, body_limit=1024, allow_private=True
                )
                assert exchange.status == 200
        finally:
            session.close()
    assert not [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]


def test_cookies_a_receiver_sets_are_not_sent_back():
    with Receiver(lambda request: Response("ok", headers={"Set-Cookie": "session=abc; Path=/"})) as receiver:
        session = egress.new_session(4)
        try:
            for _ in range(2):
                egress.post(
                    session, receiver.url, headers={}, body=b"{}", timeout=5.0, body_limit=1024, allow_private=True
                )
        finally:
            session.close()
        assert all("Cookie" not in request.headers for request in receiver.wait_for(2))
