"""The worker loop: claims in quarters of the slots, back-to-back sweeps, graceful stop."""

from __future__ import annotations

import threading

from werkzeug.wrappers import Response

from webhooks.db import db
from webhooks.models import Delivery
from webhooks.testing import Receiver
from webhooks.testing import wait_until
from webhooks.worker import Worker


def succeeded(app) -> int:
    with app.app_context():
        try:
            return db.session.query(Delivery).filter(Delivery.status == "succeeded").count()
        finally:
            db.session.remove()


def sweep(app, worker, budget: float) -> int:
    with app.app_context():
        try:
            return worker.sweep(budget=budget)
        finally:
            db.session.remove()


def test_a_sweep_claims_only_once_a_quarter_of_the_slots_is_free(app, api):
    gate = threading.Semaphore(0)

    def held(request):
        gate.acquire(timeout=30)
        return Response("ok")

    with Receiver(held) as receiver:
        api.endpoint(receiver.url, event_types=["a.*"])
        api.endpoint(receiver.url, event_types=["b.*"])
        for n in range(6):
            api.publish("a.x", {"n": n})
        api.publish("b.x")
        worker = Worker(app, concurrency=8, name="quarters")
        try:
            assert worker.claim_at == 2
            assert sweep(app, worker, 0.2) == 7
            receiver.wait_for(7)
            api.publish("b.x")
            assert sweep(app, worker, 0.2) == 0, "one free slot is not worth a claim"
            gate.release()
            wait_until(lambda: worker.in_flight == 6)
            assert sweep(app, worker, 0.2) == 1
        finally:
            for _ in range(8):
                gate.release()
            worker.stop(timeout=10)
    assert succeeded(app) == 8


def test_run_sweeps_back_to_back_until_stopped(app, api, receiver):
    api.endpoint(receiver.url)
    api.post("/api/v1/events", json=[{"type": "a", "payload": {"n": n}} for n in range(30)])
    worker = Worker(app, concurrency=4, name="runner")
    stopped = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stopped,))
    thread.start()
    try:
        wait_until(lambda: succeeded(app) == 30)
    finally:
        stopped.set()
        thread.join(10)
        worker.stop(timeout=10)
    assert not thread.is_alive()
    assert len(receiver.wait_for(30)) == 30


def test_a_claim_whose_read_fails_is_rolled_back_with_it(app, api, receiver, monkeypatch):
    api.endpoint(receiver.url)
    api.publish("a.x")
    worker = Worker(app, concurrency=4, name="unread")

    def broken_read(delivery_ids, owner):
        raise RuntimeError("the read failed")

    monkeypatch.setattr("webhooks.delivery.select_jobs", broken_read)
    try:
        with app.app_context():
            try:
                worker.sweep(budget=0.2)
            except RuntimeError:
                db.session.rollback()
            finally:
                db.session.remove()
        with app.app_context():
            (row,) = db.session.query(Delivery).all()
            assert (row.status, row.lease_owner) == ("pending", None), "nothing stays leased to a sweep that failed"
            db.session.remove()
        monkeypatch.undo()
        assert sweep(app, worker, 0.2) == 1
        wait_until(lambda: succeeded(app) == 1)
    finally:
        worker.stop(timeout=10)
