"""Numbers for the overview: the last 24 hours per endpoint and per hour.

Every query is bounded to the window and served by an index: deliveries by
``(tenant_id, id)`` from the first id of the window (see
:func:`webhooks.history.first_delivery_id_since`), attempts by
``started_at``, the backlog by ``(tenant_id, status, id)``. Latency
percentiles come from the newest :data:`LATENCY_SAMPLE` attempts of the
window, which is plenty for a p95 and keeps a busy day from being read into
memory.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

from sqlalchemy import Integer
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import cast
from sqlalchemy import func
from sqlalchemy import select

from webhooks.db import db
from webhooks.db import now_utc
from webhooks.history import first_delivery_id_since
from webhooks.models import DELIVERING
from webhooks.models import FAILED
from webhooks.models import PENDING
from webhooks.models import SUCCEEDED
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint

WINDOW = timedelta(hours=24)
LATENCY_SAMPLE = 10_000


@dataclass
class EndpointStats:
    """One endpoint's last 24 hours; ``state`` is ``disabled``, ``failing`` or ``healthy``."""

    endpoint: Endpoint
    deliveries: int = 0
    succeeded: int = 0
    failed: int = 0
    backlog: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None
    durations: list[int] = field(default_factory=list, repr=False)

    @property
    def success_rate(self) -> float | None:
        """Succeeded share of the finished deliveries, None when none finished."""
        finished = self.succeeded + self.failed
        return self.succeeded / finished if finished else None

    @property
    def state(self) -> str:
        if not self.endpoint.enabled:
            return "disabled"
        if self.endpoint.consecutive_failures > 0 or (self.failed > 0 and not self.succeeded):
            return "failing"
        return "healthy"


@dataclass(frozen=True)
class Hour:
    """One bar of the chart: attempts started in the hour, and how many failed."""

    start: datetime
    attempts: int
    failures: int


def percentile(values: list[int], share: float) -> int | None:
    """Nearest-rank percentile (``share`` 0.5 for the median); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def endpoint_stats(tenant_id: int, *, now: datetime | None = None, endpoint_id: int | None = None) -> list[EndpointStats]:
    """Per endpoint of the tenant: volume, outcome, latency and backlog; troubled endpoints first."""
    now = now or now_utc()
    query = select(Endpoint).where(Endpoint.tenant_id == tenant_id).order_by(Endpoint.id)
    if endpoint_id is not None:
        query = query.where(Endpoint.id == endpoint_id)
    stats = {endpoint.id: EndpointStats(endpoint) for endpoint in db.session.scalars(query)}
    if not stats:
        return []
    _count_deliveries(tenant_id, stats, now)
    _count_backlog(tenant_id, stats)
    _measure_latency(tenant_id, stats, now)
    order = {"disabled": 0, "failing": 1, "healthy": 2}
    return sorted(stats.values(), key=lambda s: (order[s.state], -s.deliveries, s.endpoint.id))


def _count_deliveries(tenant_id: int, stats: dict[int, EndpointStats], now: datetime) -> None:
    first = first_delivery_id_since(now - WINDOW)
    if first is None:
        return
    rows = db.session.execute(
        select(Delivery.endpoint_id, Delivery.status, func.count())
        .where(Delivery.tenant_id == tenant_id, Delivery.id >= first)
        .group_by(Delivery.endpoint_id, Delivery.status)
    )
    for endpoint_id, status, count in rows:
        item = stats.get(endpoint_id)
        if item is None:
            continue
        item.deliveries += count
        if status == SUCCEEDED:
            item.succeeded += count
        elif status == FAILED:
            item.failed += count


def _count_backlog(tenant_id: int, stats: dict[int, EndpointStats]) -> None:
    # Grouping by an expression, not the bare column: SQLite would otherwise walk
    # the whole (endpoint_id, id) index to get its groups in order, over a
    # second at a million rows, instead of reading only the backlog through
    # (tenant_id, status, id) in a millisecond.
    endpoint = (Delivery.endpoint_id + 0).label("endpoint")
    rows = db.session.execute(
        select(endpoint, func.count())
        .where(Delivery.tenant_id == tenant_id, Delivery.status.in_((PENDING, DELIVERING)))
        .group_by(endpoint)
    )
    for endpoint_id, count in rows:
        if endpoint_id in stats:
            stats[endpoint_id].backlog = count


def _measure_latency(tenant_id: int, stats: dict[int, EndpointStats], now: datetime) -> None:
    rows = db.session.execute(
        select(Delivery.endpoint_id, Attempt.duration_ms)
        .join(Delivery, Attempt.delivery_id == Delivery.id)
        .where(Attempt.started_at >= now - WINDOW, Delivery.tenant_id == tenant_id, Attempt.duration_ms.is_not(None))
        .order_by(Attempt.started_at.desc())
        .limit(LATENCY_SAMPLE)
    )
    for endpoint_id, duration in rows:
        if endpoint_id in stats:
            stats[endpoint_id].durations.append(duration)
    for item in stats.values():
        item.p50_ms = percentile(item.durations, 0.50)
        item.p95_ms = percentile(item.durations, 0.95)


def _hour_number(column):
    """Hours since the epoch, in SQL: the bucket of the hourly chart."""
    if db.engine.dialect.name == "sqlite":
        return cast(func.strftime("%s", column), Integer) // 3600
    return cast(func.floor(func.extract("epoch", column) / 3600), Integer)


def hourly(tenant_id: int, *, now: datetime | None = None, endpoint_id: int | None = None) -> list[Hour]:
    """Attempts and failed attempts per hour over the last 24 hours, oldest first, gaps as zeros."""
    now = now or now_utc()
    current = math.floor(now.timestamp() / 3600)
    hours = list(range(current - 23, current + 1))
    bucket = _hour_number(Attempt.started_at).label("hour")
    ok = and_(Attempt.response_status >= 200, Attempt.response_status < 300)
    # The tenant as an expression, not the bare column: with bound parameters
    # SQLite would otherwise start from the tenant's whole history and look up
    # attempts per delivery, instead of reading the day's attempts by time.
    query = (
        select(bucket, func.count(), func.sum(case((ok, 0), else_=1)))
        .join(Delivery, Attempt.delivery_id == Delivery.id)
        .where(Attempt.started_at >= datetime.fromtimestamp(hours[0] * 3600, now.tzinfo), Delivery.tenant_id + 0 == tenant_id)
        .group_by(bucket)
    )
    if endpoint_id is not None:
        query = query.where(Delivery.endpoint_id + 0 == endpoint_id)  # as above
    attempts: dict[int, int] = defaultdict(int)
    failures: dict[int, int] = defaultdict(int)
    for hour, count, failed in db.session.execute(query):
        attempts[int(hour)] += count
        failures[int(hour)] += int(failed or 0)
    return [Hour(datetime.fromtimestamp(h * 3600, now.tzinfo), attempts[h], failures[h]) for h in hours]
