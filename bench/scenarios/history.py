"""6. History does not slow the hot paths.

Two databases are built side by side, one with a history of N/100 finished
deliveries (each with its attempt), one with N, both with the same backlog of
due deliveries. Then the sweep's claim (``claims.claim_due``, 100 at a time,
put back after each timing) and the first page of delivery history (``GET
/api/v1/deliveries``, the API's first page) are timed on each in turn, so a
busy moment of the shared machine hits both alike; medians are compared. On
SQLite and on PostgreSQL. History rows are copied from template rows the hub
itself wrote, with ``INSERT ... SELECT`` over a recursive CTE (SQLite) or
``generate_series`` (PostgreSQL), in chunks, not through the ORM; both
databases are analysed afterwards, as autovacuum would. The query plans are
printed and checked for full scans of ``deliveries``.
"""

from __future__ import annotations

import re
import statistics
import time

from sqlalchemy import select
from sqlalchemy import text

from bench.bulk import copy
from bench.procs import database
from bench.procs import say
from bench.procs import scratch
from bench.report import Figure
from bench.report import Result
from bench.scenarios import Options
from bench.site import Site

BACKLOG_EVENTS = 100  # x 2 endpoints = 200 due deliveries
CLAIM_LIMIT = 100
REPEATS = 60
CHUNK = 200_000
PAGE = 50


def run(options: Options) -> Result:
    """On SQLite, then on PostgreSQL when a server is given."""
    result = Result("history", "6. History", options.size)
    kinds = ["sqlite"] + (["postgres"] if options.postgres_url else [])
    with scratch() as folder:
        for kind in kinds:
            with database(kind, folder, options.postgres_url) as small_url, Site(small_url) as small_site:
                with database(kind, folder, options.postgres_url) as large_url, Site(large_url) as large_site:
                    measure(small_site, large_site, kind, options.size, result)
    return result


def measure(small_site: Site, large_site: Site, kind: str, size: int, result: Result) -> None:
    """Time both databases turn about, so a busy moment of the machine hits both alike."""
    small = max(size // 100, 10)
    histories = {}
    for site, total in ((small_site, small), (large_site, size)):
        with site.app.app_context():
            histories[total] = History(site)
            histories[total].grow(total)
    claims: dict[int, list[float]] = {small: [], size: []}
    pages: dict[int, list[float]] = {small: [], size: []}
    for _ in range(REPEATS):
        for total, history in histories.items():
            with history.site.app.app_context():
                claims[total].append(time_claim(history))
                pages[total].append(time_page(history))
    claim_small, claim_large = statistics.median(claims[small]), statistics.median(claims[size])
    page_small, page_large = statistics.median(pages[small]), statistics.median(pages[size])
    say(f"{kind}: {small:,} historical: claim {claim_small * 1000:.2f} ms, first page {page_small * 1000:.2f} ms")
    say(f"{kind}: {size:,} historical: claim {claim_large * 1000:.2f} ms, first page {page_large * 1000:.2f} ms")
    with large_site.app.app_context():
        plans = explain(histories[size])
    label = "PostgreSQL" if kind == "postgres" else "SQLite"
    result.add(Figure(f"{label}: claim of {CLAIM_LIMIT} due", claim_large * 1000, "ms", claim_small * 1000, "<=", 1.2,
                      f"{small:,} historical"))
    result.add(Figure(f"{label}: first history page", page_large * 1000, "ms", page_small * 1000, "<=", 1.5,
                      f"{small:,} historical"))
    scans = [line for plan in plans.values() for line in full_scans(plan)]
    result.add(Figure(f"{label}: full scans of deliveries in the plans", len(scans), "", op="==", bound=0))
    for name, plan in plans.items():
        result.note(f"{label} plan of the {name} at {size:,} historical deliveries:\n{plan}")


class History:
    """A tenant with 2 endpoints, a due backlog and a history grown by copying template rows."""

    def __init__(self, site: Site) -> None:
        from webhooks import publishing
        from webhooks.db import db
        from webhooks.models import Attempt
        from webhooks.models import Delivery
        from webhooks.models import Tenant

        self.site = site
        self.tenant_id, self.key = site.tenant("bench")
        for number in range(2):
            site.endpoint(self.tenant_id, f"http://127.0.0.1:9/never/{number}")
        tenant = db.session.get(Tenant, self.tenant_id)
        template = publishing.publish(tenant, "order.created", {"order": {"id": 1, "total": 120}})
        deliveries = list(db.session.scalars(select(Delivery).where(Delivery.event_id == template.id)))
        for item in deliveries:
            item.status, item.attempts, item.next_attempt_at, item.last_status_code = "succeeded", 1, None, 200
            db.session.add(
                Attempt(delivery_id=item.id, number=1, trigger="scheduled", request_url="http://127.0.0.1:9/never/0",
                        request_headers={"Content-Type": "application/json"}, request_body='{"order":{"id":1}}',
                        response_status=200, response_headers={}, response_body="ok", duration_ms=48)
            )
        db.session.commit()
        self.event_id, self.delivery_id = template.id, deliveries[0].id
        self.endpoints = sorted(item.endpoint_id for item in deliveries)
        for number in range(BACKLOG_EVENTS):
            publishing.publish(tenant, "order.created", {"order": {"id": number}})
        self.backlog = db.session.scalar(text("SELECT count(*) FROM deliveries WHERE status = 'pending'"))
        self.size = 0

    def grow(self, total: int) -> None:
        """Add finished deliveries (one attempt each) until the history holds ``total``."""
        from webhooks.db import db

        total -= total % 2  # two deliveries per event
        while self.size < total:
            count = min(CHUNK, total - self.size)
            self._insert(count)
            self.size += count
            if total > CHUNK:
                say(f"history: {self.size:,} of {total:,} deliveries and attempts")
        db.session.execute(text("ANALYZE"))
        db.session.commit()

    def _insert(self, count: int) -> None:
        from webhooks.db import db
        from webhooks.models import Attempt
        from webhooks.models import Delivery
        from webhooks.models import Event

        first_event = db.session.scalar(text("SELECT max(id) FROM events")) + 1
        first_delivery = db.session.scalar(text("SELECT max(id) FROM deliveries")) + 1
        copy(Event, self.event_id, count // 2, {"uid": "'msg_h' || CAST(n + :offset AS TEXT)"}, offset=first_event)
        copy(Delivery, self.delivery_id, count, {
            "event_id": f"{first_event} + (n - 1) / 2",
            "endpoint_id": f"CASE WHEN n % 2 = 0 THEN {self.endpoints[0]} ELSE {self.endpoints[1]} END",
            "status": "CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'succeeded' END",
        })
        copy(Attempt, self.attempt_id(), count, {"delivery_id": f"{first_delivery} + n - 1"})
        db.session.commit()

    def attempt_id(self) -> int:
        """The template attempt: the first one, written through the ORM."""
        from webhooks.db import db

        return db.session.scalar(text("SELECT min(id) FROM attempts"))


def time_claim(history: History) -> float:
    """Seconds of one ``claim_due`` of ``CLAIM_LIMIT``; the claimed rows are put back afterwards."""
    from webhooks import claims
    from webhooks.db import db

    started = time.perf_counter()
    claimed = claims.claim_due("bench-claimer", CLAIM_LIMIT, lease_seconds=60)
    elapsed = time.perf_counter() - started
    if len(claimed) != min(CLAIM_LIMIT, history.backlog):
        raise RuntimeError(f"claimed {len(claimed)} of a backlog of {history.backlog}")
    db.session.execute(
        claims.sql(
            "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL WHERE id IN :ids",
            "ids",
        ),
        {"ids": [delivery_id for delivery_id, _ in claimed]},
    )
    db.session.commit()
    return elapsed


def time_page(history: History) -> float:
    """Seconds of ``GET /api/v1/deliveries?limit=50``, the history's first page."""
    client = history.site.app.test_client()
    started = time.perf_counter()
    response = client.get(f"/api/v1/deliveries?limit={PAGE}", headers={"Authorization": f"Bearer {history.key}"})
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or len(response.get_json()["data"]) != PAGE:
        raise RuntimeError(f"history page answered {response.status_code}: {response.get_data(as_text=True)[:200]}")
    return elapsed


def explain(history: History) -> dict[str, str]:
    """The query plans of the claim and of the history page's query."""
    from webhooks import claims
    from webhooks.db import db
    from webhooks.db import is_postgres
    from webhooks.db import now_utc
    from webhooks.models import Delivery

    prefix = "EXPLAIN " if is_postgres() else "EXPLAIN QUERY PLAN "
    claim = claims.POSTGRES_CLAIM if is_postgres() else claims.SQLITE_CLAIM
    now = now_utc()
    params = {"owner": "explain", "expires": now, "now": now, "excluded": [claims.NO_ENDPOINT],
              "scan": CLAIM_LIMIT * 4, "limit": CLAIM_LIMIT, "per_endpoint": CLAIM_LIMIT}
    plans = {"claim": _plan(db.session.execute(claims.sql(prefix + claim, "excluded"), params))}
    page = select(Delivery).where(Delivery.tenant_id == history.tenant_id).order_by(Delivery.id.desc()).limit(PAGE + 1)
    compiled = page.compile(db.engine, compile_kwargs={"literal_binds": True})
    plans["history page"] = _plan(db.session.execute(text(prefix + str(compiled))))
    db.session.rollback()
    return plans


def _plan(rows) -> str:
    lines = []
    for row in rows:
        # SQLite: (id, parent, notused, detail); PostgreSQL: one text column.
        lines.append(row[-1] if len(row) == 1 else f"{row[0]:>3} {row[1]:>3}  {row[-1]}")
    return "\n".join(lines)


def full_scans(plan: str) -> list[str]:
    """Plan lines that read every row of ``deliveries`` or ``attempts``.

    On SQLite, ``SCAN deliveries`` in a plan that sorts nothing walks the table
    in the query's own order (``ORDER BY id DESC``), so its ``LIMIT`` stops it
    after one page: that is not a full scan. PostgreSQL says ``Seq Scan``.
    """
    sorts = "USE TEMP B-TREE FOR ORDER BY" in plan
    found = []
    for line in plan.splitlines():
        if re.search(r"Seq Scan on (deliveries|attempts)\b", line):
            found.append(line)
        elif re.search(r"\bSCAN (deliveries|attempts)\b(?! USING (COVERING )?INDEX)", line) and sorts:
            found.append(line)
    return found
