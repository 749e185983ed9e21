"""Inbound hooks: receive, verify, store and de-duplicate provider webhooks, then route them.

Receiving (:func:`receive`) must answer fast and never lose what it accepted,
so it only checks and stores: method → source → size → IP allowlist → rate
limit → body (read no further than the limit) → signature → store → answer.
A request is answered 202 only once its row is committed. The cheap checks
come before the body is read, so a refused sender cannot make the hub read
megabytes. Rejected requests are stored too (headers masked, body cut at
64 KiB, the newest :data:`REJECTED_KEPT` per source) so a person can see why
a provider's delivery failed verification.

Processing (:func:`process_due`) runs in the scheduler. Each accepted request
goes through its source's routes in order, and every route whose condition
matches runs: ``publish`` turns the payload into an outbound event (the hub as
a gateway: provider in, many consumers out), ``handler`` calls a Python
function registered with :mod:`webhooks.hooks`. No matching route: the
request is ``ignored``. A failing handler is retried with backoff up to the
source's ``max_attempts``; a retry runs only the routes that have not
succeeded yet, and publishing uses an idempotency key per request and route,
so nothing is published twice.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import math
import re
import time
import traceback
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from typing import Any
from typing import BinaryIO
from typing import Sequence

from flask import Flask
from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Request

from webhooks import claims
from webhooks import filters
from webhooks import groupcommit
from webhooks import hooks
from webhooks import metrics
from webhooks import providers
from webhooks import publishing
from webhooks import ratelimit
from webhooks import retry
from webhooks import scheduler
from webhooks import sources
from webhooks import templating
from webhooks.db import DriverStatement
from webhooks.db import UTCDateTime
from webhooks.db import db
from webhooks.db import is_postgres
from webhooks.db import now_utc
from webhooks.errors import ApiError
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest
from webhooks.models import PayloadTemplate
from webhooks.models import Tenant

log = logging.getLogger("webhooks.inbound")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

RECEIVED = "received"
PROCESSING = "processing"
PROCESSED = "processed"
IGNORED = "ignored"
FAILED = "failed"
REJECTED = "rejected"
STATUSES = (RECEIVED, PROCESSING, PROCESSED, IGNORED, FAILED, REJECTED)
REPROCESSABLE = (RECEIVED, PROCESSED, IGNORED, FAILED)

#: Rejected requests kept per source; older ones are deleted as new ones come.
REJECTED_KEPT = 1000
REJECTED_BODY_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
#: Waits between processing attempts: about 30 s, 2 min, 8 min, 32 min (see :mod:`webhooks.retry`).
BACKOFF_SECONDS = 30.0
MAX_ERROR_CHARS = 20_000
MAX_DEDUPE_KEY = 200
# Unknown tenant, unknown source and disabled source look the same from outside.
NOT_FOUND = "no such hook"
# Route outcomes that count as done when a retry decides which routes to run again.
SUCCEEDED_OUTCOMES = ("published", "handled")
_NOT_IN_EVENT_TYPE = re.compile(r"[^A-Za-z0-9_.:\-]+")

INSERT_REQUEST = insert(InboundRequest.__table__)
INSERT_ATTEMPT = insert(InboundAttempt.__table__)
#: Requests of sources without routes finished per transaction: about 2 ms of write lock on SQLite.
ROUTELESS_BATCH = 100
# Sources whose routes are empty (stored as [] or JSON null) or missing.
_ROUTELESS_SOURCES = "SELECT id FROM sources WHERE routes IS NULL OR CAST(routes AS TEXT) IN ('[]', 'null')"
_ROUTELESS_DUE = f"""
SELECT id FROM inbound_requests WHERE status = 'received' AND next_attempt_at <= :due_by
  AND source_id IN ({_ROUTELESS_SOURCES})
ORDER BY next_attempt_at, id LIMIT :limit
"""
_IGNORED = """
status = 'ignored', attempts = attempts + 1, next_attempt_at = NULL, lease_owner = NULL,
lease_expires_at = NULL, error = NULL, processed_at = :now
"""
# RETURNING gives the new attempts (this attempt's number) and the untouched next_trigger (its trigger).
SQLITE_IGNORE_ROUTELESS = claims.sql(
    f"""
UPDATE inbound_requests SET {_IGNORED}
WHERE id IN ({_ROUTELESS_DUE}) AND status = 'received'
RETURNING id, attempts, next_trigger, event_type
"""
).bindparams(bindparam("due_by", type_=UTCDateTime()))
POSTGRES_IGNORE_ROUTELESS = claims.sql(
    f"""
WITH due AS MATERIALIZED ({_ROUTELESS_DUE} FOR UPDATE SKIP LOCKED)
UPDATE inbound_requests SET {_IGNORED}
FROM due WHERE inbound_requests.id = due.id
RETURNING inbound_requests.id, inbound_requests.attempts, inbound_requests.next_trigger, inbound_requests.event_type
"""
).bindparams(bindparam("due_by", type_=UTCDateTime()))
PRUNE_REJECTED = text(
    """
DELETE FROM inbound_requests WHERE source_id = :source AND status = 'rejected' AND id <= (
    SELECT id FROM inbound_requests WHERE source_id = :source AND status = 'rejected'
    ORDER BY id DESC LIMIT 1 OFFSET :keep
)
"""
)


# -- receiving ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the hook URL answers: ``body`` for successes, ``message`` for errors."""

    status: int
    body: dict | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Rejection(Exception):
    """A request refused with ``status``; ``reason`` is kept for the person debugging it.

    ``message`` is what the sender sees (the reason, unless that would tell
    a stranger something, as for a disabled source). ``keep=False`` skips
    storing, for refusals whose point is to spare the database (429).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        message: str | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        keep: bool = True,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.message = message or reason
        self.body = body
        self.headers = headers or {}
        self.keep = keep


def receive(request: Request, tenant_slug: str, source_slug: str | None = None) -> Answer:
    """Check, store and acknowledge one provider request to ``/hooks/<tenant>[/<source>]``.

    Answers 202 ``{"id"}`` once stored, 200 with the first request's id for a
    delivery id seen before (not processed again), 200 ``{"challenge"}`` for
    Slack's URL verification; 401 signature, 403 IP allowlist, 404 unknown or
    disabled, 400 malformed body, 413 too large, 405 not POST, 429 with
    ``Retry-After`` over the source's rate limit.
    """
    answer = _receive(request, tenant_slug, source_slug)
    metrics.observe_inbound(answer.status)
    return answer


def _receive(request: Request, tenant_slug: str, source_slug: str | None) -> Answer:
    if request.method != "POST":
        return Answer(405, message="hooks accept POST only", headers={"Allow": "POST"})
    source = sources.lookup(tenant_slug, source_slug)
    if source is None:
        return Answer(404, message=NOT_FOUND)
    try:
        return _accept(source, request)
    except Rejection as rejection:
        if rejection.keep:
            keep_rejected(source, request, rejection)
        return Answer(rejection.status, message=rejection.message, headers=rejection.headers)


def _accept(source: sources.HookSource, request: Request) -> Answer:
    if not source.enabled:
        raise Rejection(404, "the source is disabled", message=NOT_FOUND)
    limit = source.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Rejection(413, f"the body of {request.content_length} bytes is over the {limit} byte limit")
    if not address_allowed(source.networks, request.remote_addr):
        raise Rejection(403, f"{request.remote_addr} is not in the source's IP allowlist")
    check_rate(source)
    body = read_body(request.stream, limit)
    verified = verify(source, request, body)
    if verified.challenge is not None:
        return Answer(200, {"challenge": verified.challenge})
    return persist(source, request, body, verified)


def address_allowed(allowlist: Sequence[Network], remote_addr: str | None) -> bool:
    """True when there is no allowlist or ``remote_addr`` is in one of its networks.

    IPv4 clients seen through an IPv6 socket (``::ffff:192.0.2.1``) are
    matched as the IPv4 address they are.
    """
    if not allowlist:
        return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowlist)


def check_rate(source: sources.HookSource) -> None:
    """Count the request against the source's per-minute limit, or refuse it with 429.

    The count commits at once, in a transaction of its own, so that reading a
    slow upload never holds the database's write lock.
    """
    if not source.rate_limit_per_minute:
        return
    limit = source.rate_limit_per_minute
    wait = ratelimit.take(f"source:{source.id}", limit, "minute")
    db.session.commit()
    if wait is not None:
        raise Rejection(
            429,
            f"over the rate limit of {limit} requests per minute",
            headers={"Retry-After": str(math.ceil(wait))},
            keep=False,
        )


def read_body(stream: BinaryIO, limit: int) -> bytes:
    """The request body, read in chunks and never more than ``limit + 1`` bytes.

    Needed for bodies without a ``Content-Length`` (chunked uploads), where
    the size is only known by reading.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Rejection(413, f"the body is over the {limit} byte limit", body=b"".join(chunks))


def verify(source: sources.HookSource, request: Request, body: bytes) -> providers.Verified:
    """Authenticate with the source's preset and secrets, then parse; 401 or 400 otherwise."""
    try:
        return providers.verify(
            source.provider,
            secrets=source.secrets,
            headers=request.headers,
            body=body,
            content_type=request.content_type,
            config=source.config,
        )
    except providers.VerificationError as exc:
        raise Rejection(401, exc.reason, body=body) from None
    except providers.BodyError as exc:
        raise Rejection(400, str(exc), body=body) from None


def persist(source: sources.HookSource, request: Request, body: bytes, verified: providers.Verified) -> Answer:
    """Store an accepted request; a delivery id seen before answers with the first id.

    The row is committed before the answer, in a transaction shared with the
    other requests arriving at the same moment (:mod:`webhooks.groupcommit`).
    The unique (source, dedupe key) index decides duplicates, so two copies
    of one delivery arriving together cannot both be stored.
    """
    unauthenticated = providers.PRESETS[source.provider].unauthenticated
    values = request_values(
        source,
        request,
        http_status=202,
        reason="not verified: the source accepts unauthenticated requests" if unauthenticated else None,
        event_type=_cut(verified.event_type, 200),
        dedupe_key=dedupe_key(verified.delivery_id),
        body=body,
        now=now_utc(),
        next_trigger="scheduled",
    )
    try:
        request_id, duplicate = groupcommit.run(functools.partial(store_accepted, values))
    except IntegrityError:
        # Not a duplicate (those are no error): the source is gone, deleted by another process since it was cached.
        sources.forget()
        raise
    if duplicate:
        return Answer(200, {"id": request_id, "duplicate": True})
    return Answer(202, {"id": request_id})


def store_accepted(values: dict, connection) -> tuple[int, bool]:
    """Insert an accepted request unless its delivery id is stored already: (id, was it a duplicate).

    A request of a source without routes has nothing to run, so it is
    stored finished, as ``ignored``, exactly as :func:`ignore_routeless`
    would finish it a tick later: the row is written once instead of twice.
    Its attempt row comes from the ``inbound_stored_ignored`` trigger (see
    :mod:`webhooks.models`), so storing is one statement. Whether the source
    has routes is read by the INSERT itself, so a route added a moment ago
    applies (never a cached answer). ``connection`` is a DBAPI connection
    (see :mod:`webhooks.groupcommit`).
    """
    statements = _store_statements(db.engine.dialect)
    cursor = connection.cursor()
    try:
        row = statements.insert.execute(cursor, values).fetchone()
        if row is None:
            return statements.find.execute(cursor, values).fetchone()[0], True
        return row[0], False
    finally:
        cursor.close()


@dataclass(frozen=True)
class StoreStatements:
    insert: DriverStatement
    find: DriverStatement


# {headers}: PostgreSQL types a parameter in a SELECT list as text, so it is cast there;
# SQLite must not cast (CAST AS JSON has numeric affinity: text becomes 0).
_INSERT_ACCEPTED = f"""
INSERT INTO inbound_requests (tenant_id, source_id, status, http_status, reason, event_type, dedupe_key, method,
    content_type, remote_addr, headers, body, attempts, next_attempt_at, next_trigger, created_at, processed_at)
SELECT :tenant_id, :source_id, CASE WHEN routeless THEN '{IGNORED}' ELSE '{RECEIVED}' END, :http_status, :reason,
    :event_type, :dedupe_key, :method, :content_type, :remote_addr, {{headers}}, :body,
    CASE WHEN routeless THEN 1 ELSE 0 END, CASE WHEN routeless THEN NULL ELSE :now END, :next_trigger, :now,
    CASE WHEN routeless THEN :now END
FROM (SELECT EXISTS ({_ROUTELESS_SOURCES} AND id = :source_id) AS routeless) AS source
WHERE true
ON CONFLICT (source_id, dedupe_key) DO NOTHING
RETURNING id
"""


@functools.cache
def _store_statements(dialect) -> StoreStatements:
    find = "SELECT id FROM inbound_requests WHERE source_id = :source_id AND dedupe_key = :dedupe_key"
    return StoreStatements(
        DriverStatement(
            _INSERT_ACCEPTED.format(headers="CAST(:headers AS JSON)" if dialect.name == "postgresql" else ":headers"),
            dialect,
            {"headers": InboundRequest.__table__.c.headers.type, "now": UTCDateTime()},
        ),
        DriverStatement(find, dialect),
    )


def ignored_attempt(request_id: int, number: int, trigger: str, event_type: str | None, now: datetime) -> dict:
    """The attempt row of a request finished as ``ignored`` because no route matched.

    The ``inbound_stored_ignored`` trigger writes the same row for requests stored ignored.
    """
    return {
        "request_id": request_id,
        "number": number,
        "trigger": trigger,
        "outcome": "ignored",
        "route_index": None,
        "detail": f"no route matched event type {event_type or '(none)'}",
        "error": None,
        "duration_ms": 0,
        "started_at": now,
    }


def insert_request(source: sources.HookSource, request: Request, **values: Any) -> int:
    """Insert one request into the session's transaction; return its id (for rejected requests)."""
    result = db.session.connection().execute(INSERT_REQUEST, request_values(source, request, **values))
    return result.inserted_primary_key[0]


def request_values(source: sources.HookSource, request: Request, **values: Any) -> dict:
    """The ``inbound_requests`` row of a request, as received (credentials masked)."""
    return {
        "tenant_id": source.tenant_id,
        "source_id": source.id,
        "method": request.method,
        "content_type": _cut(request.content_type, 200),
        "remote_addr": _cut(request.remote_addr, 64),
        "headers": stored_headers(source, request),
        **values,
    }


def dedupe_key(delivery_id: str | None) -> str | None:
    """The provider's delivery id as stored; ids too long for the column are hashed."""
    if not delivery_id:
        return None
    if len(delivery_id) <= MAX_DEDUPE_KEY:
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()


def stored_headers(source: sources.HookSource, request: Request) -> dict[str, str]:
    """The request's headers with credentials masked: tokens travel in headers, as do cookies."""
    return providers.mask_headers(dict(request.headers), source.sensitive_headers)


def keep_rejected(source: sources.HookSource, request: Request, rejection: Rejection) -> None:
    """Store a refused request for the person debugging it, and drop the oldest beyond the bound."""
    db.session.rollback()
    insert_request(
        source,
        request,
        status=REJECTED,
        http_status=rejection.status,
        reason=rejection.reason,
        body=rejection.body[:REJECTED_BODY_BYTES],
    )
    db.session.execute(PRUNE_REJECTED, {"source": source.id, "keep": REJECTED_KEPT})
    db.session.commit()


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


# -- processing -----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A claimed request with its source's routes, read into plain values before any route runs."""

    request_id: int
    number: int
    trigger: str
    tenant_id: int
    tenant_slug: str
    source_slug: str
    provider: str
    routes: list[dict]
    max_attempts: int
    event_type: str | None
    delivery_id: str | None
    content_type: str | None
    headers: dict[str, str]
    body: bytes
    received_at: datetime
    done_routes: frozenset[int]


@dataclass(frozen=True)
class RouteResult:
    """How one route fared in one attempt; stored as an :class:`InboundAttempt`."""

    index: int | None
    outcome: str  # published | handled | skipped | failed | ignored
    detail: str
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0
    started_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """The request's next state; ``retry_at`` is set while it waits for another attempt."""

    status: str
    retry_at: datetime | None = None
    error: str | None = None


class RouteError(Exception):
    """A route that could not do its work; ``detail`` is the one-line summary."""

    def __init__(self, detail: str, *, error: str | None = None, retryable: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error or detail
        self.retryable = retryable


def process_due(owner: str, *, limit: int = 1000, budget: float = 0.8, now: datetime | None = None) -> int:
    """Process due requests for up to ``budget`` seconds; return how many were processed.

    Requests of sources without routes are finished a batch at a time (see
    :func:`ignore_routeless`); the others are claimed one at a time, so a
    slow handler never sits on claimed requests that another process could
    take. Batches go first (a hundred cost a few milliseconds), and a claim
    is tried only once a batch comes back short, so the one-at-a-time path
    does not pick up route-less requests the next batch would take. Only
    requests due when the tick starts are taken: those that arrive meanwhile
    wait for the next tick, and its batch, instead of keeping this one going
    one request at a time. Must run inside an app context. ``now`` stands in
    for the clock, for tests of retries.
    """
    lease = current_app.config["LEASE_SECONDS"]
    deadline = time.monotonic() + budget
    # Claiming "as of" the tick's start also starts leases up to ``budget`` early: a little shorter.
    due_by = now or now_utc()
    done = 0
    while done < limit and time.monotonic() < deadline:
        batch = min(ROUTELESS_BATCH, limit - done)
        ignored = ignore_routeless(batch, due_by=due_by, now=now)
        done += ignored
        if ignored == batch:
            continue
        claimed = claims.claim_inbound(owner, 1, lease_seconds=lease, now=due_by)
        if not claimed:
            break
        process(claimed[0], owner, now=now)
        done += 1
    return done


def ignore_routeless(limit: int, *, due_by: datetime, now: datetime | None = None) -> int:
    """Finish up to ``limit`` requests of sources without routes, due by ``due_by``, as ``ignored``.

    Returns how many. Such a request has nothing to run, so there is
    nothing to lease: one transaction marks the batch ignored and records
    the attempt each would have got from :func:`record` (outcome
    ``ignored``, "no route matched"), which is what the dashboard and the
    API show. The UPDATE decides which rows are taken, so two processes
    never finish the same request. ``next_trigger`` is left as it was:
    nothing reads it until a reprocess, which sets it anew.
    """
    now = now or now_utc()
    statement = POSTGRES_IGNORE_ROUTELESS if is_postgres() else SQLITE_IGNORE_ROUTELESS
    rows = db.session.execute(statement, {"due_by": due_by, "now": now, "limit": limit}).all()
    if not rows:
        db.session.rollback()
        return 0
    db.session.execute(
        INSERT_ATTEMPT, [ignored_attempt(row.id, row.attempts, row.next_trigger, row.event_type, now) for row in rows]
    )
    db.session.commit()
    ids = sorted(row.id for row in rows)
    log.info("inbound ignored %s requests of sources without routes, ids %s to %s", len(ids), ids[0], ids[-1])
    return len(rows)


def process(request_id: int, owner: str, *, now: datetime | None = None) -> str | None:
    """Run the routes of one request claimed by ``owner``; return its new status.

    Returns None when ``owner`` no longer holds the lease (another process
    took the request over after the lease expired).
    """
    job = load_job(request_id, owner)
    if job is None:
        return None
    results = run_routes(job)
    now = now or now_utc()
    outcome = decide(job, results, now)
    record(job, owner, results, outcome, now)
    return outcome.status


def load_job(request_id: int, owner: str) -> Job | None:
    """Read the request and its source if ``owner`` holds the lease, then end the read transaction."""
    row = db.session.get(InboundRequest, request_id)
    if row is None or row.lease_owner != owner or row.status != PROCESSING:
        db.session.rollback()
        return None
    source = row.source
    done: set[int] = set()
    if row.next_trigger == "retry":
        done = set(
            db.session.scalars(
                select(InboundAttempt.route_index).where(
                    InboundAttempt.request_id == row.id,
                    InboundAttempt.outcome.in_(SUCCEEDED_OUTCOMES),
                    InboundAttempt.route_index.is_not(None),
                )
            )
        )
    job = Job(
        request_id=row.id,
        number=row.attempts + 1,
        trigger=row.next_trigger,
        tenant_id=row.tenant_id,
        tenant_slug=source.tenant.slug,
        source_slug=source.slug,
        provider=source.provider,
        routes=list(source.routes or []),
        max_attempts=source.max_attempts,
        event_type=row.event_type,
        delivery_id=row.dedupe_key,
        content_type=row.content_type,
        headers=dict(row.headers or {}),
        body=row.body,
        received_at=row.created_at,
        done_routes=frozenset(done),
    )
    db.session.rollback()  # no transaction stays open while handlers run
    return job


def parse_event(job: Job) -> hooks.Event:
    """The handler's view of the request: the body parsed the way the preset parses it."""
    media_type = (job.content_type or "").split(";", 1)[0].strip().lower()
    payload = providers.PRESETS[job.provider].parse(job.body, media_type)
    return hooks.Event(
        id=job.request_id,
        provider=job.provider,
        event_type=job.event_type,
        payload=payload,
        headers=job.headers,
        body=job.body,
        source=job.source_slug,
        tenant=job.tenant_slug,
        delivery_id=job.delivery_id,
        received_at=job.received_at,
        attempt=job.number,
    )


def route_context(event: hooks.Event) -> dict:
    """What a route's ``when`` sees: the payload's fields, ``payload``, ``headers``, ``event`` and ``event_type``."""
    context = filters.build_context(
        event.payload,
        event={"id": event.id, "type": event.event_type, "created_at": event.received_at},
        headers=event.headers,
    )
    context["event_type"] = event.event_type
    return context


def run_routes(job: Job) -> list[RouteResult]:
    """Run every matching route in order; an empty list means none matched.

    On an automatic retry, routes that succeeded in an earlier attempt are
    skipped, so a handler that worked does not run again because another
    route failed. A reprocess (manual) runs them all.
    """
    try:
        event = parse_event(job)
    except providers.BodyError as exc:
        return [RouteResult(None, "failed", f"the stored body does not parse as {job.provider}: {exc}")]
    context = route_context(event)
    results = []
    for index, route in enumerate(job.routes):
        try:
            if not route_applies(route, context, event):
                continue
        except filters.FilterSyntaxError as exc:
            results.append(RouteResult(index, "failed", f"routes[{index}].when: {exc}", started_at=now_utc()))
            continue
        if job.trigger == "retry" and index in job.done_routes:
            results.append(RouteResult(index, "skipped", "succeeded in an earlier attempt", started_at=now_utc()))
            continue
        results.append(run_route(index, route, job, event))
    return results


def route_applies(route: dict, context: dict, event: hooks.Event) -> bool:
    """The route's ``when`` matches and, for a handler route, a handler accepts the event.

    A handler declared for ``("github", "push")`` makes its route skip other
    events; a handler name that is not registered applies (and fails, saying
    so) rather than letting events pass silently.
    """
    when = route.get("when")
    if when and not filters.parse(when).evaluate(context):
        return False
    if route["action"] != "handler":
        return True
    name = route["handler"]
    if name != hooks.EVERY_HANDLER and hooks.get(name) is None:
        return True
    return bool(hooks.selected(name, event.provider, event.event_type))


def run_route(index: int, route: dict, job: Job, event: hooks.Event) -> RouteResult:
    """One route's action, timed; its failure is a result, never an exception."""
    started, clock = now_utc(), time.monotonic()
    try:
        if route["action"] == "publish":
            outcome, detail = publish_route(index, route, job, event)
        else:
            outcome, detail = handler_route(route, event)
        result = RouteResult(index, outcome, detail)
    except RouteError as exc:
        db.session.rollback()
        result = RouteResult(index, "failed", exc.detail, error=exc.error, retryable=exc.retryable)
    except Exception as exc:
        # The database or a bug; worth another try once it has recovered.
        db.session.rollback()
        log.exception("route %s of inbound request %s crashed", index, job.request_id)
        result = RouteResult(index, "failed", f"{type(exc).__name__}: {exc}", error=_traceback(), retryable=True)
    return replace(result, duration_ms=int((time.monotonic() - clock) * 1000), started_at=started)


def outbound_type(pattern: str, provider_type: str | None) -> str:
    """The outbound event type of a publish route; ``{event_type}`` becomes the provider's type.

    Characters event types cannot hold (Shopify's ``orders/create``,
    GitLab's ``Push Hook``) become ``_``.
    """
    if sources.EVENT_TYPE_PLACEHOLDER not in pattern:
        return pattern
    if not provider_type:
        raise RouteError("the provider sent no event type to put in {event_type}")
    return pattern.replace(sources.EVENT_TYPE_PLACEHOLDER, _NOT_IN_EVENT_TYPE.sub("_", provider_type))


def publish_route(index: int, route: dict, job: Job, event: hooks.Event) -> tuple[str, str]:
    """Publish the payload (reshaped by the route's template, if any) as an outbound event.

    The idempotency key ``inbound:<request>:<route>`` makes retries and
    reprocessing return the event published the first time.
    """
    event_type = outbound_type(route["event_type"], event.event_type)
    payload = reshape(route["template_id"], event) if route.get("template_id") else event.payload
    tenant = db.session.get(Tenant, job.tenant_id)
    item = {"type": event_type, "payload": payload, "idempotency_key": f"inbound:{job.request_id}:{index}"}
    try:
        published = publishing.publish_many(tenant, [item], bulk=False)[0]
    except ApiError as exc:
        raise RouteError(f"publishing {event_type} was refused: {exc.message}") from None
    again = "" if published.created else "; it had been published before, so not again"
    return "published", f"published {event_type} as event {published.id} to {published.deliveries} endpoint(s){again}"


def reshape(template_id: int, event: hooks.Event) -> Any:
    """The payload rendered through a payload template, which also sees ``headers`` (names lower-cased)."""
    template = db.session.get(PayloadTemplate, template_id)
    if template is None:
        raise RouteError(f"payload template {template_id} no longer exists")
    context = templating.template_context(
        event.payload, event={"id": event.id, "type": event.event_type, "created_at": event.received_at}
    )
    # Jinja looks keys up as they are, so names are lower-cased to give templates one spelling.
    context["headers"] = {name.lower(): value for name, value in event.headers.items()}
    try:
        return json.loads(templating.render_payload(template.body, context))
    except templating.TemplateError as exc:
        raise RouteError(f"payload template {template.name!r} failed: {exc}") from None


def handler_route(route: dict, event: hooks.Event) -> tuple[str, str]:
    """Call the route's handlers in order; the first exception fails the route, traceback kept.

    What a handler leaves uncommitted in ``db.session`` is committed when it
    returns and rolled back when it raises.
    """
    name = route["handler"]
    selected = hooks.selected(name, event.provider, event.event_type)
    if not selected:
        raise RouteError(
            f"no handler named {name!r} is registered in this process (see WEBHOOKS_HANDLERS)", retryable=True
        )
    for handler in selected:
        try:
            handler.function(event)
            db.session.commit()
        except Exception as exc:
            raise RouteError(
                f"handler {handler.name} raised {type(exc).__name__}: {exc}", error=_traceback(), retryable=True
            ) from None
    return "handled", "ran " + ", ".join(handler.name for handler in selected)


def _traceback() -> str:
    # The end of a traceback is where the reader looks first; keep that if it is long.
    return traceback.format_exc()[-MAX_ERROR_CHARS:]


def decide(job: Job, results: list[RouteResult], now: datetime) -> Outcome:
    """``ignored`` without matching routes, ``processed`` if all worked, else retry or ``failed``.

    Only failures that may pass (a handler that raised, a handler not loaded
    yet, a database error) are retried; a template or a catalog schema that
    refuses the payload fails at once, to be fixed and reprocessed. A
    reprocess is one attempt, like a redelivery.
    """
    if not results:
        return Outcome(IGNORED)
    failures = [result for result in results if result.outcome == "failed"]
    if not failures:
        return Outcome(PROCESSED)
    first = failures[0]
    where = f"routes[{first.index}]: " if first.index is not None else ""
    error = where + first.detail
    if first.error and first.error != first.detail:
        error += "\n\n" + first.error
    if job.trigger != "manual" and any(result.retryable for result in failures):
        decision = retry.decide(job.number, job.max_attempts, base=BACKOFF_SECONDS, now=now)
        if decision.retry_at is not None:
            return Outcome(RECEIVED, retry_at=decision.retry_at, error=error)
    return Outcome(FAILED, error=error)


def record(job: Job, owner: str, results: list[RouteResult], outcome: Outcome, now: datetime) -> None:
    """Store the attempt's route results and the request's new state, fenced on the lease."""
    if not results:
        results = [RouteResult(None, "ignored", f"no route matched event type {job.event_type or '(none)'}")]
    for result in results:
        db.session.add(
            InboundAttempt(
                request_id=job.request_id,
                number=job.number,
                trigger=job.trigger,
                outcome=result.outcome,
                route_index=result.index,
                detail=result.detail,
                error=result.error if result.error != result.detail else None,
                duration_ms=result.duration_ms,
                started_at=result.started_at or now,
            )
        )
    finished = outcome.status != RECEIVED
    kept = db.session.execute(
        update(InboundRequest)
        .where(InboundRequest.id == job.request_id, InboundRequest.lease_owner == owner)
        .values(
            status=outcome.status,
            attempts=InboundRequest.attempts + 1,
            next_attempt_at=outcome.retry_at,
            next_trigger="retry",
            lease_owner=None,
            lease_expires_at=None,
            error=outcome.error,
            processed_at=now if finished else None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    log.info(
        "inbound request=%s source=%s event_type=%s attempt=%s trigger=%s outcome=%s%s",
        job.request_id,
        job.source_slug,
        job.event_type,
        job.number,
        job.trigger,
        outcome.status if kept else "lease-lost",
        f" error={outcome.error.splitlines()[0]!r}" if outcome.error else "",
    )


def reprocess(row: InboundRequest) -> InboundRequest:
    """Queue one manual attempt now that runs every matching route again.

    Publishing stays idempotent (the same events come back, nothing is sent
    twice); handlers run again. Rejected requests were never accepted, and a
    request being processed right now is left alone (409).
    """
    if row.status == REJECTED:
        raise ApiError(409, "a rejected request was never accepted, so it cannot be processed")
    changed = db.session.execute(
        update(InboundRequest)
        .where(InboundRequest.id == row.id, InboundRequest.status.in_(REPROCESSABLE))
        .values(status=RECEIVED, next_attempt_at=now_utc(), next_trigger="manual", lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not changed:
        raise ApiError(409, "this request is being processed right now; try again in a moment")
    db.session.refresh(row)
    return row


@scheduler.periodic("inbound", 1.0)
def process_scheduled(app: Flask) -> None:
    """The scheduler's tick: process what is due, under this process's worker name."""
    process_due(scheduler.worker(app).name)


@scheduler.periodic("inbound-reclaim", 5.0)
def reclaim_scheduled(app: Flask) -> None:
    """Give requests whose processor died back to the queue once their lease ran out."""
    reclaimed = claims.reclaim_expired_inbound()
    if reclaimed:
        log.warning("reclaimed %s inbound requests whose lease expired", len(reclaimed))
