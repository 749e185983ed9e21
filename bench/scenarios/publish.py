"""2. Publish: single events against a bare Flask handler; bulk events/s on SQLite and PostgreSQL.

The hub's web side runs under gunicorn with the project's settings (2
workers x 4 threads, BalancedThreadWorker) and its scheduler off, so only acceptance is measured:
validation, idempotency, filter matching and the fan-out rows. Every event
goes to 3 subscribed endpoints, which are never called. Single events and the
bare handler get wrk in alternating rounds; the best round of each counts.
"""

from __future__ import annotations

import json

from bench import clients
from bench import wrk
from bench.procs import database
from bench.procs import gunicorn
from bench.procs import hub_env
from bench.procs import say
from bench.procs import scratch
from bench.report import Figure
from bench.report import Result
from bench.scenarios import Options
from bench.site import Site

ENDPOINTS = 3
UNREACHABLE = "http://127.0.0.1:9/never-called"


def run(options: Options) -> Result:
    result = Result("publish", "2. Publish", options.size, options.seconds)
    body = json.dumps(clients.order_event(1)).encode()
    with scratch() as folder:
        with database("sqlite", folder, options.postgres_url) as url:
            key = _tenant_with_endpoints(url)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
            with gunicorn("baseline", "bench.baseline:app", hub_env("sqlite://"), folder) as bare:
                with gunicorn("hub", "wsgi:app", hub_env(url, scheduler="off"), folder) as hub:

                    def post_to(base: str):
                        return lambda length: wrk.run(base + "/api/v1/events", body, headers, seconds=length,
                                                      folder=folder)

                    say(f"bare Flask and hub in turn, one event a request, wrk -c16, {options.seconds:g} s each "
                        "in 3 rounds")
                    loads = wrk.alternate({"baseline": post_to(bare.url), "hub": post_to(hub.url)},
                                          seconds=options.seconds)
                    base, single = wrk.best(loads["baseline"]), wrk.best(loads["hub"])
                    say(f"baseline: {base.rate:,.0f} requests/s; hub: {single.rate:,.0f} requests/s, "
                        f"p99 {single.p99_ms:.1f} ms")
                    bulk_sqlite = _bulk(hub.url, key, options.size, "SQLite")

        not_accepted = sum(item.requests - item.ok + item.errors for item in loads["hub"])
        result.add(Figure("single events accepted/s (best round)", single.rate, "req/s", base.rate, ">=", 0.5,
                          "bare Flask"))
        result.add(Figure("single event p99 latency (that round)", single.p99_ms, "ms", op="<=", bound=100))
        result.add(Figure("single events not answered 202", not_accepted, "", op="==", bound=0))
        result.add(Figure("bulk events accepted/s, SQLite", bulk_sqlite, "events/s", op=">=", bound=20_000))

        if options.postgres_url:
            with database("postgres", folder, options.postgres_url) as url:
                key = _tenant_with_endpoints(url)
                with gunicorn("hub-pg", "wsgi:app", hub_env(url, scheduler="off"), folder) as hub:
                    bulk_pg = _bulk(hub.url, key, options.size, "PostgreSQL")
            result.add(Figure("bulk events accepted/s, PostgreSQL", bulk_pg, "events/s", op=">=", bound=10_000))
        result.note(
            f"Single events: wrk -t2 -c16 for {options.seconds:g} s a side in 3 alternating rounds against "
        f"gunicorn -w 2 (4 threads, BalancedThreadWorker); rates per round, bare Flask: "
        f"{', '.join(f'{item.rate:,.0f}' for item in loads['baseline'])}; hub: "
        f"{', '.join(f'{item.rate:,.0f}' for item in loads['hub'])}; "
            f"bulk: {options.size:,} events in requests of 1,000 from 2 clients, {ENDPOINTS} endpoints each."
        )
    return result


def _tenant_with_endpoints(url: str) -> str:
    with Site(url) as site:
        tenant_id, key = site.tenant("bench")
        for number in range(ENDPOINTS):
            site.endpoint(tenant_id, f"{UNREACHABLE}/{number}", event_types=["order.*"])
    return key


def _bulk(base: str, key: str, size: int, label: str) -> float:
    say(f"hub on {label}: bulk publish of {size:,} events, 1,000 a request, 2 clients")
    events = (clients.order_event(number) for number in range(size))
    accepted, seconds = clients.publish_bulk(base, key, events, clients=2, label=f"{label}:")
    if accepted != size:
        raise RuntimeError(f"{label}: {accepted} of {size} events accepted")
    rate = accepted / seconds
    say(f"hub on {label}: {rate:,.0f} events/s accepted ({accepted * ENDPOINTS:,} deliveries created)")
    return rate
