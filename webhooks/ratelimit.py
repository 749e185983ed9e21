"""Fixed-window rate limits kept in the database, so every worker process shares them.

One upsert both counts and refuses: it increments the window's counter only
while it is below the limit, and returns nothing once the limit is reached.
Used for inbound source limits (429 with Retry-After).

Endpoint rate limits (deliveries wait, never drop) use :func:`take_sliding`
instead: a fixed window lets twice the limit through around a window's edge
(the limit at the end of one window, the limit again at the start of the
next), and a receiver that enforces its own limit over a sliding window
would refuse the second half.
"""

from __future__ import annotations

import math
import time

from sqlalchemy import text

from webhooks.db import db
from webhooks.db import is_postgres

PERIODS = {"second": 1, "minute": 60}
SLOTS = 10
# Sliding counters store their slot's start in milliseconds, fixed ones in
# seconds; anything above this is milliseconds (it is 1973 in ms, 5138 in s).
MILLISECONDS = 10**11

TAKE = """
INSERT INTO rate_counters (key, "window", count) VALUES (:key, :window, 1)
ON CONFLICT (key, "window") DO UPDATE SET count = rate_counters.count + 1
WHERE rate_counters.count < :limit
RETURNING count
"""


def take(key: str, limit: int, period: str, *, now: float | None = None) -> float | None:
    """Count one request; return None if allowed, else the seconds until the window ends.

    Runs in the caller's transaction; the caller commits.
    """
    seconds = PERIODS[period]
    now = time.time() if now is None else now
    window = math.floor(now / seconds) * seconds  # the window's start, in unix seconds
    row = db.session.execute(text(TAKE), {"key": key, "window": window, "limit": limit}).first()
    if row is not None:
        return None
    return max(window + seconds - now, 0.001)


def take_sliding(key: str, limit: int, period: str, *, clock=time.time) -> float | None:
    """Count one request unless ``limit`` were counted within the last ``period``;
    return None if allowed, else the seconds until one may go.

    No span of ``period`` ever holds more than ``limit`` requests. Counts are
    kept per tenth of the period, and a request is allowed while the current
    slot and the ten before it hold fewer than ``limit``: those cover the
    whole period before now, so at most 10 % of the rate is given up.
    Takers of one key queue on a lock (PostgreSQL advisory lock; SQLite's
    write lock, which the first DELETE takes) so two processes never both
    take the last place. Runs in the caller's transaction; the caller commits.
    ``clock`` gives unix seconds; tests pass their own.
    """
    slot_ms = PERIODS[period] * 1000 // SLOTS
    if is_postgres():
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    # The clock is read after the lock: a taker that queued must not count in the past.
    now_ms = clock() * 1000
    oldest = (math.floor(now_ms / slot_ms) - SLOTS) * slot_ms
    db.session.execute(
        text('DELETE FROM rate_counters WHERE key = :key AND "window" < :oldest'), {"key": key, "oldest": oldest}
    )
    counts = db.session.execute(
        text('SELECT "window", count FROM rate_counters WHERE key = :key ORDER BY "window"'), {"key": key}
    ).all()
    if sum(count for _, count in counts) >= limit:
        # Once the oldest counted slot leaves the span, there is room again.
        return max((counts[0][0] + (SLOTS + 1) * slot_ms - now_ms) / 1000, 0.001)
    window = math.floor(now_ms / slot_ms) * slot_ms
    db.session.execute(
        text(
            'INSERT INTO rate_counters (key, "window", count) VALUES (:key, :window, 1)'
            ' ON CONFLICT (key, "window") DO UPDATE SET count = rate_counters.count + 1'
        ),
        {"key": key, "window": window},
    )
    return None


def prune(before: float | None = None) -> int:
    """Delete counters of windows that ended more than two minutes ago."""
    cutoff = math.floor((time.time() if before is None else before) - 120)
    result = db.session.execute(
        text('DELETE FROM rate_counters WHERE "window" < :cutoff OR ("window" > :ms AND "window" < :cutoff_ms)'),
        {"cutoff": cutoff, "ms": MILLISECONDS, "cutoff_ms": cutoff * 1000},
    )
    return result.rowcount
