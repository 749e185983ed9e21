"""Leases on due deliveries: the only SQL that differs between dialects.

A sweep claims a batch with one statement that only one process can win:
PostgreSQL skips rows another transaction has locked (``FOR UPDATE SKIP
LOCKED``); SQLite serialises writers, so a conditional UPDATE over a
sub-select is already atomic. A claimed row carries its owner and a lease
expiry. Every later write is fenced on the owner, so a worker that lost its
lease (it was presumed dead) cannot overwrite the outcome of the worker that
took over, and a crashed worker's deliveries are claimed again once their
lease runs out.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from datetime import datetime
from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy import text

from webhooks.db import UTCDateTime
from webhooks.db import db
from webhooks.db import is_postgres
from webhooks.db import now_utc
from webhooks.models import DELIVERING
from webhooks.models import PENDING
from webhooks.models import BigId

# Candidates are the oldest due rows whose endpoint is neither saturated in this
# process, nor held by an open circuit, nor (in ordered mode) busy or ahead of an
# older pending delivery. A cap per endpoint within one batch keeps one hot
# endpoint from taking every slot. On PostgreSQL the scan itself skips the rows
# another sweeper is claiming ({lock}): without that, two sweepers picked the
# same oldest rows, the loser's claim came back empty although thousands were
# due, and its worker slept a sweep interval (two workers delivered 1.2-1.5x one).
CANDIDATES = """
SELECT id FROM (
    SELECT d.id, d.next_attempt_at,
           row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS rank_in_endpoint
    FROM (
        SELECT id, endpoint_id, next_attempt_at FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= :now
          AND endpoint_id NOT IN :excluded
        ORDER BY next_attempt_at, id
        LIMIT :scan {lock}
    ) d
) ranked
WHERE rank_in_endpoint <= :per_endpoint
ORDER BY next_attempt_at, id
LIMIT :limit
"""

SQLITE_CLAIM = f"""
UPDATE deliveries SET status = 'delivering', lease_owner = :owner, lease_expires_at = :expires, updated_at = :now
WHERE id IN ({CANDIDATES.format(lock="")}) AND status = 'pending'
RETURNING id, endpoint_id
"""

# The outer FOR UPDATE SKIP LOCKED re-checks each candidate under its row lock,
# so two sweepers that picked the same candidates never both win a row.
POSTGRES_CLAIM = f"""
UPDATE deliveries SET status = 'delivering', lease_owner = :owner, lease_expires_at = :expires, updated_at = :now
WHERE id IN (
    SELECT id FROM deliveries
    WHERE id IN ({CANDIDATES.format(lock="FOR UPDATE SKIP LOCKED")}) AND status = 'pending'
    FOR UPDATE SKIP LOCKED
)
RETURNING id, endpoint_id
"""

EXPIRED_LEASES = """
UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id IN (
    SELECT id FROM deliveries WHERE status = 'delivering' AND lease_expires_at < :now
    ORDER BY lease_expires_at LIMIT 500 {lock}
)
RETURNING id
"""

# Single-lane endpoints get at most one delivery in flight: ordered ones always
# (batching ones excepted: there the batch is the lane), and those whose circuit
# is half-open (cool-down over, failures not yet reset), which get exactly one
# probe. Batching endpoints are claimed batch by batch (claim_batches).
SINGLE_LANE = "((ordered AND batch_size <= 1) OR consecutive_failures >= circuit_threshold)"

BLOCKED_ENDPOINTS = f"""
SELECT id, batch_size > 1 AS batching FROM endpoints WHERE circuit_open_until > :now OR {SINGLE_LANE} OR batch_size > 1
"""

# The head of an ordered queue is its oldest pending delivery, due or not: the
# rest waits behind it. A half-open probe is simply the delivery due first.
SINGLE_LANE_HEADS = f"""
SELECT e.id, CASE WHEN e.ordered
    THEN (SELECT min(d.id) FROM deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending')
    ELSE (SELECT d.id FROM deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending'
          AND d.next_attempt_at <= :now ORDER BY d.next_attempt_at, d.id LIMIT 1)
    END AS head
FROM endpoints e
WHERE {SINGLE_LANE} AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= :now)
  AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.endpoint_id = e.id AND b.status = 'delivering')
"""

# Batching endpoints with something due and a closed circuit, longest waiting first.
# Starts from the (few) batching endpoints, so a sweep with no batching endpoint
# reads nothing of the backlog; a join from deliveries would read all of it.
BATCH_ENDPOINTS = """
SELECT id, batch_size, batch_window_seconds, ordered FROM (
    SELECT e.id, e.batch_size, e.batch_window_seconds, e.ordered,
           (SELECT min(d.next_attempt_at) FROM deliveries d
            WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= :now) AS oldest_due
    FROM endpoints e
    WHERE e.batch_size > 1 AND e.consecutive_failures < e.circuit_threshold
      AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= :now)
      AND e.id NOT IN :excluded
) batching
WHERE oldest_due IS NOT NULL
ORDER BY oldest_due, id
"""

BATCH_MEMBERS = """
SELECT id, next_attempt_at FROM deliveries
WHERE endpoint_id = :endpoint AND status = 'pending' AND next_attempt_at <= :now
ORDER BY next_attempt_at, id LIMIT :size
"""

# In order: the oldest pending ones, and only while no batch is in flight.
ORDERED_BATCH_MEMBERS = """
SELECT id, next_attempt_at FROM deliveries
WHERE endpoint_id = :endpoint AND status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.endpoint_id = :endpoint AND b.status = 'delivering')
ORDER BY id LIMIT :size
"""

CLAIM_IDS = """
UPDATE deliveries SET status = 'delivering', lease_owner = :owner, lease_expires_at = :expires, updated_at = :now
WHERE id IN {ids} AND status = 'pending'
RETURNING id
"""

# Sentinel for "exclude nothing": an empty IN () is not valid SQL everywhere.
NO_ENDPOINT = -1
TIMESTAMPS = ("now", "expires", "retry_at")


def sql(statement: str, *expanding: str):
    """A textual statement whose timestamps bind like the models' columns.

    Raw datetimes would bind as the driver likes (on SQLite an ISO string with
    "+00:00"), which then compares wrongly against stored values.
    """
    binds = [bindparam(name, type_=UTCDateTime()) for name in TIMESTAMPS if f":{name}" in statement]
    binds += [bindparam(name, expanding=True) for name in expanding]
    return text(statement).bindparams(*binds)


def claim_due(
    owner: str,
    limit: int,
    *,
    lease_seconds: float,
    excluded: Collection[int] = (),
    per_endpoint: int | None = None,
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """Claim up to ``limit`` due deliveries for ``owner`` and commit; return ``(id, endpoint_id)`` pairs.

    ``excluded`` lists endpoints this process must not take more of (it has as
    many in flight as one endpoint may use); open circuits and busy ordered
    endpoints are excluded here, from the database, for every process.
    """
    now = now or now_utc()
    blocked = {row.id for row in _blocked_endpoints(now)} | set(excluded)
    claimed = _take_due(owner, limit, lease_seconds=lease_seconds, blocked=blocked, per_endpoint=per_endpoint, now=now)
    db.session.commit()
    return claimed


def claim_batches(
    owner: str,
    limit: int,
    *,
    lease_seconds: float,
    excluded: Collection[int] = (),
    now: datetime | None = None,
) -> list[tuple[list[int], int]]:
    """Claim up to ``limit`` batches of batching endpoints and commit; return ``(ids, endpoint_id)`` pairs.

    A batch is up to ``batch_size`` due deliveries of one endpoint, taken once
    ``batch_size`` are due or the oldest has waited ``batch_window_seconds``;
    until then they wait, so the batch can fill. Ordered endpoints send their
    batches one at a time, oldest deliveries first. ``ids`` are in publish order.
    """
    batches = _take_batches(owner, limit, lease_seconds=lease_seconds, excluded=excluded, now=now or now_utc())
    db.session.commit()
    return batches


def take_work(
    owner: str,
    slots: int,
    most: int,
    *,
    lease_seconds: float,
    excluded: Collection[int] = (),
    per_endpoint: int | None = None,
) -> tuple[list[tuple[list[int], int]], list[tuple[int, int]]]:
    """Claim work for ``slots`` without committing: :func:`claim_batches`, then :func:`claim_due` for the rest.

    A batch takes one slot, like a single delivery; each kind is capped at
    ``most``. The caller reads what it claimed in the same transaction and
    commits; until then nobody else sees the claim, and a rollback undoes it.
    The endpoints single deliveries skip are read first: when none of them
    batches there is no batch to look for, which saves a query per claim.
    """
    now = now_utc()
    blocked = _blocked_endpoints(now)
    batches = []
    if any(row.batching for row in blocked):
        batches = _take_batches(owner, min(slots, most), lease_seconds=lease_seconds, excluded=excluded, now=now)
    claimed = _take_due(
        owner,
        min(slots - len(batches), most),
        lease_seconds=lease_seconds,
        blocked={row.id for row in blocked} | set(excluded),
        per_endpoint=per_endpoint,
        now=now,
    )
    return batches, claimed


def _blocked_endpoints(now: datetime) -> list:
    """Endpoints whose deliveries are not claimed one by one (open circuit, single lane or batching)."""
    return db.session.execute(sql(BLOCKED_ENDPOINTS), {"now": now}).all()


def _take_due(
    owner: str, limit: int, *, lease_seconds: float, blocked: set[int], per_endpoint: int | None, now: datetime
) -> list[tuple[int, int]]:
    if limit <= 0:
        return []
    statement = sql(POSTGRES_CLAIM if is_postgres() else SQLITE_CLAIM, "excluded")
    params = {
        "owner": owner,
        "expires": now + timedelta(seconds=lease_seconds),
        "now": now,
        "excluded": sorted(blocked) or [NO_ENDPOINT],
        # The scan locks what it reads on PostgreSQL: only as many rows as the claim may take,
        # so two sweepers starting together on a small backlog split it instead of one getting none.
        "scan": limit if is_postgres() else limit * 4,
        "limit": limit,
        "per_endpoint": per_endpoint or limit,
    }
    claimed = [(row.id, row.endpoint_id) for row in db.session.execute(statement, params)]
    if len(claimed) < limit:
        claimed += _claim_single_lane_heads(owner, now, params["expires"])
    return claimed


def _take_batches(
    owner: str, limit: int, *, lease_seconds: float, excluded: Collection[int], now: datetime
) -> list[tuple[list[int], int]]:
    if limit <= 0:
        return []
    expires = now + timedelta(seconds=lease_seconds)
    ready = db.session.execute(
        sql(BATCH_ENDPOINTS, "excluded"), {"now": now, "excluded": sorted(excluded) or [NO_ENDPOINT]}
    ).all()
    batches = []
    for endpoint in ready:
        members = _batch_members(endpoint, now)
        claimed = _claim_ids(members, owner, now, expires) if members else []
        if claimed:
            batches.append((claimed, endpoint.id))
            if len(batches) == limit:
                break
    return batches


def _batch_members(endpoint, now: datetime) -> list[int]:
    """The deliveries that go out together now, or [] while the batch is still filling."""
    query = ORDERED_BATCH_MEMBERS if endpoint.ordered else BATCH_MEMBERS
    statement = sql(query).columns(id=BigId, next_attempt_at=UTCDateTime())
    rows = db.session.execute(statement, {"endpoint": endpoint.id, "now": now, "size": endpoint.batch_size}).all()
    due = list(itertools.takewhile(lambda row: row.next_attempt_at <= now, rows))
    if not due:
        return []
    full = len(due) >= endpoint.batch_size
    waited = due[0].next_attempt_at <= now - timedelta(seconds=endpoint.batch_window_seconds)
    return [row.id for row in due] if full or waited else []


def _claim_ids(ids: list[int], owner: str, now: datetime, expires: datetime) -> list[int]:
    """Lease those of ``ids`` still pending; on PostgreSQL, rows another sweeper holds are skipped."""
    candidates = "(SELECT id FROM deliveries WHERE id IN :ids FOR UPDATE SKIP LOCKED)" if is_postgres() else ":ids"
    statement = sql(CLAIM_IDS.format(ids=candidates), "ids")
    rows = db.session.execute(statement, {"owner": owner, "expires": expires, "now": now, "ids": ids})
    return sorted(row.id for row in rows)


def _claim_single_lane_heads(owner: str, now: datetime, expires: datetime) -> list[tuple[int, int]]:
    """Take the oldest pending delivery of each idle single-lane endpoint.

    Only the head of the queue may go, even if a younger delivery is due
    earlier, so an ordered receiver sees events in publish order and a
    half-open circuit is probed by exactly one request.
    """
    claimed = []
    for endpoint_id, head in db.session.execute(sql(SINGLE_LANE_HEADS), {"now": now}).all():
        if head is None:
            continue
        row = db.session.execute(
            sql(
                "UPDATE deliveries SET status = 'delivering', lease_owner = :owner, lease_expires_at = :expires,"
                " updated_at = :now WHERE id = :id AND status = 'pending' AND next_attempt_at <= :now"
                " RETURNING id, endpoint_id"
            ),
            {"owner": owner, "expires": expires, "now": now, "id": head},
        ).first()
        if row:
            claimed.append((row.id, row.endpoint_id))
    return claimed


def reclaim_expired(now: datetime | None = None) -> list[int]:
    """Put deliveries whose worker died (lease expired) back to pending; return their ids."""
    now = now or now_utc()
    lock = "FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    ids = list(db.session.scalars(sql(EXPIRED_LEASES.format(lock=lock)), {"now": now}))
    db.session.commit()
    return ids


def release(delivery_ids: Collection[int], owner: str, *, retry_at: datetime | None = None) -> int:
    """Give claimed deliveries back without spending an attempt (shutdown, rate limit, open circuit)."""
    if not delivery_ids:
        return 0
    now = now_utc()
    result = db.session.execute(
        sql(
            "UPDATE deliveries SET status = :pending, lease_owner = NULL, lease_expires_at = NULL,"
            " next_attempt_at = :retry_at, updated_at = :now"
            " WHERE id IN :ids AND lease_owner = :owner AND status = :delivering",
            "ids",
        ),
        {
            "pending": PENDING,
            "delivering": DELIVERING,
            "retry_at": retry_at or now,
            "now": now,
            "ids": list(delivery_ids),
            "owner": owner,
        },
    )
    db.session.commit()
    return result.rowcount


# -- inbound requests ----------------------------------------------------------
# The same lease protocol for received provider webhooks: several processes
# sweep, each request is processed by one of them at a time.

INBOUND_DUE = """
SELECT id FROM inbound_requests WHERE status = 'received' AND next_attempt_at <= :now
ORDER BY next_attempt_at, id LIMIT :limit
"""

SQLITE_INBOUND_CLAIM = f"""
UPDATE inbound_requests SET status = 'processing', lease_owner = :owner, lease_expires_at = :expires
WHERE id IN ({INBOUND_DUE}) AND status = 'received'
RETURNING id
"""

# Inside IN (...), PostgreSQL may run a locking sub-select once per outer row and
# ignore its LIMIT; a materialised CTE runs it exactly once.
POSTGRES_INBOUND_CLAIM = f"""
WITH due AS MATERIALIZED ({INBOUND_DUE} FOR UPDATE SKIP LOCKED)
UPDATE inbound_requests SET status = 'processing', lease_owner = :owner, lease_expires_at = :expires
FROM due WHERE inbound_requests.id = due.id
RETURNING inbound_requests.id
"""

INBOUND_EXPIRED = """
UPDATE inbound_requests SET status = 'received', lease_owner = NULL, lease_expires_at = NULL
WHERE id IN (
    SELECT id FROM inbound_requests WHERE status = 'processing' AND lease_expires_at < :now
    ORDER BY lease_expires_at LIMIT 500 {lock}
)
RETURNING id
"""


def claim_inbound(owner: str, limit: int, *, lease_seconds: float, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due inbound requests for ``owner`` and commit; return their ids, oldest first."""
    now = now or now_utc()
    rows = db.session.execute(
        sql(POSTGRES_INBOUND_CLAIM if is_postgres() else SQLITE_INBOUND_CLAIM),
        {"owner": owner, "expires": now + timedelta(seconds=lease_seconds), "now": now, "limit": limit},
    )
    claimed = sorted(row.id for row in rows)
    db.session.commit()
    return claimed


def reclaim_expired_inbound(now: datetime | None = None) -> list[int]:
    """Put inbound requests whose processor died (lease expired) back to received; return their ids."""
    now = now or now_utc()
    lock = "FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    ids = list(db.session.scalars(sql(INBOUND_EXPIRED.format(lock=lock)), {"now": now}))
    db.session.commit()
    return ids
