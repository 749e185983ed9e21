"""The backoff schedule and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from webhooks import retry

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_default_schedule_is_base_30_factor_4():
    assert [retry.backoff_seconds(n, 30) for n in range(1, 6)] == [30, 120, 480, 1920, 7680]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_jitter_stays_within_twenty_percent(attempt):
    rng = random.Random(attempt)
    for _ in range(200):
        decision = retry.decide(attempt, 6, base=30, now=NOW, rng=rng)
        wait = (decision.retry_at - NOW).total_seconds()
        expected = 30 * 4 ** (attempt - 1)
        assert 0.8 * expected <= wait <= 1.2 * expected


def test_jitter_spreads_retries():
    rng = random.Random(7)
    waits = {retry.decide(1, 6, base=30, now=NOW, rng=rng).retry_at for _ in range(50)}
    assert len(waits) > 40


def test_no_retry_after_the_last_attempt():
    assert retry.decide(6, 6, base=30, now=NOW).retry_at is None
    assert retry.decide(1, 1, base=30, now=NOW).retry_at is None


def test_retry_after_wins_over_backoff_and_is_capped():
    assert retry.decide(1, 6, base=30, now=NOW, retry_after=5).retry_at == NOW + timedelta(seconds=5)
    assert retry.decide(1, 6, base=30, now=NOW, retry_after=10**9).retry_at == NOW + timedelta(days=1)
    assert retry.decide(1, 6, base=30, now=NOW, retry_after=0).retry_at == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    "header, seconds",
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert retry.parse_retry_after(header, NOW) == seconds
