"""One delivery attempt, top to bottom: render, sign, send, record, decide.

No database transaction is open while the request is on the wire: the job is
read into plain values first and the outcome is written afterwards, fenced on
the lease owner, so a slow receiver never holds a SQLite write lock or a
PostgreSQL row lock.

A batching endpoint gets its claimed deliveries as one request whose body is
the JSON array of their usual bodies; every delivery in it gets an attempt
and shares the outcome. Deliveries held back by an open circuit or a rate
limit go back to wait without spending an attempt.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Text
from sqlalchemy import case
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import type_coerce
from sqlalchemy import update

from webhooks import claims
from webhooks import crypto
from webhooks import egress
from webhooks import metrics
from webhooks import ratelimit
from webhooks import receiver_auth
from webhooks import retry
from webhooks import signing
from webhooks import templating
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import FAILED
from webhooks.models import PENDING
from webhooks.models import SUCCEEDED
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import Event
from webhooks.models import PayloadTemplate

log = logging.getLogger("webhooks.delivery")

RETRY_AFTER_STATUSES = (429, 503)
# A batch stops growing once its body passes this; the rest waits for the next one.
BATCH_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What every attempt of one process shares: the HTTP session and the egress rules."""

    session: egress.Session
    tokens: receiver_auth.TokenCache
    allow_private: bool
    body_limit: int
    user_agent: str
    # Shares each commit between many attempts; None commits each one before returning.
    recorder: Recorder | None = None


@dataclass(frozen=True)
class Job:
    """A claimed delivery, read into plain values before any network I/O."""

    delivery_id: int
    number: int
    trigger: str
    event_uid: str
    event_type: str
    event_created_at: datetime
    payload: Any
    endpoint_id: int
    url: str
    enabled: bool
    disabled_reason: str | None
    secrets: tuple[str, ...]
    custom_headers: dict
    auth: dict | None
    timeout: float
    max_attempts: int
    backoff: float
    verify_tls: bool
    template_body: str | None
    rate_limit: int | None
    rate_period: str
    circuit_cooldown: float
    circuit_open_until: datetime | None
    batch_size: int


@dataclass(frozen=True)
class Outcome:
    status: str
    retry_at: datetime | None = None
    error: str | None = None
    disable_reason: str | None = None


def deliver_read(rows: list, owner: str, settings: Settings) -> dict[int, str]:
    """Make one attempt at deliveries of one endpoint claimed together by ``owner``.

    ``rows`` come from :func:`select_jobs`: the sweep reads every delivery it
    claimed with one query and hands each thread its rows, instead of a query
    per thread. A batching endpoint gets them as one JSON array request, even
    a batch of one; any other endpoint is only ever given one delivery at a
    time. Returns the new status of each delivery that was attempted or
    failed without sending; those held back or whose lease was lost are left out.
    """
    jobs = to_jobs(rows)
    if not jobs:
        return {}
    head = jobs[0]
    if not head.enabled:
        reason = f"endpoint disabled: {head.disabled_reason or 'by a user'}"
        return fail_without_sending(jobs, owner, reason, settings.recorder)
    if hold_for_circuit(jobs, owner) or (head.rate_limit and hold_for_rate_limit(jobs, owner)):
        return {}
    statuses: dict[int, str] = {}
    rendered: list[tuple[Job, bytes]] = []
    for job in jobs:
        try:
            rendered.append((job, render_body(job)))
        except templating.TemplateError as exc:
            statuses.update(fail_without_sending([job], owner, f"payload template failed: {exc}", settings.recorder))
    if not rendered:
        return statuses
    if head.batch_size > 1:
        statuses.update(send_batch(rendered, owner, settings))
        return statuses
    for job, body in rendered:  # one, unless batching was switched off after the claim
        sent_headers, exchange = send(job, body, settings)
        outcome = judge(job, exchange)
        record(job, owner, sent_headers, body, exchange, outcome, settings.recorder)
        statuses[job.delivery_id] = outcome.status
    return statuses


def select_jobs(delivery_ids: list[int], owner: str) -> list:
    """The rows :func:`to_jobs` needs for the deliveries ``owner`` still holds, in id order.

    Read inside the caller's transaction (the sweep's claim), which the
    caller ends before anything goes on the wire. One Core select, no ORM
    objects: this runs for every claim.
    """
    return db.session.execute(JOB_QUERY, {"ids": list(delivery_ids), "owner": owner}).all()


def to_jobs(rows: list) -> list[Job]:
    """Jobs from :func:`select_jobs` rows.

    The signing secrets and credentials are read as stored (encrypted) and
    decrypted through :func:`_decrypted`, so an endpoint's secret costs one
    Fernet decryption per process until it changes, not one per attempt.
    """
    now = now_utc()
    return [_job(row, now) for row in rows]


deliveries = Delivery.__table__
events = Event.__table__
endpoints = Endpoint.__table__
templates = PayloadTemplate.__table__

# Encrypted columns are read as stored text (type_coerce skips their decryption).
JOB_QUERY = (
    select(
        deliveries.c.id,
        deliveries.c.attempts,
        deliveries.c.next_trigger,
        events.c.uid,
        events.c.type,
        events.c.created_at,
        events.c.payload,
        endpoints.c.id.label("endpoint_id"),
        endpoints.c.url,
        endpoints.c.enabled,
        endpoints.c.disabled_reason,
        type_coerce(endpoints.c.secret, Text).label("secret"),
        type_coerce(endpoints.c.previous_secret, Text).label("previous_secret"),
        endpoints.c.previous_secret_expires_at,
        endpoints.c.headers,
        type_coerce(endpoints.c.auth, Text).label("auth"),
        endpoints.c.timeout_seconds,
        endpoints.c.max_attempts,
        endpoints.c.backoff_seconds,
        endpoints.c.verify_tls,
        templates.c.body.label("template_body"),
        endpoints.c.rate_limit,
        endpoints.c.rate_period,
        endpoints.c.circuit_cooldown_seconds,
        endpoints.c.circuit_open_until,
        endpoints.c.batch_size,
    )
    .select_from(deliveries)
    .join(events, events.c.id == deliveries.c.event_id)
    .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
    .outerjoin(templates, templates.c.id == endpoints.c.template_id)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)), deliveries.c.lease_owner == bindparam("owner"))
    .order_by(deliveries.c.id)
)


@functools.lru_cache(maxsize=4096)
def _decrypted(stored: str) -> str:
    """The plain text of an encrypted column value.

    Keyed by the stored text: every write of a secret (rotation, edit,
    re-encryption) stores a new ciphertext, so a cached value can never
    outlive the secret it was read from.
    """
    return crypto.decrypt(stored)


def _job(row, now: datetime) -> Job:
    secrets = [_decrypted(row.secret)]
    if row.previous_secret and row.previous_secret_expires_at and row.previous_secret_expires_at > now:
        secrets.append(_decrypted(row.previous_secret))
    return Job(
        delivery_id=row.id,
        number=row.attempts + 1,
        trigger=row.next_trigger,
        event_uid=row.uid,
        event_type=row.type,
        event_created_at=row.created_at,
        payload=row.payload,
        endpoint_id=row.endpoint_id,
        url=row.url,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        secrets=tuple(secrets),
        custom_headers=dict(row.headers or {}),
        auth=json.loads(_decrypted(row.auth)) if row.auth is not None else None,
        timeout=row.timeout_seconds,
        max_attempts=row.max_attempts,
        backoff=row.backoff_seconds,
        verify_tls=row.verify_tls,
        template_body=row.template_body,
        rate_limit=row.rate_limit,
        rate_period=row.rate_period,
        circuit_cooldown=row.circuit_cooldown_seconds,
        circuit_open_until=row.circuit_open_until,
        batch_size=row.batch_size,
    )


def event_fields(job: Job) -> dict:
    """The ``event`` object templates and the default envelope see."""
    return {"id": job.event_uid, "type": job.event_type, "created_at": job.event_created_at.isoformat()}


def render_body(job: Job) -> bytes:
    """The request body: the endpoint's template, or the default envelope.

    The default envelope is ``{"id", "type", "created_at", "data"}``.
    """
    event = event_fields(job)
    if job.template_body is None:
        envelope = {**event, "data": job.payload}
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
    context = templating.template_context(job.payload, event=event)
    return templating.render_payload(job.template_body, context).encode()


def send(job: Job, body: bytes, settings: Settings, *, message_id: str | None = None) -> tuple[dict, egress.Exchange]:
    """Sign and POST; with OAuth, a 401 gets one more try with a fresh token.

    ``message_id`` is the ``webhook-id``: the event's id unless a batch is sent.
    """
    sent_headers, exchange, auth_headers = _post_signed(job, body, settings, message_id or job.event_uid)
    if exchange.status == 401 and job.auth and job.auth["type"] == "oauth2":
        rejected = auth_headers["Authorization"].removeprefix("Bearer ")
        settings.tokens.forget(job.auth, rejected)
        sent_headers, exchange, _ = _post_signed(job, body, settings, message_id or job.event_uid)
    return sent_headers, exchange


def _post_signed(job: Job, body: bytes, settings: Settings, message_id: str) -> tuple[dict, egress.Exchange, dict]:
    timestamp = int(time.time())
    try:
        auth_headers = receiver_auth.headers_for(
            job.auth, settings.session, settings.tokens, allow_private=settings.allow_private
        )
    except receiver_auth.AuthError as exc:
        return {}, egress.Exchange(error=str(exc)), {}
    headers = {
        **job.custom_headers,
        **auth_headers,
        "Content-Type": "application/json",
        "User-Agent": settings.user_agent,
        **signing.headers(job.secrets, message_id, timestamp, body),
    }
    exchange = egress.post(
        settings.session,
        job.url,
        headers=headers,
        body=body,
        timeout=job.timeout,
        body_limit=settings.body_limit,
        allow_private=settings.allow_private,
        verify_tls=job.verify_tls,
    )
    return mask(headers, receiver_auth.secret_header_names(job.auth)), exchange, auth_headers


def send_batch(rendered: list[tuple[Job, bytes]], owner: str, settings: Settings) -> dict[int, str]:
    """Send rendered deliveries of a batching endpoint as one JSON array; record an attempt for each.

    The array holds each delivery's usual body in publish order; the request
    is signed over the whole array with :func:`batch_id` as its
    ``webhook-id``. Deliveries past ``BATCH_MAX_BYTES`` go back to wait for
    the next batch without spending an attempt.
    """
    size, cut = 2, len(rendered)
    for index, (_, body) in enumerate(rendered):
        size += len(body) + 1
        if size > BATCH_MAX_BYTES and index > 0:
            cut = index
            break
    rendered, left = rendered[:cut], rendered[cut:]
    if left:
        claims.release([job.delivery_id for job, _ in left], owner)
    jobs = [job for job, _ in rendered]
    message_id = batch_id(jobs)
    body = b"[" + b",".join(body for _, body in rendered) + b"]"
    sent_headers, exchange = send(jobs[0], body, settings, message_id=message_id)
    outcomes = [judge(job, exchange) for job in jobs]
    bodies = [body for _, body in rendered]
    record_batch(jobs, owner, sent_headers, bodies, exchange, outcomes, batch=message_id, recorder=settings.recorder)
    return {job.delivery_id: outcome.status for job, outcome in zip(jobs, outcomes)}


def batch_id(jobs: list[Job]) -> str:
    """The ``webhook-id`` of a batch: ``batch_`` and a digest of its events' ids.

    The same events in a retried batch give the same id, so a receiver can
    de-duplicate whole batches; events that end up in a different batch are
    told apart by their own ``id`` inside the array.
    """
    digest = hashlib.sha256(" ".join(job.event_uid for job in jobs).encode()).digest()
    return "batch_" + base64.urlsafe_b64encode(digest[:18]).decode()

def mask(headers: dict, secret_names: set[str]) -> dict:
    """Headers as stored in the attempt log: credentials shortened so they cannot be reused."""
    return {name: _masked(value) if name.lower() in secret_names else value for name, value in headers.items()}


def _masked(value: str) -> str:
    return value[:4] + "…" if len(value) > 12 else "***"


def judge(job: Job, exchange: egress.Exchange) -> Outcome:
    """2xx succeeds; 410 fails for good and disables the endpoint; anything else retries."""
    now = now_utc()
    if exchange.status is not None and 200 <= exchange.status < 300:
        return Outcome(SUCCEEDED)
    error = exchange.error or f"HTTP {exchange.status}"
    if exchange.status == 410:
        return Outcome(FAILED, error=error, disable_reason=f"receiver answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC")
    retry_after = None
    if exchange.status in RETRY_AFTER_STATUSES:
        retry_after = retry.parse_retry_after(_header(exchange.headers, "Retry-After"), now)
    if job.trigger == "manual":
        # A redelivery is one attempt a person asked for; it does not restart the schedule.
        return Outcome(FAILED, error=error)
    decision = retry.decide(job.number, job.max_attempts, base=job.backoff, now=now, retry_after=retry_after)
    if decision.retry_at is None:
        return Outcome(FAILED, error=error)
    return Outcome(PENDING, retry_at=decision.retry_at, error=error)


def record(
    job: Job,
    owner: str,
    sent_headers: dict,
    body: bytes,
    exchange: egress.Exchange,
    outcome: Outcome,
    recorder: Recorder | None = None,
) -> None:
    """Store the attempt and the delivery's new state in one transaction."""
    record_batch([job], owner, sent_headers, [body], exchange, [outcome], recorder=recorder)


def record_batch(
    jobs: list[Job],
    owner: str,
    sent_headers: dict,
    bodies: list[bytes],
    exchange: egress.Exchange,
    outcomes: list[Outcome],
    *,
    batch: str | None = None,
    recorder: Recorder | None = None,
) -> None:
    """Store one request's attempt for each delivery it carried, and their new states, in one transaction.

    For a ``batch`` each attempt keeps the shared headers and response but
    only its own element of the array, so a batch of a thousand does not
    store the whole array a thousand times. The circuit breaker counts the
    request once, however many deliveries it carried. With a ``recorder``
    the transaction is shared with other threads' attempts and may commit
    after this returns (see :class:`Recorder`); without, this commits.
    """
    outcome_record = Record(jobs, owner, sent_headers, bodies, exchange, outcomes, batch, now_utc())
    if recorder is None:
        write_records([outcome_record])
    else:
        recorder.write(outcome_record)
    for job, outcome in zip(jobs, outcomes):
        metrics.observe_attempt(outcome.status, exchange.duration_ms)
        log.info(
            "attempt delivery=%s endpoint=%s event=%s number=%s trigger=%s status=%s outcome=%s duration_ms=%s%s%s",
            job.delivery_id,
            job.endpoint_id,
            job.event_uid,
            job.number,
            job.trigger,
            exchange.status if exchange.status is not None else "-",
            outcome.status,
            exchange.duration_ms,
            f" batch={batch}" if batch else "",
            f" error={outcome.error!r}" if outcome.error else "",
        )


@dataclass(frozen=True)
class Record:
    """One request's outcome, waiting to be written: what :func:`record_batch` was given."""

    jobs: list[Job]
    owner: str
    sent_headers: dict
    bodies: list[bytes]
    exchange: egress.Exchange
    outcomes: list[Outcome]
    batch: str | None
    finished_at: datetime


def write_records(records: list[Record]) -> None:
    """Write the attempts and outcomes of ``records`` in one transaction, and commit.

    Each delivery's new state is fenced on its lease owner: an outcome only
    lands while the lease is still the recording worker's. The attempt row is
    written either way, since the request did go out. Deliveries that get the
    same new state share one UPDATE, so a transaction of a hundred successes
    is three statements, not three hundred.
    """
    db.session.execute(insert(attempts), [row for item in records for row in _attempt_rows(item)])
    kept = _update_deliveries(records)
    _feed_circuit_breakers(records, kept)
    db.session.commit()


attempts = Attempt.__table__


def _attempt_rows(item: Record) -> list[dict]:
    exchange = item.exchange
    started_at = item.finished_at - timedelta(milliseconds=exchange.duration_ms)
    return [
        {
            "delivery_id": job.delivery_id,
            "number": job.number,
            "trigger": job.trigger,
            "request_url": job.url,
            "request_headers": item.sent_headers,
            "request_body": body.decode("utf-8", errors="replace"),
            "response_status": exchange.status,
            "response_headers": exchange.headers or None,
            "response_body": exchange.body if exchange.status is not None else None,
            "duration_ms": exchange.duration_ms,
            "error": exchange.error,
            "batch_id": item.batch,
            "batch_size": len(item.jobs) if item.batch else None,
            "started_at": started_at,
        }
        for job, body in zip(item.jobs, item.bodies)
    ]


def _update_deliveries(records: list[Record]) -> set[int]:
    """Write each delivery's outcome where its lease still holds; return the ids written."""
    groups: dict[tuple, list[int]] = {}
    for item in records:
        for job, outcome in zip(item.jobs, item.outcomes):
            key = (item.owner, outcome.status, outcome.retry_at, outcome.error, item.exchange.status)
            groups.setdefault(key, []).append(job.delivery_id)
    now = now_utc()
    kept: set[int] = set()
    for (owner, status, retry_at, error, status_code), ids in groups.items():
        values = {
            "status": status,
            "retry_at": retry_at,
            "code": status_code,
            "error": error,
            "now": now,
            "ids": ids,
            "owner": owner,
        }
        kept.update(db.session.scalars(FENCED_OUTCOME, values))
    return kept


def _feed_circuit_breakers(records: list[Record], kept: set[int]) -> None:
    """One health update per request whose outcome landed, in the order the requests finished.

    Endpoint by endpoint in id order, so that two workers' transactions lock
    endpoint rows in the same order and cannot deadlock. When every request
    succeeded (the usual case) one statement resets them all.
    """
    requests_by_endpoint: dict[int, list[tuple[Job, Outcome, datetime]]] = {}
    for item in records:
        landed = [(job, outcome) for job, outcome in zip(item.jobs, item.outcomes) if job.delivery_id in kept]
        if landed:
            job, outcome = landed[0]
            requests_by_endpoint.setdefault(job.endpoint_id, []).append((job, outcome, item.finished_at))
    if all(outcome.status == SUCCEEDED for done in requests_by_endpoint.values() for _, outcome, _ in done):
        if requests_by_endpoint:
            db.session.execute(RESET_HEALTH, {"endpoints": sorted(requests_by_endpoint)})
        return
    for endpoint_id in sorted(requests_by_endpoint):
        previous = None
        for job, outcome, finished_at in requests_by_endpoint[endpoint_id]:
            if not (outcome.status == SUCCEEDED and previous == SUCCEEDED):  # a second reset changes nothing
                _update_endpoint_health(job, outcome, finished_at)
            previous = outcome.status


FENCED_OUTCOME = claims.sql(
    "UPDATE deliveries SET status = :status, attempts = attempts + 1, next_attempt_at = :retry_at,"
    " next_trigger = 'retry', lease_owner = NULL, lease_expires_at = NULL, last_status_code = :code,"
    " last_error = :error, updated_at = :now"
    " WHERE id IN :ids AND lease_owner = :owner RETURNING id",
    "ids",
)


class Recorder:
    """Writes the outcomes of many delivery threads together, in one transaction.

    A commit costs the same for one attempt as for a hundred, and on SQLite
    every transaction queues for the one write lock, so a thread per attempt
    committing on its own spends more time writing than sending. Threads hand
    their :class:`Record` to :meth:`write` and go on to the next delivery; one
    recorder thread takes whatever piled up since its last commit and writes
    it all at once. Nothing is lost by not waiting: until its outcome lands, a
    delivery stays leased to this worker (no one else can claim it), and if
    the worker dies first, the lease expires and the delivery is sent again,
    as after any crash between sending and committing.

    At most ``backlog`` records wait; past that :meth:`write` blocks, so a
    slow database slows the sending down instead of filling memory. If a
    group's transaction fails (a row the database refuses), each record is
    written on its own, so one bad attempt does not lose the others.
    """

    MAX_RECORDS = 500

    def __init__(self, app, backlog: int) -> None:
        self.app = app
        self.backlog = backlog
        self._changed = threading.Condition()
        self._waiting = 0  # handed over, not yet written
        # A queue per recorder thread, so one that is stopping never takes
        # records meant for its successor, nor the other way round.
        self._queue: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None

    def write(self, item: Record) -> None:
        """Queue ``item`` for the next group; blocks only while the backlog is full."""
        with self._changed:
            while self._waiting >= self.backlog:
                self._changed.wait()
            self._waiting += 1
            if self._thread is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="delivery-recorder", daemon=True
                )
                self._thread.start()
            self._queue.put(item)

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed over is written; False if that took longer than ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._waiting == 0, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the recorder thread."""
        with self._changed:
            thread, waiting = self._thread, self._queue
            self._thread = self._queue = None
            if waiting is not None:
                waiting.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self, waiting: queue.SimpleQueue) -> None:
        stopping = False
        while not stopping:
            group, stopping = self._take(waiting)
            if not group:
                continue
            with self.app.app_context():
                try:
                    self._write_group(group)
                finally:
                    db.session.remove()
            with self._changed:
                self._waiting -= len(group)
                self._changed.notify_all()

    def _take(self, waiting: queue.SimpleQueue) -> tuple[list[Record], bool]:
        """Everything queued (up to ``MAX_RECORDS``), waiting for the first; and whether to stop after it."""
        group = []
        item = waiting.get()
        while item is not None:
            group.append(item)
            if len(group) == self.MAX_RECORDS:
                return group, False
            try:
                item = waiting.get_nowait()
            except queue.Empty:
                return group, False
        return group, True

    def _write_group(self, group: list[Record]) -> None:
        try:
            write_records(group)
            return
        except Exception:
            db.session.rollback()
            if len(group) == 1:
                _log_unrecorded(group[0])
                return
        for item in group:
            try:
                write_records([item])
            except Exception:
                db.session.rollback()
                _log_unrecorded(item)


def _log_unrecorded(item: Record) -> None:
    log.exception(
        "the outcome of delivery %s could not be recorded; it will be sent again after its lease expires",
        " ".join(str(job.delivery_id) for job in item.jobs),
    )


def fail_without_sending(
    jobs: list[Job], owner: str, error: str, recorder: Recorder | None = None
) -> dict[int, str]:
    """Fail deliveries that cannot be sent at all (disabled endpoint, broken template); no retries."""
    exchange = egress.Exchange(error=error)
    outcomes = [Outcome(FAILED, error=error)] * len(jobs)
    record_batch(jobs, owner, {}, [b""] * len(jobs), exchange, outcomes, recorder=recorder)
    return {job.delivery_id: FAILED for job in jobs}


def hold_for_circuit(jobs: list[Job], owner: str) -> bool:
    """True when the endpoint's circuit opened after these deliveries were claimed.

    They were claimed while it was closed, and another delivery's failure
    opened it meanwhile: they wait for the cool-down with the rest of the
    endpoint's queue instead of hitting a receiver that just failed.
    """
    open_until = jobs[0].circuit_open_until
    if open_until is None or open_until <= now_utc():
        return False
    claims.release([job.delivery_id for job in jobs], owner, retry_at=open_until)
    return True


def hold_for_rate_limit(jobs: list[Job], owner: str) -> bool:
    """True when the endpoint's rate limit is used up; the deliveries then wait until there is room.

    A request counts once, whether it carries one delivery or a batch.
    """
    head = jobs[0]
    wait = ratelimit.take_sliding(f"endpoint:{head.endpoint_id}", head.rate_limit, head.rate_period)
    db.session.commit()
    if wait is None:
        return False
    claims.release([job.delivery_id for job in jobs], owner, retry_at=now_utc() + timedelta(seconds=wait))
    return True


# A Core statement built once: the ORM's update() costs more to compile than to run.
RESET_HEALTH = (
    update(endpoints)
    .where(endpoints.c.id.in_(bindparam("endpoints", expanding=True)), endpoints.c.consecutive_failures > 0)
    .values(consecutive_failures=0, failing_since=None, circuit_open_until=None)
)


def _update_endpoint_health(job: Job, outcome: Outcome, now: datetime) -> None:
    """Feed the circuit breaker; disable the endpoint on 410 or after failing too long."""
    if outcome.status == SUCCEEDED:
        db.session.execute(RESET_HEALTH, {"endpoints": [job.endpoint_id]})
        return
    if outcome.error and outcome.error.startswith(("endpoint disabled", "payload template failed")):
        return  # nothing was sent: says nothing about the receiver's health
    failures = Endpoint.consecutive_failures + 1
    db.session.execute(
        update(Endpoint)
        .where(Endpoint.id == job.endpoint_id)
        .values(
            consecutive_failures=failures,
            failing_since=func.coalesce(Endpoint.failing_since, now),
            circuit_open_until=case(
                (failures >= Endpoint.circuit_threshold, now + timedelta(seconds=job.circuit_cooldown)),
                else_=Endpoint.circuit_open_until,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    endpoint = db.session.get(Endpoint, job.endpoint_id)
    db.session.refresh(endpoint)
    reason = outcome.disable_reason
    if reason is None and endpoint.failing_since <= now - timedelta(hours=endpoint.disable_after_hours):
        reason = f"failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC (over {endpoint.disable_after_hours:g} h)"
    if reason and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.disabled_at = now


def _header(headers: dict, name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)
