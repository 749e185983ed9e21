"""5. Fairness: one endpoint hangs with a backlog; another still gets its events in time.

Endpoint "hang" has N pending deliveries and a receiver that never answers
before the endpoint's timeout (10 s; the window's length when shorter, so a
tiny run stops soon). Endpoint "fast" gets 10 events a second, published one
by one over HTTP for the whole window; each carries its ``sent_at`` and the
receiver records ``arrival - sent_at``. One ``flask worker`` with the default
16 threads, SQLite. An event still missing 15 s after the window counts as
never delivered (an infinite lag).
"""

from __future__ import annotations

import time

from bench import clients
from bench.procs import database
from bench.procs import gunicorn
from bench.procs import hub_env
from bench.procs import say
from bench.procs import scratch
from bench.procs import worker
from bench.receiver import ReceiverProcess
from bench.report import Figure
from bench.report import Result
from bench.scenarios import Options
from bench.site import Site

HANG_TIMEOUT = 10
FAST_RATE = 10


def run(options: Options) -> Result:
    """p99 of the fast endpoint's publish-to-arrival time while the other endpoint hangs."""
    size, window = options.size, options.seconds
    result = Result("fairness", "5. Fairness", size, window)
    with ReceiverProcess() as receiver, scratch() as folder, database("sqlite", folder, options.postgres_url) as url:
        with Site(url) as site:
            tenant_id, key = site.tenant("bench")
            timeout = min(HANG_TIMEOUT, max(window, 1))  # a tiny window gets a short hang, so it stops soon
            site.endpoint(tenant_id, receiver.url("/hang/60"), event_types=["slow.*"], timeout_seconds=timeout)
            site.endpoint(tenant_id, receiver.url("/fast"), event_types=["fast.*"])
            with gunicorn("web", "wsgi:app", hub_env(url, scheduler="off"), folder) as web:
                say(f"backlog: {size:,} deliveries for the hanging endpoint")
                clients.publish_bulk(web.url, key, (clients.order_event(n, type="slow.x") for n in range(size)))
                with worker("worker", hub_env(url), folder):
                    clients.wait_for(
                        lambda: receiver.path_stats("/hang/60")["count"] > 0, timeout=30, what="the hanging endpoint busy"
                    )
                    say(f"hanging endpoint busy; publishing {FAST_RATE} events/s to the other one for {window:g} s")
                    sent = publish_paced(web.url, key, window)
                    wait_for_stragglers(receiver, sent)
                    fast = receiver.path_stats("/fast")
                    hanging = receiver.path_stats("/hang/60")
    lags = sorted(fast["lags"]) + [float("inf")] * (sent - len(fast["lags"]))
    result.add(Figure("fast endpoint: p99 publish-to-arrival", percentile(lags, 99), "s", op="<=", bound=2.0))
    result.add(Figure("fast endpoint: median publish-to-arrival", percentile(lags, 50), "s"))
    result.add(Figure("fast events delivered", len(fast["lags"]), f"of {sent}"))
    result.add(Figure("hanging endpoint: requests open at once, peak", hanging["max_open"], ""))
    result.note(
        f"Hanging endpoint: timeout {timeout:g} s, {size:,} pending; fast endpoint: {FAST_RATE} events/s "
        f"for {window:g} s; worker: 16 threads (at most 12 for one endpoint), sweep every 1 s."
    )
    return result


def wait_for_stragglers(receiver: ReceiverProcess, sent: int) -> None:
    """Wait up to 15 s for the last fast events; missing ones are counted, not raised."""
    try:
        clients.wait_for(lambda: receiver.path_stats("/fast")["count"] >= sent, timeout=15, what="fast events")
    except TimeoutError:
        say(f"{sent - receiver.path_stats('/fast')['count']} fast events not delivered 15 s after the window")


def publish_paced(base: str, key: str, window: float) -> int:
    """Publish ``FAST_RATE`` events a second for ``window`` seconds, one request each; return how many."""
    client = clients.session()
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < window:
        due = started + sent / FAST_RATE
        time.sleep(max(0.0, due - time.monotonic()))
        clients.publish_one(client, base, key, clients.order_event(sent, type="fast.x", sent_at=time.time()))
        sent += 1
    return sent


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("inf")
    rank = max(0, min(len(values) - 1, round(pct / 100 * len(values) + 0.5) - 1))
    return values[rank]
