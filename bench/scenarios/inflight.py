"""4. Many in flight: N deliveries at once to a receiver that answers after 1 s.

One ``flask worker`` per core (the way the hub scales on a host), each with
``WEBHOOKS_DELIVERY_CONCURRENCY=N / workers``, on SQLite, then on PostgreSQL.
The deliveries are published before the workers start, spread over 4
endpoints (one endpoint may use at most three quarters of a worker's
threads). The ideal is 1 s: every request open at once. The clock runs from
the first request the receiver sees to the moment the database shows every
delivery succeeded; the wait for the first sweep is reported apart.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack

from bench import clients
from bench.procs import database
from bench.procs import gunicorn
from bench.procs import hub_env
from bench.procs import rss_mb
from bench.procs import say
from bench.procs import scratch
from bench.procs import workers
from bench.receiver import ReceiverProcess
from bench.report import Figure
from bench.report import Result
from bench.scenarios import Options
from bench.site import Site

LATENCY_S = 1.0
ENDPOINTS = 4
WORKERS = min(os.cpu_count() or 1, 4)


def run(options: Options) -> Result:
    """On SQLite, then on PostgreSQL when a server is given."""
    size = options.size
    result = Result("inflight", "4. Many in flight", size)
    kinds = ["sqlite"] + (["postgres"] if options.postgres_url else [])
    with ReceiverProcess() as receiver, scratch() as folder:
        for kind in kinds:
            measure(receiver, folder, kind, options, result)
    return result


def measure(receiver: ReceiverProcess, folder, kind: str, options: Options, result: Result) -> None:
    """Publish N deliveries, start the workers with N threads between them, time until all are recorded."""
    size = options.size
    label = "PostgreSQL" if kind == "postgres" else "SQLite"
    prefix = f"/{kind}-{time.monotonic_ns()}"
    with database(kind, folder, options.postgres_url) as url, Site(url) as site:
        tenant_id, key = site.tenant("bench")
        for number in range(ENDPOINTS):
            path = f"{prefix}/e{number}/delay/{LATENCY_S * 1000:g}"
            site.endpoint(tenant_id, receiver.url(path), event_types=[f"t{number}.*"])
        with gunicorn("web", "wsgi:app", hub_env(url, scheduler="off"), folder) as web:
            say(f"{label}: publishing {size:,} events ({size // ENDPOINTS:,} per endpoint)")
            clients.publish_bulk(web.url, key, (clients.order_event(n, type=f"t{n % ENDPOINTS}.x") for n in range(size)))
        threads = -(-size // WORKERS)
        say(f"{label}: starting {WORKERS} workers with {threads:,} delivery threads each")
        published = time.time()
        with ExitStack() as running:
            names = [f"worker-{number}" for number in range(WORKERS)]
            sweepers = [running.enter_context(item) for item in workers(names, hub_env(url, delivery_concurrency=threads), folder)]
            peaks = [running.enter_context(PeakRss(sweeper.pid)) for sweeper in sweepers]
            done = clients.wait_for(
                lambda: site.count_deliveries("succeeded") + site.count_deliveries("failed") >= size,
                timeout=LATENCY_S * 20 + size / 20 + 60,
                every=0.05,
                progress=lambda: f"{site.count_deliveries('succeeded'):,} of {size:,} succeeded",
                what="every delivery finished",
            )
        paths = {path: item for path, item in receiver.stats()["paths"].items() if path.startswith(prefix + "/")}
        first = min(item["first"] for item in paths.values())
        errors = size - site.count_deliveries("succeeded")
        errors += site.scalar("SELECT count(*) FROM attempts WHERE error IS NOT NULL OR response_status >= 300")
        received = sum(item["count"] for item in paths.values())
    open_at_once = sum(item["max_open"] for item in paths.values())
    result.add(Figure(f"{label}: first request to all recorded", done - first, "s", LATENCY_S, "<=", 2.0, "ideal"))
    result.add(Figure(f"{label}: failed deliveries and error attempts", errors, "", op="==", bound=0))
    result.add(Figure(f"{label}: duplicate or missing requests", abs(received - size), "", op="==", bound=0))
    result.add(Figure(f"{label}: requests open at once (sum of per-endpoint peaks)", open_at_once, ""))
    peak = max(item.peak for item in peaks)
    result.add(Figure(f"{label}: RSS per worker process, peak", peak, "MB"))
    result.add(Figure(f"{label}: worker RSS per delivery thread", peak * 1024 / threads, "KB"))
    result.note(
        f"{label}: {WORKERS} worker processes x {threads:,} delivery threads; start to first request "
        f"{first - published:.2f} s (process start plus the first sweep), not counted. "
        f"Peak RSS per worker: {', '.join(f'{item.peak:.0f} MB' for item in peaks)}."
    )


class PeakRss:
    """Samples a process's RSS every 50 ms in a thread while the ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(0.05)
