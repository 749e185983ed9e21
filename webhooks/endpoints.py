"""Endpoint rules shared by the API, the dashboard and the CLI: validation,
secret rotation, test events, redelivery and replay.

Validation raises :class:`~webhooks.errors.ApiError` naming the field, which
the API returns as 422 and the dashboard shows beside the field.
"""

from __future__ import annotations

import math
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from webhooks import egress
from webhooks import filters
from webhooks import receiver_auth
from webhooks import signing
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.errors import ApiError
from webhooks.models import DELIVERING
from webhooks.models import FAILED
from webhooks.models import PENDING
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import PayloadTemplate
from webhooks.models import Tenant
from webhooks.ratelimit import PERIODS

NUMBERS = {
    # field: (type, minimum, maximum)
    "timeout_seconds": (float, 1, 60),
    "max_attempts": (int, 1, 20),
    "backoff_seconds": (float, 1, 86400),
    "circuit_threshold": (int, 1, 1000),
    "circuit_cooldown_seconds": (float, 1, 86400),
    "disable_after_hours": (float, 1, 24 * 30),
    "batch_size": (int, 1, 1000),
    "batch_window_seconds": (float, 0, 300),
}
FLAGS = ("enabled", "verify_tls", "ordered")
TEST_EVENT_TYPE = "webhook.test"


def create(tenant: Tenant, data: dict) -> Endpoint:
    """A new endpoint from API-shaped ``data``; a secret is generated unless one is given."""
    if not data.get("url"):
        raise ApiError(422, "url is required", field="url")
    endpoint = Endpoint(tenant_id=tenant.id, secret=signing.generate_secret(), headers={}, event_types=[], filter_rules=[])
    apply(endpoint, data)
    db.session.add(endpoint)
    db.session.commit()
    return endpoint


def apply(endpoint: Endpoint, data: Any) -> dict | None:
    """Validate and apply changes; only the keys present in ``data`` change.

    Re-enabling a disabled endpoint returns a replay offer (see
    :func:`replay_offer`); any other change returns None.
    """
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    unknown = set(data) - EDITABLE
    if unknown:
        raise ApiError(422, f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    was_disabled = endpoint.enabled is False
    trouble_since = endpoint.failing_since or endpoint.disabled_at
    for name, value in data.items():
        SETTERS[name](endpoint, value)
    if "enabled" not in data:
        return None
    if not data["enabled"]:
        if not was_disabled:
            endpoint.disabled_at = now_utc()
        return None
    endpoint.disabled_reason = None
    endpoint.disabled_at = None
    endpoint.consecutive_failures = 0
    endpoint.failing_since = None
    endpoint.circuit_open_until = None
    return replay_offer(endpoint, trouble_since) if was_disabled else None


def replay_offer(endpoint: Endpoint, trouble_since: datetime | None) -> dict:
    """What re-enabling an endpoint offers to send again: ``{"status", "since", "count"}``.

    These are the deliveries that failed since the endpoint started failing
    (or was disabled, if it never failed). ``since`` is a *creation* time, the
    one :func:`replay` filters on: the creation time of the oldest delivery
    that failed meanwhile, since a delivery created before the trouble began
    may have failed during it. Accepting the offer is
    ``POST /endpoints/<id>/replay`` with the same ``status`` and ``since``.
    """
    since = trouble_since
    if trouble_since is not None:
        oldest = db.session.scalar(
            select(db.func.min(Delivery.created_at)).where(
                Delivery.endpoint_id == endpoint.id, Delivery.status == FAILED, Delivery.updated_at >= trouble_since
            )
        )
        since = min(oldest, trouble_since) if oldest is not None else trouble_since
    count = replay_count(endpoint, since=since)
    return {"status": FAILED, "since": since.isoformat() if since else None, "count": count}


def warnings(endpoint: Endpoint) -> list[str]:
    """Settings that weaken an endpoint's security, in words the API and the dashboard show."""
    found = []
    if not endpoint.verify_tls:
        found.append(
            "TLS certificate verification is off: anyone on the network path can impersonate this receiver"
            " and read what is sent to it."
        )
    return found


def _set_url(endpoint: Endpoint, value: Any) -> None:
    if not isinstance(value, str) or len(value) > 2048:
        raise ApiError(422, "url must be a string of at most 2048 characters", field="url")
    try:
        egress.check_url(value.strip(), allow_private=current_app.config["ALLOW_PRIVATE_TARGETS"])
    except egress.EgressError as exc:
        raise ApiError(422, str(exc), field="url") from None
    endpoint.url = value.strip()


def _set_description(endpoint: Endpoint, value: Any) -> None:
    if not isinstance(value, str) or len(value) > 2000 or "\x00" in value:
        raise ApiError(422, "description must be a string of at most 2000 characters", field="description")
    endpoint.description = value


def _set_event_types(endpoint: Endpoint, value: Any) -> None:
    valid = isinstance(value, list) and all(isinstance(v, str) and 0 < len(v) <= 200 and v.isprintable() for v in value)
    if not valid:
        raise ApiError(422, "event_types must be a list of type names or patterns like 'order.*'", field="event_types")
    endpoint.event_types = sorted(set(value))


def _set_headers(endpoint: Endpoint, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ApiError(422, "headers must be an object of string values", field="headers")
    for name, header_value in value.items():
        problem = egress.header_problem(name, header_value)
        if problem:
            raise ApiError(422, problem, field="headers")
    endpoint.headers = dict(value)


def _set_secret(endpoint: Endpoint, value: Any) -> None:
    if not isinstance(value, str):
        raise ApiError(422, "secret must be a string", field="secret")
    try:
        signing.validate_secret(value)
    except signing.SignatureError as exc:
        raise ApiError(422, str(exc), field="secret") from None
    endpoint.secret = value


def _set_filter(endpoint: Endpoint, value: Any) -> None:
    if value is None:
        value = {"match": "all", "rules": []}
    if not isinstance(value, dict) or not isinstance(value.get("rules", []), list):
        raise ApiError(422, "filter must be {match: 'all'|'any', rules: [...]}", field="filter")
    match, rules = value.get("match", "all"), value.get("rules", [])
    if match not in ("all", "any"):
        raise ApiError(422, "filter.match must be 'all' or 'any'", field="filter.match")
    if not all(isinstance(rule, str) for rule in rules):
        raise ApiError(422, "filter.rules must be strings", field="filter.rules")
    problems = filters.validate_rules(rules, match)
    if problems:
        index, error = problems[0]
        raise ApiError(422, f"rule {index + 1}: {error}", field=f"filter.rules[{index}]")
    endpoint.filter_match, endpoint.filter_rules = match, list(rules)


def _set_template(endpoint: Endpoint, value: Any) -> None:
    if value is None:
        endpoint.template_id = None
        return
    # Ids are 32-bit here: a larger number would overflow PostgreSQL's integer instead of missing.
    is_id = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31
    template = db.session.get(PayloadTemplate, value) if is_id else None
    if template is None or template.tenant_id != endpoint.tenant_id:
        raise ApiError(422, "template_id does not name one of your templates", field="template_id")
    endpoint.template_id = template.id


def _set_auth(endpoint: Endpoint, value: Any) -> None:
    try:
        auth = receiver_auth.validate(value)
        if auth and auth["type"] == "oauth2":
            egress.check_url(auth["token_url"], allow_private=current_app.config["ALLOW_PRIVATE_TARGETS"])
    except (receiver_auth.AuthError, egress.EgressError) as exc:
        raise ApiError(422, str(exc), field="auth") from None
    endpoint.auth = auth


def _set_rate_limit(endpoint: Endpoint, value: Any) -> None:
    if value is None:
        endpoint.rate_limit = None
        return
    limit = value.get("max") if isinstance(value, dict) else None
    period = value.get("per", "second") if isinstance(value, dict) else None
    valid = isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= 100000
    if not valid or period not in tuple(PERIODS):
        raise ApiError(422, "rate_limit must be {max: 1..100000, per: 'second'|'minute'} or null", field="rate_limit")
    endpoint.rate_limit, endpoint.rate_period = limit, period


def _number_setter(name: str):
    kind, low, high = NUMBERS[name]

    def setter(endpoint: Endpoint, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ApiError(422, f"{name} must be a number", field=name)
        if kind is int and value != int(value):
            raise ApiError(422, f"{name} must be a whole number", field=name)
        if not low <= value <= high:
            raise ApiError(422, f"{name} must be between {low} and {high}", field=name)
        setattr(endpoint, name, kind(value))

    return setter


def _flag_setter(name: str):
    def setter(endpoint: Endpoint, value: Any) -> None:
        if not isinstance(value, bool):
            raise ApiError(422, f"{name} must be true or false", field=name)
        setattr(endpoint, name, value)

    return setter


SETTERS = {
    "url": _set_url,
    "description": _set_description,
    "event_types": _set_event_types,
    "headers": _set_headers,
    "secret": _set_secret,
    "filter": _set_filter,
    "template_id": _set_template,
    "auth": _set_auth,
    "rate_limit": _set_rate_limit,
    **{name: _number_setter(name) for name in NUMBERS},
    **{name: _flag_setter(name) for name in FLAGS},
}
EDITABLE = set(SETTERS)


def rotate_secret(endpoint: Endpoint, *, overlap_hours: float | None = None) -> str:
    """Issue a new secret; the old one keeps signing as a second signature for ``overlap_hours``."""
    hours = current_app.config["SECRET_ROTATION_HOURS"] if overlap_hours is None else overlap_hours
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now_utc() + timedelta(hours=hours)
    endpoint.secret = signing.generate_secret()
    db.session.commit()
    return endpoint.secret


def send_test(endpoint: Endpoint):
    """Publish a ``webhook.test`` event to this one endpoint, whatever its subscriptions."""
    from webhooks.publishing import direct_event

    return direct_event(endpoint, TEST_EVENT_TYPE, {"message": "This is a test event from your webhook hub."})


def redeliver(delivery: Delivery) -> Delivery:
    """Queue one manual attempt now, whatever the delivery's status.

    A delivery that is being sent right now is left alone (409), so one click
    cannot make two requests race.
    """
    if delivery.status == DELIVERING:
        raise ApiError(409, "this delivery is being sent right now; try again in a moment")
    delivery.status = PENDING
    delivery.next_attempt_at = now_utc()
    delivery.next_trigger = "manual"
    db.session.commit()
    return delivery


def replay(endpoint: Endpoint, *, status: str = FAILED, since: datetime | None = None, until: datetime | None = None) -> int:
    """Redeliver every delivery of ``endpoint`` in ``status`` created in the range; return how many."""
    result = db.session.execute(
        update(Delivery)
        .where(*replay_filter(endpoint, status=status, since=since, until=until))
        .values(status=PENDING, next_attempt_at=now_utc(), next_trigger="manual")
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount


def replay_count(endpoint: Endpoint, *, status: str = FAILED, since=None, until=None) -> int:
    """How many deliveries :func:`replay` would queue; the dashboard asks before replaying."""
    return db.session.scalar(
        select(db.func.count()).select_from(Delivery).where(*replay_filter(endpoint, status=status, since=since, until=until))
    )


def replay_filter(endpoint: Endpoint, *, status: str, since, until) -> list:
    if status not in (FAILED, "succeeded"):
        raise ApiError(422, "status must be 'failed' or 'succeeded'", field="status")
    conditions = [Delivery.endpoint_id == endpoint.id, Delivery.status == status]
    if since is not None:
        conditions.append(Delivery.created_at >= since)
    if until is not None:
        conditions.append(Delivery.created_at < until)
    return conditions
