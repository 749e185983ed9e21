"""1. Ingest: GitHub-signed 1 KB POSTs to ``/hooks/<tenant>/<source>`` against a bare Flask handler.

The hub, the bare handler and the same handler storing each body with a
plain ``sqlite3`` INSERT (``bench.baseline:durable``, reported without a
target) run under ``gunicorn -c gunicorn.conf.py`` with 2 workers and get
the same wrk load in alternating rounds (the best round of each counts): 16
connections, the same body and headers, a unique ``X-GitHub-Delivery`` per
request (so de-duplication keeps every one). The
hub runs as deployed, on SQLite, its scheduler on (stored requests are
processed meanwhile). Afterwards every 2xx answer must have its stored
request: a request wrk sent but had no answer for when it stopped may be
stored too, so stored = 2xx + at most the requests cut off.
"""

from __future__ import annotations

import json

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

SECRET = "bench-github-secret"


def github_push(size: int = 1024) -> bytes:
    """A push event body of ``size`` bytes."""
    event = {
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5",
        "repository": {"id": 1296269, "full_name": "octocat/Hello-World", "private": False},
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "commits": [{"id": "59b20b8d", "message": "Update README", "author": {"name": "octocat"}}],
        "padding": "",
    }
    event["padding"] = "x" * (size - len(json.dumps(event)))
    return json.dumps(event).encode()


def run(options: Options) -> Result:
    from webhooks import providers

    seconds = options.size  # wrk runs for a time, not a count
    result = Result("ingest", "1. Ingest", options.size)
    body = github_push()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", **providers.sign("github", SECRET, body)}
    with scratch() as folder, database("sqlite", folder, options.postgres_url) as url, Site(url) as site:
        make_source(site)
        durable_env = {**hub_env("sqlite://"), "BENCH_DURABLE_DB": str(folder / "durable.db")}
        with gunicorn("baseline", "bench.baseline:app", hub_env("sqlite://"), folder) as bare, \
                gunicorn("durable", "bench.baseline:durable", durable_env, folder) as durable, \
                gunicorn("hub", "wsgi:app", hub_env(url), folder) as hub:

            def post_to(base: str):
                return lambda length: wrk.run(base + "/hooks/bench/github", body, headers, seconds=length,
                                              folder=folder, unique_header="X-GitHub-Delivery")

            say(f"bare Flask, Flask with a sqlite3 INSERT and the hub in turn, wrk -c16, {seconds:g} s each in 3 rounds")
            sides = {"baseline": post_to(bare.url), "durable": post_to(durable.url), "hub": post_to(hub.url)}
            loads = wrk.alternate(sides, seconds=seconds)
        stored = site.scalar("SELECT count(*) FROM inbound_requests WHERE http_status = 202")
        rejected = site.scalar("SELECT count(*) FROM inbound_requests WHERE http_status <> 202")
    base, durable_base, load = wrk.best(loads["baseline"]), wrk.best(loads["durable"]), wrk.best(loads["hub"])
    say(f"baseline: {base.rate:,.0f} requests/s; hub: {load.rate:,.0f} requests/s, p99 {load.p99_ms:.1f} ms")
    answered = sum(item.ok for item in loads["hub"])
    cut_off = sum(item.cut_off for item in loads["hub"])
    result.add(Figure("requests/s (best round)", load.rate, "req/s", base.rate, ">=", 0.5, "bare Flask"))
    result.add(Figure("p99 latency (that round)", load.p99_ms, "ms", op="<=", bound=25))
    result.add(Figure("requests/s against a storing handler", load.rate, "req/s", durable_base.rate,
                      baseline_label="Flask + sqlite3 INSERT"))
    result.add(Figure("2xx answers without a stored request", max(0, answered - stored), "", op="==", bound=0))
    result.add(Figure("stored requests never sent", max(0, stored - answered - cut_off), "", op="==", bound=0))
    result.note(
        f"Size = seconds of wrk load on each side, in 3 alternating rounds. Over the hub's rounds: "
        f"{answered:,} 2xx answers, {cut_off} requests cut off by wrk's stops, "
        f"{sum(item.errors for item in loads['hub'])} socket errors; stored: {stored:,} accepted, {rejected:,} rejected. "
        f"Rates per round, bare Flask: {', '.join(f'{item.rate:,.0f}' for item in loads['baseline'])}; "
        f"Flask storing each body with a plain sqlite3 INSERT and COMMIT (bench/baseline.py): "
        f"{', '.join(f'{item.rate:,.0f}' for item in loads['durable'])} (p99 {durable_base.p99_ms:.1f} ms in its best); "
        f"hub: {', '.join(f'{item.rate:,.0f}' for item in loads['hub'])}."
    )
    return result


def make_source(site: Site) -> None:
    from webhooks import sources
    from webhooks.db import db
    from webhooks.models import Tenant

    tenant_id, _ = site.tenant("bench")
    with site.app.app_context():
        sources.create(db.session.get(Tenant, tenant_id), {"slug": "github", "provider": "github", "secret": SECRET})
        db.session.remove()
