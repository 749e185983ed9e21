"""Fixed-window rate limits kept in the database, so every worker process shares them.

One upsert both counts and refuses: it increments the window's counter only
while it is below the limit, and returns nothing once the limit is reached.
Used for endpoint rate limits (deliveries wait, never drop) and inbound
source limits (429 with Retry-After).
"""

from __future__ import annotations

import math
import time

from sqlalchemy import text

from webhooks.db import db

PERIODS = {"second": 1, "minute": 60}

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


def prune(before: float | None = None) -> int:
    """Delete counters of windows that ended more than a minute ago."""
    cutoff = math.floor((time.time() if before is None else before) - 120)
    result = db.session.execute(text('DELETE FROM rate_counters WHERE "window" < :cutoff'), {"cutoff": cutoff})
    return result.rowcount
