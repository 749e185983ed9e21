"""7. Memory: a worker facing a backlog of N due deliveries stays small.

The backlog (4 endpoints, one real event) is copied from a delivery the hub
published itself, with ``INSERT ... SELECT`` on SQLite. Then one ``flask
worker`` with the default settings works on it, against a receiver that
answers at once, for the given seconds; its RSS is sampled every 50 ms. A
worker that loaded the backlog at once, or kept what it sent, would grow
with N; this one should not.
"""

from __future__ import annotations

from sqlalchemy import select

from bench.bulk import copy
from bench.clients import wait_for
from bench.procs import database
from bench.procs import hub_env
from bench.procs import say
from bench.procs import scratch
from bench.procs import worker
from bench.receiver import ReceiverProcess
from bench.report import Figure
from bench.report import Result
from bench.scenarios import Options
from bench.scenarios.inflight import PeakRss
from bench.site import Site

ENDPOINTS = 4
CHUNK = 200_000


def run(options: Options) -> Result:
    """Peak RSS of one worker working on the backlog for ``options.seconds``."""
    size, seconds = options.size, options.seconds
    result = Result("memory", "7. Memory", size, seconds)
    with ReceiverProcess() as receiver, scratch() as folder, database("sqlite", folder, options.postgres_url) as url:
        with Site(url) as site:
            make_backlog(site, receiver, size)
            say(f"backlog: {site.count_deliveries('pending'):,} due deliveries; a worker works on it for {seconds:g} s")
            with worker("worker", hub_env(url), folder) as sweeper, PeakRss(sweeper.pid) as peak:
                try:
                    wait_for(lambda: site.count_deliveries("pending") == 0, timeout=seconds, every=0.5,
                             progress=lambda: f"{size - site.count_deliveries('pending'):,} claimed, "
                                              f"RSS {peak.peak:.0f} MB", what="backlog drained")
                except TimeoutError:
                    pass  # the window is over; what matters is the memory meanwhile
                sent = site.count_deliveries("succeeded")
    result.add(Figure("worker RSS, peak", peak.peak, "MB", op="<=", bound=250))
    result.add(Figure("deliveries sent while sampled", sent, ""))
    result.note(f"{size:,} due deliveries over {ENDPOINTS} endpoints; worker with 16 threads; sampled for {seconds:g} s.")
    return result


def make_backlog(site: Site, receiver: ReceiverProcess, size: int) -> None:
    """A tenant, 4 endpoints on the receiver and ``size`` due deliveries copied from a published one."""
    from webhooks import publishing
    from webhooks.db import db
    from webhooks.models import Delivery
    from webhooks.models import Tenant

    tenant_id, _ = site.tenant("bench")
    for number in range(ENDPOINTS):
        site.endpoint(tenant_id, receiver.url(f"/e{number}"))
    with site.app.app_context():
        event = publishing.publish(db.session.get(Tenant, tenant_id), "order.created", {"order": {"id": 1, "total": 9}})
        template, *_ = db.session.scalars(select(Delivery.id).where(Delivery.event_id == event.id))
        endpoint_ids = sorted(db.session.scalars(select(Delivery.endpoint_id).where(Delivery.event_id == event.id)))
        spread = " ".join(f"WHEN {i} THEN {endpoint_id}" for i, endpoint_id in enumerate(endpoint_ids))
        made = 0
        while made < size:
            count = min(CHUNK, size - made)
            copy(Delivery, template, count, {"endpoint_id": f"CASE n % {ENDPOINTS} {spread} END"})
            db.session.commit()
            made += count
            say(f"backlog: {made:,} of {size:,}")
        db.session.remove()
