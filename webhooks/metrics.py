"""Prometheus metrics: counters kept by each process, gauges read from the database.

Counters (attempts, inbound answers) live in the process that did the work.
With ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client's own switch; an
empty folder, the same for every process of one host, set before they start)
``/metrics`` adds up every gunicorn worker and ``flask worker`` of the host.
Without it each process answers for itself. The database-backed gauges
(deliveries by status, due backlog) are the same from any process.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

REGISTRY = CollectorRegistry()
ATTEMPTS = Counter("webhooks_attempts", "Delivery attempts by resulting status.", ["outcome"], registry=REGISTRY)
ATTEMPT_SECONDS = Histogram(
    "webhooks_attempt_duration_seconds",
    "Time from sending a delivery to reading its response.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
INBOUND = Counter("webhooks_inbound_requests", "Inbound requests by HTTP answer.", ["code"], registry=REGISTRY)
_INBOUND_BY_CODE: dict[int, Counter] = {}


def observe_attempt(outcome: str, duration_ms: int) -> None:
    """Count one delivery attempt."""
    ATTEMPTS.labels(outcome).inc()
    ATTEMPT_SECONDS.observe(duration_ms / 1000)


def observe_inbound(code: int) -> None:
    """Count one answer to a provider."""
    child = _INBOUND_BY_CODE.get(code)
    if child is None:
        # ``labels()`` takes a lock and builds a key on every call; the hook path counts each request.
        child = _INBOUND_BY_CODE.setdefault(code, INBOUND.labels(str(code)))
    child.inc()


class DatabaseCollector:
    """Gauges computed at scrape time inside the app context of the scrape."""

    def describe(self):
        return []  # nothing to check at registration, which runs outside any app context

    def collect(self):
        from webhooks.db import db

        try:
            gauges = list(self._read(db))
        except SQLAlchemyError:
            # The process counters are still worth scraping while the database is away.
            gauges = []
        finally:
            db.session.rollback()
        up = int(bool(gauges))
        yield GaugeMetricFamily("webhooks_database_up", "1 when the database answered this scrape.", value=up)
        yield from gauges

    def _read(self, db):
        from webhooks.db import now_utc
        from webhooks.models import Delivery

        by_status = GaugeMetricFamily("webhooks_deliveries", "Deliveries by status.", labels=["status"])
        for status, count in db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)):
            by_status.add_metric([status], count)
        yield by_status
        due = db.session.scalar(
            select(func.count()).where(Delivery.status == "pending", Delivery.next_attempt_at <= now_utc())
        )
        yield GaugeMetricFamily("webhooks_due_backlog", "Pending deliveries whose time has come.", value=due)


DATABASE = DatabaseCollector()
REGISTRY.register(DATABASE)


def render() -> bytes:
    """The exposition text for ``/metrics``; call it inside an app context."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(DATABASE)
    return generate_latest(registry)
