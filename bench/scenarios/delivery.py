"""3. Delivery throughput: publish N events, time until the last attempt is recorded.

The receiver answers after 50 ms, in its own process. The hub runs as in
production: gunicorn takes the bulk publish (scheduler off), one or two
``flask worker`` processes deliver. The clock runs from the first publish
request to the moment the database shows every delivery succeeded, so claims,
attempt records and the sweep interval are all inside the figure. The bulk
publish rate meanwhile (events/s accepted) is reported too, and the worker's
CPU time per delivery (start-up excluded) next to the thread pool's per POST.

The baseline is a plain ``requests`` thread pool with as many threads as the
worker has, POSTing the same number of bodies to the same receiver.
Deliveries go to 4 endpoints, because the worker lets one endpoint use at
most three quarters of its threads (so one slow receiver cannot take them
all); with a single endpoint the baseline would win by design.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

from bench import clients
from bench.procs import cpu_seconds
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

LATENCY_MS = 50
ENDPOINTS = 4


def run(options: Options) -> Result:
    result = Result("delivery", "3. Delivery throughput", options.size)
    threads, size = options.threads, options.size
    with ReceiverProcess() as receiver, scratch() as folder:
        baseline, baseline_cpu = baseline_rate(receiver, size, threads)
        pool = f"requests pool x {threads}"
        sqlite = hub_rate(receiver, folder, "sqlite", options, processes=1)
        result.add(Figure("events/s published (bulk), SQLite", sqlite.published, "/s"))
        result.add(Figure(f"deliveries/s, 1 worker x {threads} threads, SQLite", sqlite.delivered, "/s", baseline, ">=",
                          0.7, pool))
        result.add(Figure("worker CPU per delivery, SQLite", sqlite.cpu_ms, "ms", baseline_cpu, baseline_label=pool))
        if options.postgres_url:
            one = hub_rate(receiver, folder, "postgres", options, processes=1)
            result.add(Figure("events/s published (bulk), PostgreSQL", one.published, "/s"))
            result.add(Figure("deliveries/s, 1 worker, PostgreSQL", one.delivered, "/s", baseline, baseline_label=pool))
            result.add(Figure("worker CPU per delivery, PostgreSQL", one.cpu_ms, "ms", baseline_cpu, baseline_label=pool))
            two = hub_rate(receiver, folder, "postgres", options, processes=2)
            result.add(Figure("deliveries/s, 2 workers, PostgreSQL", two.delivered, "/s", one.delivered, ">=", 1.6,
                              "1 worker"))
    result.note(
        f"{size:,} deliveries to a receiver answering after {LATENCY_MS} ms, {ENDPOINTS} endpoints, "
        f"{threads} delivery threads per worker (WEBHOOKS_DELIVERY_CONCURRENCY), sweep every 1 s (the default); "
        f"ideal for one worker: {threads / (LATENCY_MS / 1000):,.0f}/s."
    )
    return result


def baseline_rate(receiver: ReceiverProcess, size: int, threads: int) -> tuple[float, float]:
    """POSTs per second of the plain thread pool, and its CPU milliseconds per POST."""
    say(f"baseline: requests thread pool, {threads} threads, {size:,} POSTs")
    output = subprocess.run(
        [sys.executable, "-m", "bench.baseline", "--url", receiver.url(f"/baseline/delay/{LATENCY_MS}"),
         "--count", str(size), "--threads", str(threads)],
        capture_output=True, text=True, timeout=size / 10 + 120, check=True,
    ).stdout
    measured = json.loads(output.splitlines()[-1])
    if measured["ok"] != size:
        raise RuntimeError(f"baseline: {measured['ok']} of {size} answered 2xx")
    rate = size / measured["seconds"]
    say(f"baseline: {rate:,.0f} POSTs/s")
    return rate, measured["cpu_seconds"] * 1000 / size


@dataclass(frozen=True)
class Run:
    delivered: float  # deliveries/s, first publish to last attempt recorded
    cpu_ms: float  # worker CPU per delivery
    published: float  # events/s accepted by the bulk API meanwhile


def hub_rate(receiver: ReceiverProcess, folder, kind: str, options: Options, *, processes: int) -> Run:
    """Publish N events through the web process and time until every delivery is recorded."""
    size = options.size
    label = f"hub-{kind}-{processes}w-{time.monotonic_ns()}"

    def arrived() -> int:
        paths = receiver.stats()["paths"]
        return sum(item["count"] for path, item in paths.items() if path.startswith(f"/{label}/"))

    with database(kind, folder, options.postgres_url) as url:
        with Site(url) as site:
            tenant_id, key = site.tenant("bench")
            for number in range(ENDPOINTS):
                site.endpoint(tenant_id, receiver.url(f"/{label}/e{number}/delay/{LATENCY_MS}"),
                              event_types=[f"t{number}.*"])
            env = hub_env(url, delivery_concurrency=options.threads)
            with gunicorn("web", "wsgi:app", hub_env(url, scheduler="off"), folder) as web:
                workers = []
                try:
                    for number in range(processes):
                        workers.append(worker(f"worker-{kind}-{number}", env, folder))
                    idle_cpu = sum(cpu_seconds(process.pid) for process in workers)  # start-up is not delivery
                    say(f"hub on {kind}, {processes} worker(s): publishing {size:,} events")
                    started = time.time()
                    events = (clients.order_event(n, type=f"t{n % ENDPOINTS}.created") for n in range(size))
                    accepted, publish_seconds = clients.publish_bulk(web.url, key, events)
                    ideal = size / (processes * options.threads / (LATENCY_MS / 1000))
                    clients.wait_for(
                        lambda: arrived() >= size,
                        timeout=ideal * 10 + 60,
                        every=0.25,
                        progress=lambda: f"{arrived():,} of {size:,} delivered",
                        what="every delivery at the receiver",
                    )
                    finished = clients.wait_for(
                        lambda: site.count_deliveries("succeeded") == size, timeout=60, every=0.05,
                        what="every delivery recorded as succeeded",
                    )
                    cpu = sum(cpu_seconds(process.pid) for process in workers) - idle_cpu
                finally:
                    for process in workers:
                        process.stop()
            attempts = site.scalar("SELECT count(*) FROM attempts")
            received = arrived()
    if attempts != size or received != size:
        raise RuntimeError(f"{kind}: {attempts} attempts recorded, {received} requests received, for {size} deliveries")
    rate = size / (finished - started)
    say(f"hub on {kind}, {processes} worker(s): {rate:,.0f} deliveries/s ({finished - started:.1f} s)")
    return Run(rate, cpu * 1000 / size, accepted / publish_seconds)
