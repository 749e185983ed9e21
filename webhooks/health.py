"""Health: is the database there, is some scheduler sweeping, how much work is due.

Every sweep writes its worker's heartbeat into the database, so any process
(a web-only one too) can tell whether deliveries are moving anywhere.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webhooks.db import UTCDateTime
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Delivery
from webhooks.models import Heartbeat

log = logging.getLogger("webhooks.health")

BEAT = text(
    "INSERT INTO heartbeats (worker, beat_at) VALUES (:worker, :now)"
    " ON CONFLICT (worker) DO UPDATE SET beat_at = excluded.beat_at"
).bindparams(bindparam("now", type_=UTCDateTime()))

# A heartbeat older than this many sweep intervals (and at least STALE_MIN
# seconds) means no scheduler is sweeping: a busy sweep may take a few intervals.
STALE_INTERVALS = 10
STALE_MIN = 30.0
HEARTBEATS_KEPT = timedelta(days=1)


def beat(worker: str, now: datetime | None = None) -> None:
    """Record that ``worker`` is sweeping now, and commit."""
    db.session.execute(BEAT, {"worker": worker, "now": now or now_utc()})
    db.session.commit()


def prune_heartbeats(now: datetime | None = None) -> int:
    """Forget workers that have not swept for a day (they stopped or died); return how many."""
    cutoff = (now or now_utc()) - HEARTBEATS_KEPT
    result = db.session.execute(db.delete(Heartbeat).where(Heartbeat.beat_at < cutoff))
    db.session.commit()
    return result.rowcount


def stale_after() -> float:
    """Seconds without a heartbeat after which the scheduler counts as stopped."""
    return max(STALE_MIN, STALE_INTERVALS * current_app.config["SWEEP_INTERVAL"])


def report(now: datetime | None = None) -> tuple[bool, dict]:
    """``(healthy, details)`` for ``/healthz``.

    Healthy means the database answers and some worker swept recently. The
    due backlog is reported, not judged: a burst of events is not an outage,
    and alerting on ``oldest_due_seconds`` is the operator's call.
    """
    now = now or now_utc()
    started = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        newest, live = db.session.execute(
            select(
                func.max(Heartbeat.beat_at),
                func.count().filter(Heartbeat.beat_at >= now - timedelta(seconds=stale_after())),
            )
        ).one()
        due, oldest = db.session.execute(
            select(func.count(), func.min(Delivery.next_attempt_at)).where(
                Delivery.status == "pending", Delivery.next_attempt_at <= now
            )
        ).one()
    except SQLAlchemyError as exc:
        # The reason goes to the log only: it names hosts and ports, and /healthz needs no login.
        log.error("health check: database unavailable: %s", str(getattr(exc, "orig", None) or exc).strip())
        return False, {"status": "unavailable", "database": {"ok": False, "error": "the database did not answer"}}
    finally:
        db.session.rollback()  # end the read transaction; health checks must not hold snapshots
    last_beat = (now - newest).total_seconds() if newest else None
    sweeping = live > 0
    details = {
        "status": "ok" if sweeping else "unavailable",
        "database": {"ok": True, "latency_ms": latency_ms},
        "scheduler": {
            "ok": sweeping,
            "workers": live,
            "last_beat_seconds_ago": None if last_beat is None else round(last_beat, 1),
            "stale_after_seconds": stale_after(),
        },
        "backlog": {
            "due": due,
            "oldest_due_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
        },
    }
    return sweeping, details
