"""When to try a failed delivery again: exponential backoff with jitter, as data.

With the defaults (6 attempts, base 30 s, factor 4) the waits after attempts
1..5 are about 30 s, 2 min, 8 min, 32 min and 2 h 8 min, each scaled by a
random factor in [0.8, 1.2] so that receivers recovering from an outage are
not hit by every retry at the same second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from email.utils import parsedate_to_datetime

FACTOR = 4
JITTER = 0.2
MAX_RETRY_AFTER = 24 * 3600


@dataclass(frozen=True)
class RetryDecision:
    """``retry_at`` is None when no attempt is left."""

    retry_at: datetime | None


def backoff_seconds(attempt: int, base: float, factor: float = FACTOR) -> float:
    """The wait before attempt ``attempt + 1`` without jitter: ``base * factor ** (attempt - 1)``."""
    return base * factor ** (attempt - 1)


def decide(
    attempt: int,
    max_attempts: int,
    *,
    base: float,
    now: datetime,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide after attempt number ``attempt`` (1-based) failed.

    A ``Retry-After`` the receiver sent wins over the backoff (capped at a day),
    because it says when the receiver expects to be able to take the request.
    """
    if attempt >= max_attempts:
        return RetryDecision(None)
    if retry_after is not None:
        wait = min(max(retry_after, 1.0), MAX_RETRY_AFTER)
    else:
        wait = backoff_seconds(attempt, base) * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return RetryDecision(now + timedelta(seconds=wait))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header, which is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)
