"""The sweep: claim due deliveries and run them on a bounded thread pool.

One ``Worker`` per process. Each sweep claims only as many deliveries as there
are free slots, so nothing claimed waits in a queue while its lease runs out,
and no endpoint may hold more than three quarters of the slots, so one
receiver that hangs until its timeout cannot starve the others. A claim is a
transaction, so the sweep waits until a quarter of the slots are free and
fills them with one claim, instead of paying a claim for every slot that frees.
The outcomes are written the same way: one recorder thread commits whatever
attempts finished since its last commit (``delivery.Recorder``).
Stopping is graceful: no new claims, in-flight attempts finish (bounded by
their timeouts), and anything claimed but not started is released.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy.exc import OperationalError

from webhooks import claims
from webhooks import delivery
from webhooks import egress
from webhooks import health
from webhooks import receiver_auth
from webhooks.db import db

log = logging.getLogger("webhooks.worker")

RECLAIM_EVERY = 5.0


def worker_name() -> str:
    """``host:pid:random``: unique per process, readable in the lease_owner column."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(self, app: Flask, *, concurrency: int | None = None, name: str | None = None) -> None:
        config = app.config
        self.app = app
        self.name = name or worker_name()
        self.concurrency = concurrency or config["DELIVERY_CONCURRENCY"]
        self.per_endpoint = max(1, self.concurrency * 3 // 4)
        self.batch = config["CLAIM_BATCH"]
        # Free slots worth a claim: a quarter of what one claim may take. Capped
        # by the batch, so a big pool with most threads stuck on a hanging
        # receiver still claims for the others.
        self.claim_at = max(1, min(self.concurrency, self.batch) // 4)
        self.lease_seconds = config["LEASE_SECONDS"]
        self.settings = delivery.Settings(
            session=egress.new_session(self.concurrency),
            tokens=receiver_auth.TokenCache(),
            allow_private=config["ALLOW_PRIVATE_TARGETS"],
            body_limit=config["RESPONSE_BODY_LIMIT"],
            user_agent=config["USER_AGENT"],
            recorder=delivery.Recorder(app, backlog=self.concurrency),
        )
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="delivery")
        self._lock = threading.Condition()
        self._in_flight: Counter[int] = Counter()
        self._queued: dict[tuple[int, ...], int] = {}  # claimed, not started: delivery ids -> endpoint id
        self._stopping = threading.Event()
        self._last_reclaim = 0.0

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def sweep(self, budget: float | None = None) -> int:
        """Claim and start due deliveries for up to ``budget`` seconds; return how many started.

        Runs until nothing is due or the time is up; while fewer than a quarter
        of the slots are free it waits for more to free up instead of claiming
        a few deliveries at a time.
        Each sweep first writes this worker's heartbeat (for ``/healthz``).
        Must run inside an app context.
        """
        deadline = time.monotonic() + (budget if budget is not None else self.app.config["SWEEP_INTERVAL"])
        health.beat(self.name)
        self._reclaim_if_due()
        started = 0
        while not self._stopping.is_set():
            with self._lock:
                free = self.concurrency - self.in_flight
                if free < self.claim_at:
                    if not self._lock.wait(max(deadline - time.monotonic(), 0)) or time.monotonic() >= deadline:
                        break
                    continue
                saturated = [e for e, n in self._in_flight.items() if n >= self.per_endpoint]
            work, rows = self._claim(free, saturated)
            for ids, endpoint_id in work:
                self._start(ids, endpoint_id, [rows[delivery_id] for delivery_id in ids if delivery_id in rows])
            started += len(work)
            if not work or time.monotonic() >= deadline:
                break
        return started

    def run(self, stopped: threading.Event) -> None:
        """Sweep back to back until ``stopped`` is set: what ``flask worker`` does.

        A sweep that found work is followed at once by the next one; after a
        sweep that found nothing due the worker waits one sweep interval.
        """
        interval = self.app.config["SWEEP_INTERVAL"]
        while not stopped.is_set():
            with self.app.app_context():
                try:
                    started = self.sweep(budget=interval)
                except OperationalError as exc:
                    # During a database outage every sweep fails alike: one line each, no traceback.
                    log.error("sweep failed, database unavailable (%s)", str(exc.orig or exc).strip().splitlines()[0])
                    db.session.rollback()
                    started = 0
                except Exception:
                    log.exception("sweep failed; sweeping again after the interval")
                    db.session.rollback()
                    started = 0
                finally:
                    db.session.remove()
            if not started:
                stopped.wait(interval)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is in flight and every outcome is written; for tests and shutdown."""
        end = time.monotonic() + timeout
        with self._lock:
            while self.in_flight:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return self.settings.recorder.flush(max(end - time.monotonic(), 0))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let in-flight attempts finish, release what never started."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            never_started = list(self._queued.items())
            self._queued.clear()
        for ids, endpoint_id in never_started:
            self._done(ids, endpoint_id)
        if never_started:
            with self.app.app_context():
                claims.release([delivery_id for ids, _ in never_started for delivery_id in ids], self.name)
                db.session.remove()
        if not self.wait_idle(timeout):
            log.warning("worker %s stopped with %s deliveries still in flight", self.name, self.in_flight)
        self.settings.recorder.stop()
        self.settings.session.close()

    def _reclaim_if_due(self) -> None:
        if time.monotonic() - self._last_reclaim < RECLAIM_EVERY:
            return
        self._last_reclaim = time.monotonic()
        reclaimed = claims.reclaim_expired()
        if reclaimed:
            log.warning("reclaimed %s deliveries whose lease expired", len(reclaimed))

    def _claim(self, free: int, saturated: list[int]) -> tuple[list[tuple[tuple[int, ...], int]], dict]:
        """Claim work for ``free`` slots and read what it needs, in one transaction, and commit.

        Returns ``(delivery ids, endpoint id)`` per slot and the rows of
        :func:`delivery.select_jobs` by delivery id. One transaction rather than
        one each for batches, single deliveries and the read: each costs a
        pool checkout (a ping on PostgreSQL) and a commit. Should the read
        fail, the claim is rolled back with it (by the caller), and nothing
        stays leased to a sweep that never started it.
        """
        batches, claimed = claims.take_work(
            self.name,
            free,
            self.batch,
            lease_seconds=self.lease_seconds,
            excluded=saturated,
            per_endpoint=self.per_endpoint,
        )
        work = [(tuple(ids), endpoint_id) for ids, endpoint_id in batches]
        work += [((delivery_id,), endpoint_id) for delivery_id, endpoint_id in claimed]
        delivery_ids = [delivery_id for ids, _ in work for delivery_id in ids]
        rows = {row.id: row for row in delivery.select_jobs(delivery_ids, self.name)} if delivery_ids else {}
        db.session.commit()
        return work, rows

    def _start(self, ids: tuple[int, ...], endpoint_id: int, rows: list) -> None:
        with self._lock:
            self._in_flight[endpoint_id] += 1
            self._queued[ids] = endpoint_id
        try:
            self._pool.submit(self._run, ids, endpoint_id, rows)
        except RuntimeError:  # the pool shut down between claim and submit
            self._done(ids, endpoint_id)

    def _run(self, ids: tuple[int, ...], endpoint_id: int, rows: list) -> None:
        with self._lock:
            if self._queued.pop(ids, None) is None:
                return  # released by stop() while waiting for a thread
        try:
            with self.app.app_context():
                try:
                    delivery.deliver_read(rows, self.name, self.settings)
                except Exception:
                    # The lease stays; it expires and the delivery is claimed again.
                    log.exception(
                        "delivery %s crashed; it will be retried after its lease expires", " ".join(map(str, ids))
                    )
                    db.session.rollback()
                finally:
                    db.session.remove()
        finally:
            self._done(ids, endpoint_id)

    def _done(self, ids: tuple[int, ...], endpoint_id: int) -> None:
        with self._lock:
            self._queued.pop(ids, None)
            self._in_flight[endpoint_id] -= 1
            if self._in_flight[endpoint_id] <= 0:
                del self._in_flight[endpoint_id]
            self._lock.notify_all()
