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
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from webhooks import claims
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

log = logging.getLogger("webhooks.delivery")

RETRY_AFTER_STATUSES = (429, 503)
# A batch stops growing once its body passes this; the rest waits for the next one.
BATCH_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What every attempt of one process shares: the HTTP session and the egress rules."""

    session: requests.Session
    tokens: receiver_auth.TokenCache
    allow_private: bool
    body_limit: int
    user_agent: str


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


def deliver(delivery_id: int, owner: str, settings: Settings) -> str | None:
    """Make one attempt at a delivery claimed by ``owner``; return its new status.

    Returns None when nothing was sent: the lease was lost, or an open
    circuit or a rate limit sent the delivery back to wait without spending
    an attempt.
    """
    return deliver_batch([delivery_id], owner, settings).get(delivery_id)


def deliver_batch(delivery_ids: list[int], owner: str, settings: Settings) -> dict[int, str]:
    """Make one attempt at deliveries of one endpoint claimed together by ``owner``.

    A batching endpoint gets them as one JSON array request, even a batch of
    one; any other endpoint is only ever given one delivery at a time.
    Returns the new status of each delivery that was attempted or failed
    without sending; those held back or whose lease was lost are left out.
    """
    jobs = load_jobs(delivery_ids, owner)
    if not jobs:
        return {}
    head = jobs[0]
    if not head.enabled:
        return fail_without_sending(jobs, owner, f"endpoint disabled: {head.disabled_reason or 'by a user'}")
    if hold_for_circuit(jobs, owner) or (head.rate_limit and hold_for_rate_limit(jobs, owner)):
        return {}
    statuses: dict[int, str] = {}
    rendered: list[tuple[Job, bytes]] = []
    for job in jobs:
        try:
            rendered.append((job, render_body(job)))
        except templating.TemplateError as exc:
            statuses.update(fail_without_sending([job], owner, f"payload template failed: {exc}"))
    if not rendered:
        return statuses
    if head.batch_size > 1:
        statuses.update(send_batch(rendered, owner, settings))
        return statuses
    for job, body in rendered:  # one, unless batching was switched off after the claim
        sent_headers, exchange = send(job, body, settings)
        outcome = judge(job, exchange)
        record(job, owner, sent_headers, body, exchange, outcome)
        statuses[job.delivery_id] = outcome.status
    return statuses


def load_job(delivery_id: int, owner: str) -> Job | None:
    """Read the delivery, its event and endpoint, if ``owner`` still holds the lease."""
    jobs = load_jobs([delivery_id], owner)
    return jobs[0] if jobs else None


def load_jobs(delivery_ids: list[int], owner: str) -> list[Job]:
    """Read the deliveries ``owner`` still holds, in id (publish) order, with their events and endpoint."""
    deliveries = db.session.scalars(
        select(Delivery).where(Delivery.id.in_(delivery_ids), Delivery.lease_owner == owner).order_by(Delivery.id)
    ).all()
    jobs = [_job(delivery) for delivery in deliveries]
    db.session.rollback()  # end the read transaction before the network
    return jobs


def _job(delivery: Delivery) -> Job:
    endpoint, event = delivery.endpoint, delivery.event
    now = now_utc()
    secrets = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        secrets.append(endpoint.previous_secret)
    return Job(
        delivery_id=delivery.id,
        number=delivery.attempts + 1,
        trigger=delivery.next_trigger,
        event_uid=event.uid,
        event_type=event.type,
        event_created_at=event.created_at,
        payload=event.payload,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        secrets=tuple(secrets),
        custom_headers=dict(endpoint.headers or {}),
        auth=endpoint.auth,
        timeout=endpoint.timeout_seconds,
        max_attempts=endpoint.max_attempts,
        backoff=endpoint.backoff_seconds,
        verify_tls=endpoint.verify_tls,
        template_body=endpoint.template.body if endpoint.template else None,
        rate_limit=endpoint.rate_limit,
        rate_period=endpoint.rate_period,
        circuit_cooldown=endpoint.circuit_cooldown_seconds,
        circuit_open_until=endpoint.circuit_open_until,
        batch_size=endpoint.batch_size,
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
    record_batch(jobs, owner, sent_headers, [body for _, body in rendered], exchange, outcomes, batch=message_id)
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


def record(job: Job, owner: str, sent_headers: dict, body: bytes, exchange: egress.Exchange, outcome: Outcome) -> None:
    """Store the attempt and the delivery's new state in one transaction."""
    record_batch([job], owner, sent_headers, [body], exchange, [outcome])


def record_batch(
    jobs: list[Job],
    owner: str,
    sent_headers: dict,
    bodies: list[bytes],
    exchange: egress.Exchange,
    outcomes: list[Outcome],
    *,
    batch: str | None = None,
) -> None:
    """Store one request's attempt for each delivery it carried, and their new states, in one transaction.

    For a ``batch`` each attempt keeps the shared headers and response but
    only its own element of the array, so a batch of a thousand does not
    store the whole array a thousand times. The circuit breaker counts the
    request once, however many deliveries it carried.
    """
    now = now_utc()
    kept = []
    for job, body, outcome in zip(jobs, bodies, outcomes):
        db.session.add(
            Attempt(
                delivery_id=job.delivery_id,
                number=job.number,
                trigger=job.trigger,
                request_url=job.url,
                request_headers=sent_headers,
                request_body=body.decode("utf-8", errors="replace"),
                response_status=exchange.status,
                response_headers=exchange.headers or None,
                response_body=exchange.body if exchange.status is not None else None,
                duration_ms=exchange.duration_ms,
                error=exchange.error,
                batch_id=batch,
                batch_size=len(jobs) if batch else None,
                started_at=now - timedelta(milliseconds=exchange.duration_ms),
            )
        )
        if _update_delivery(job, owner, outcome, exchange.status, now):
            kept.append((job, outcome))
    if kept:
        _update_endpoint_health(*kept[0], now)
    db.session.commit()
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


def finish_without_sending(job: Job, owner: str, error: str) -> str:
    """Fail a delivery that cannot be sent at all (disabled endpoint, broken template); no retries."""
    return fail_without_sending([job], owner, error)[job.delivery_id]


def fail_without_sending(jobs: list[Job], owner: str, error: str) -> dict[int, str]:
    """:func:`finish_without_sending` for several deliveries, in one transaction."""
    exchange = egress.Exchange(error=error)
    record_batch(jobs, owner, {}, [b""] * len(jobs), exchange, [Outcome(FAILED, error=error)] * len(jobs))
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


def _update_delivery(job: Job, owner: str, outcome: Outcome, status_code: int | None, now: datetime) -> bool:
    """Write the outcome if ``owner`` still holds the lease; False when another worker took over."""
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == job.delivery_id, Delivery.lease_owner == owner)
        .values(
            status=outcome.status,
            attempts=Delivery.attempts + 1,
            next_attempt_at=outcome.retry_at,
            next_trigger="retry",
            lease_owner=None,
            lease_expires_at=None,
            last_status_code=status_code,
            last_error=outcome.error,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _update_endpoint_health(job: Job, outcome: Outcome, now: datetime) -> None:
    """Feed the circuit breaker; disable the endpoint on 410 or after failing too long."""
    if outcome.status == SUCCEEDED:
        db.session.execute(
            update(Endpoint)
            .where(Endpoint.id == job.endpoint_id, Endpoint.consecutive_failures > 0)
            .values(consecutive_failures=0, failing_since=None, circuit_open_until=None)
            .execution_options(synchronize_session=False)
        )
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
