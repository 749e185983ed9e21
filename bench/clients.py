"""Small HTTP clients and waits shared by the scenarios; all bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.procs import say


def session() -> requests.Session:
    """A client session that ignores proxy settings: all traffic stays on 127.0.0.1."""
    client = requests.Session()
    client.trust_env = False
    return client


def order_event(number: int, type: str = "order.created", **extra) -> dict:
    """A small, realistic event (about 250 bytes of payload)."""
    payload = {
        "order": {"id": number, "total": 120 + number % 50, "currency": "EUR", "status": "paid"},
        "customer": {"id": f"cus_{number % 977}", "email": f"buyer{number % 977}@example.com", "tags": ["vip"]},
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        **extra,
    }
    return {"type": type, "payload": payload}


def publish_bulk(
    base: str, key: str, events: Iterable[dict], *, per_request: int = 1000, clients: int = 1, label: str = "published"
) -> tuple[int, float]:
    """POST events in lists of ``per_request`` from ``clients`` threads; return (accepted, seconds)."""
    batches, batch = [], []
    for event in events:
        batch.append(event)
        if len(batch) == per_request:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    headers = {"Authorization": f"Bearer {key}"}
    client = session()
    done = 0

    def post(items: list[dict]) -> int:
        nonlocal done
        response = client.post(base + "/api/v1/events", json=items, headers=headers, timeout=120)
        if response.status_code != 202:
            raise RuntimeError(f"bulk publish answered {response.status_code}: {response.text[:300]}")
        done += len(items)
        if len(batches) > 4 and done % (per_request * max(1, len(batches) // 5)) == 0:
            say(f"{label} {done:,} events")
        return len(response.json()["data"])

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        accepted = sum(pool.map(post, batches))
    return accepted, time.monotonic() - started


def publish_one(client: requests.Session, base: str, key: str, event: dict) -> None:
    """POST one event; anything but 202 raises."""
    response = client.post(base + "/api/v1/events", json=event, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    if response.status_code != 202:
        raise RuntimeError(f"publish answered {response.status_code}: {response.text[:300]}")


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float,
    every: float = 0.1,
    progress: Callable[[], str] | None = None,
    progress_every: float = 5.0,
    what: str = "condition",
) -> float:
    """Poll until ``condition()`` is truthy; return the ``time.time()`` it became so.

    Raises ``TimeoutError`` after ``timeout`` seconds, with the last progress line.
    """
    deadline = time.monotonic() + timeout
    next_progress = time.monotonic() + progress_every
    while True:
        if condition():
            return time.time()
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f} s" + (f" ({progress()})" if progress else ""))
        if progress and now >= next_progress:
            say(progress())
            next_progress = now + progress_every
        time.sleep(every)
