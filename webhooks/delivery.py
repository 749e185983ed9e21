"""One delivery attempt, top to bottom: render, sign, send, record, decide.

No database transaction is open while the request is on the wire: the job is
read into plain values first and the outcome is written afterwards, fenced on
the lease owner, so a slow receiver never holds a SQLite write lock or a
PostgreSQL row lock.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Outcome:
    status: str
    retry_at: datetime | None = None
    error: str | None = None
    disable_reason: str | None = None


def deliver(delivery_id: int, owner: str, settings: Settings) -> str | None:
    """Make one attempt at a delivery claimed by ``owner``; return its new status.

    Returns None when nothing was sent: the lease was lost, or a rate limit
    sent the delivery back to wait without spending an attempt.
    """
    job = load_job(delivery_id, owner)
    if job is None:
        return None
    if not job.enabled:
        return finish_without_sending(job, owner, f"endpoint disabled: {job.disabled_reason or 'by a user'}")
    if job.rate_limit and hold_for_rate_limit(job, owner):
        return None
    try:
        body = render_body(job)
    except templating.TemplateError as exc:
        return finish_without_sending(job, owner, f"payload template failed: {exc}")
    sent_headers, exchange = send(job, body, settings)
    outcome = judge(job, exchange)
    record(job, owner, sent_headers, body, exchange, outcome)
    return outcome.status


def load_job(delivery_id: int, owner: str) -> Job | None:
    """Read the delivery, its event and endpoint, if ``owner`` still holds the lease."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.lease_owner != owner:
        db.session.rollback()
        return None
    endpoint, event = delivery.endpoint, delivery.event
    now = now_utc()
    secrets = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        secrets.append(endpoint.previous_secret)
    job = Job(
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
    )
    db.session.rollback()  # end the read transaction before the network
    return job


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


def send(job: Job, body: bytes, settings: Settings) -> tuple[dict, egress.Exchange]:
    """Sign and POST; with OAuth, a 401 gets one more try with a fresh token."""
    sent_headers, exchange = _post_signed(job, body, settings)
    if exchange.status == 401 and job.auth and job.auth["type"] == "oauth2":
        settings.tokens.forget(job.auth)
        sent_headers, exchange = _post_signed(job, body, settings)
    return sent_headers, exchange


def _post_signed(job: Job, body: bytes, settings: Settings) -> tuple[dict, egress.Exchange]:
    timestamp = int(time.time())
    try:
        auth_headers = receiver_auth.headers_for(
            job.auth, settings.session, settings.tokens, allow_private=settings.allow_private
        )
    except receiver_auth.AuthError as exc:
        return {}, egress.Exchange(error=str(exc))
    headers = {
        **job.custom_headers,
        **auth_headers,
        "Content-Type": "application/json",
        "User-Agent": settings.user_agent,
        **signing.headers(job.secrets, job.event_uid, timestamp, body),
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
    return mask(headers, receiver_auth.secret_header_names(job.auth)), exchange


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
    now = now_utc()
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
            started_at=now - timedelta(milliseconds=exchange.duration_ms),
        )
    )
    kept = _update_delivery(job, owner, outcome, exchange.status, now)
    if kept:
        _update_endpoint_health(job, outcome, now)
    db.session.commit()
    metrics.observe_attempt(outcome.status, exchange.duration_ms)
    log.info(
        "attempt delivery=%s endpoint=%s event=%s number=%s trigger=%s status=%s outcome=%s duration_ms=%s%s",
        job.delivery_id,
        job.endpoint_id,
        job.event_uid,
        job.number,
        job.trigger,
        exchange.status if exchange.status is not None else "-",
        outcome.status,
        exchange.duration_ms,
        f" error={outcome.error!r}" if outcome.error else "",
    )


def finish_without_sending(job: Job, owner: str, error: str) -> str:
    """Fail a delivery that cannot be sent at all (disabled endpoint, broken template); no retries."""
    exchange = egress.Exchange(error=error)
    record(job, owner, {}, b"", exchange, Outcome(FAILED, error=error))
    return FAILED


def hold_for_rate_limit(job: Job, owner: str) -> bool:
    """True when the endpoint's rate limit is used up; the delivery then waits for the next window."""
    wait = ratelimit.take(f"endpoint:{job.endpoint_id}", job.rate_limit, job.rate_period)
    db.session.commit()
    if wait is None:
        return False
    claims.release([job.delivery_id], owner, retry_at=now_utc() + timedelta(seconds=wait))
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


def _header(headers: dict, name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)
