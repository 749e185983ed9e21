"""JSON shapes of the API's objects, in one place so every route answers alike.

Secrets never appear here: the API shows an endpoint's secret only in the
answer that created or rotated it, and that view adds it itself.
"""

from __future__ import annotations

import base64

from webhooks import endpoints
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import Event
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest


def iso(value):
    return value.isoformat() if value is not None else None


def endpoint(item: Endpoint) -> dict:
    return {
        "id": item.id,
        "url": item.url,
        "description": item.description,
        "enabled": item.enabled,
        "disabled_reason": item.disabled_reason,
        "disabled_at": iso(item.disabled_at),
        "event_types": item.event_types or [],
        "headers": item.headers or {},
        "timeout_seconds": item.timeout_seconds,
        "max_attempts": item.max_attempts,
        "backoff_seconds": item.backoff_seconds,
        "verify_tls": item.verify_tls,
        "filter": {"match": item.filter_match, "rules": item.filter_rules or []},
        "template_id": item.template_id,
        "auth": {"type": item.auth["type"]} if item.auth else None,
        "rate_limit": {"max": item.rate_limit, "per": item.rate_period} if item.rate_limit else None,
        "ordered": item.ordered,
        "batch_size": item.batch_size,
        "batch_window_seconds": item.batch_window_seconds,
        "circuit_threshold": item.circuit_threshold,
        "circuit_cooldown_seconds": item.circuit_cooldown_seconds,
        "disable_after_hours": item.disable_after_hours,
        "circuit": {
            "consecutive_failures": item.consecutive_failures,
            "failing_since": iso(item.failing_since),
            "open_until": iso(item.circuit_open_until),
        },
        "secret_hint": item.secret[:10] + "…",
        "previous_secret_expires_at": iso(item.previous_secret_expires_at),
        "warnings": endpoints.warnings(item),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
    }


def event(item: Event) -> dict:
    return {
        "id": item.id,
        "webhook_id": item.uid,
        "type": item.type,
        "payload": item.payload,
        "idempotency_key": item.idempotency_key,
        "created_at": iso(item.created_at),
    }


def delivery(item: Delivery) -> dict:
    return {
        "id": item.id,
        "event_id": item.event_id,
        "webhook_id": item.event.uid,
        "endpoint_id": item.endpoint_id,
        "event_type": item.event_type,
        "status": item.status,
        "attempts": item.attempts,
        "next_attempt_at": iso(item.next_attempt_at) if item.status == "pending" else None,
        "last_status_code": item.last_status_code,
        "last_error": item.last_error,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
    }


def attempt(item: Attempt) -> dict:
    return {
        "number": item.number,
        "trigger": item.trigger,
        "started_at": iso(item.started_at),
        "duration_ms": item.duration_ms,
        "error": item.error,
        "request": {"url": item.request_url, "headers": item.request_headers, "body": item.request_body},
        # The request carried a batch; "body" is this delivery's element of its array.
        "batch": {"id": item.batch_id, "size": item.batch_size} if item.batch_id else None,
        "response": None
        if item.response_status is None
        else {"status": item.response_status, "headers": item.response_headers, "body": item.response_body},
    }


def body_text(body: bytes) -> tuple[str, str]:
    """A stored body for JSON: ``(text, "utf-8")``, or ``(base64, "base64")`` for binary bodies."""
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), "base64"


def inbound_request(item: InboundRequest) -> dict:
    """A received request as listed; ``error_summary`` is the first line of ``error``."""
    return {
        "id": item.id,
        "source_id": item.source_id,
        "source": item.source.slug,
        "status": item.status,
        "http_status": item.http_status,
        "reason": item.reason,
        "event_type": item.event_type,
        "delivery_id": item.dedupe_key,
        "attempts": item.attempts,
        "next_attempt_at": iso(item.next_attempt_at) if item.status == "received" else None,
        "error_summary": item.error.splitlines()[0] if item.error else None,
        "created_at": iso(item.created_at),
        "processed_at": iso(item.processed_at),
    }


def inbound_detail(item: InboundRequest, attempts: list[InboundAttempt]) -> dict:
    """A received request exactly as it arrived, how it was verified, and every processing attempt."""
    body, encoding = body_text(item.body or b"")
    return {
        **inbound_request(item),
        "method": item.method,
        "content_type": item.content_type,
        "remote_addr": item.remote_addr,
        "headers": item.headers or {},
        "body": body,
        "body_encoding": encoding,
        "verification": {
            "passed": item.status != "rejected",
            "preset": item.source.provider,
            "reason": item.reason,
        },
        "error": item.error,
        "attempt_log": [inbound_attempt(attempt) for attempt in attempts],
    }


def inbound_attempt(item: InboundAttempt) -> dict:
    """One route's result in one processing attempt (``route_index`` is None when no route matched)."""
    return {
        "number": item.number,
        "trigger": item.trigger,
        "route_index": item.route_index,
        "outcome": item.outcome,
        "detail": item.detail,
        "error": item.error,
        "duration_ms": item.duration_ms,
        "started_at": iso(item.started_at),
    }
