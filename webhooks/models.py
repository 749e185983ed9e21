"""Typed models: the hub's whole state lives in these tables.

Public identifiers are integers; an event also carries ``uid``, the
Standard Webhooks ``webhook-id`` that stays stable across retries and
redeliveries so receivers can de-duplicate.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from typing import Optional

from sqlalchemy import DDL
from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from webhooks.crypto import EncryptedJSON
from webhooks.crypto import EncryptedText
from webhooks.db import UTCDateTime
from webhooks.db import db
from webhooks.db import now_utc

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger there would be a plain column.
BigId = BigInteger().with_variant(Integer, "sqlite")

PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
FAILED = "failed"
DELIVERY_STATUSES = (PENDING, DELIVERING, SUCCEEDED, FAILED)

TRIGGERS = ("scheduled", "retry", "manual")


def new_event_uid() -> str:
    """A ``webhook-id``: unique across hubs, so two hubs never collide at a receiver."""
    return "msg_" + secrets.token_urlsafe(18)


# A tenant's slug is part of its hook URLs (/hooks/<slug>/...), hence this narrow alphabet.
TENANT_SLUG = r"[a-z0-9][a-z0-9-]{0,63}"


class Tenant(db.Model):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    strict_event_types: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class ApiKey(db.Model):
    """A tenant's API key, stored as a SHA-256 digest.

    Keys are 256-bit random tokens, so a fast hash is enough: there is nothing
    to brute-force, and a slow hash would cost every API request.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="default")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Membership(db.Model):
    """A user's role in one tenant: ``editor`` may change things, ``viewer`` may only look."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "tenant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="viewer")

    user: Mapped[User] = relationship(back_populates="memberships")
    tenant: Mapped[Tenant] = relationship(lazy="joined")


class PayloadTemplate(db.Model):
    __tablename__ = "payload_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text)
    event_type: Mapped[Optional[str]] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)


class EventType(db.Model):
    __tablename__ = "event_types"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    schema: Mapped[Optional[Any]] = mapped_column(JSON)
    sample: Mapped[Optional[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)


class Endpoint(db.Model):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[Optional[str]] = mapped_column(Text)
    disabled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    secret: Mapped[str] = mapped_column(EncryptedText)
    previous_secret: Mapped[Optional[str]] = mapped_column(EncryptedText)
    previous_secret_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    timeout_seconds: Mapped[float] = mapped_column(default=15.0)
    max_attempts: Mapped[int] = mapped_column(default=6)
    backoff_seconds: Mapped[float] = mapped_column(default=30.0)
    verify_tls: Mapped[bool] = mapped_column(default=True)
    filter_match: Mapped[str] = mapped_column(String(8), default="all")
    filter_rules: Mapped[list] = mapped_column(JSON, default=list)
    template_id: Mapped[Optional[int]] = mapped_column(ForeignKey("payload_templates.id", ondelete="SET NULL"))
    # Receiver authentication: {"type": "header"|"basic"|"bearer"|"oauth2", ...}; encrypted, it holds credentials.
    auth: Mapped[Optional[dict]] = mapped_column(EncryptedJSON)
    # Delivery policies.
    circuit_threshold: Mapped[int] = mapped_column(default=5)
    circuit_cooldown_seconds: Mapped[float] = mapped_column(default=60.0)
    disable_after_hours: Mapped[float] = mapped_column(default=72.0)
    rate_limit: Mapped[Optional[int]] = mapped_column()
    rate_period: Mapped[str] = mapped_column(String(8), default="second")
    ordered: Mapped[bool] = mapped_column(default=False)
    # Batching: up to batch_size events in one JSON array request (1 = off), once
    # the oldest has waited batch_window_seconds or batch_size are due.
    batch_size: Mapped[int] = mapped_column(default=1)
    batch_window_seconds: Mapped[float] = mapped_column(default=0.0)
    # Circuit state, shared by every worker through the database.
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    failing_since: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    circuit_open_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    template: Mapped[Optional[PayloadTemplate]] = relationship()


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_events_tenant_type_id", "tenant_id", "type", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True, default=new_event_uid)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(200))
    payload: Mapped[Any] = mapped_column(JSON)
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)


class Delivery(db.Model):
    """One event for one endpoint; its status is the outcome of its attempts."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # The sweep reads only due rows: partial indexes keep its cost tied to the
        # backlog, not to the history (issue: "cost depends on due deliveries").
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_deliveries_leased",
            "lease_expires_at",
            sqlite_where=text("status = 'delivering'"),
            postgresql_where=text("status = 'delivering'"),
        ),
        Index("ix_deliveries_tenant_id", "tenant_id", "id"),
        Index("ix_deliveries_tenant_status_id", "tenant_id", "status", "id"),
        Index("ix_deliveries_endpoint_id", "endpoint_id", "id"),
        Index("ix_deliveries_tenant_type_id", "tenant_id", "event_type", "id"),
        Index("ix_deliveries_event", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, default=now_utc)
    next_trigger: Mapped[str] = mapped_column(String(16), default="scheduled")
    lease_owner: Mapped[Optional[str]] = mapped_column(String(80))
    lease_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_status_code: Mapped[Optional[int]] = mapped_column()
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    event: Mapped[Event] = relationship(lazy="joined")
    endpoint: Mapped[Endpoint] = relationship(lazy="joined")
    attempt_list: Mapped[list[Attempt]] = relationship(
        back_populates="delivery", order_by="Attempt.number", cascade="all, delete-orphan", passive_deletes=True
    )


class Attempt(db.Model):
    """One HTTP request as it was sent and answered, kept for the person debugging it."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16))
    request_url: Mapped[str] = mapped_column(String(2048))
    request_headers: Mapped[dict] = mapped_column(JSON)
    request_body: Mapped[str] = mapped_column(Text)
    response_status: Mapped[Optional[int]] = mapped_column()
    response_headers: Mapped[Optional[dict]] = mapped_column(JSON)
    response_body: Mapped[Optional[str]] = mapped_column(Text)
    duration_ms: Mapped[Optional[int]] = mapped_column()
    error: Mapped[Optional[str]] = mapped_column(Text)
    # Set when the request carried a batch: its webhook-id and how many deliveries
    # shared it; request_body then holds this delivery's element of the array.
    batch_id: Mapped[Optional[str]] = mapped_column(String(40))
    batch_size: Mapped[Optional[int]] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_list")


class Source(db.Model):
    """Where a provider posts: ``/hooks/<tenant>/<slug>``."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    provider: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    secrets: Mapped[list] = mapped_column(EncryptedJSON, default=list)
    ip_allowlist: Mapped[list] = mapped_column(JSON, default=list)
    max_body_bytes: Mapped[int] = mapped_column(default=10 * 1024 * 1024)
    rate_limit_per_minute: Mapped[Optional[int]] = mapped_column()
    enabled: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    routes: Mapped[list] = mapped_column(JSON, default=list)
    max_attempts: Mapped[int] = mapped_column(default=5)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class InboundRequest(db.Model):
    """A request a provider sent us, accepted or rejected, exactly as received."""

    __tablename__ = "inbound_requests"
    __table_args__ = (
        UniqueConstraint("source_id", "dedupe_key"),
        Index(
            "ix_inbound_due",
            "next_attempt_at",
            "id",
            sqlite_where=text("status = 'received'"),
            postgresql_where=text("status = 'received'"),
        ),
        Index(
            "ix_inbound_leased",
            "lease_expires_at",
            sqlite_where=text("status = 'processing'"),
            postgresql_where=text("status = 'processing'"),
        ),
        # Pruning keeps the newest rejected requests per source; this keeps it cheap.
        Index(
            "ix_inbound_rejected",
            "source_id",
            "id",
            sqlite_where=text("status = 'rejected'"),
            postgresql_where=text("status = 'rejected'"),
        ),
        Index("ix_inbound_source_id", "source_id", "id"),
        Index("ix_inbound_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    # received | processing | processed | ignored | failed | rejected
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column()
    reason: Mapped[Optional[str]] = mapped_column(Text)
    event_type: Mapped[Optional[str]] = mapped_column(String(200))
    dedupe_key: Mapped[Optional[str]] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10), default="POST")
    content_type: Mapped[Optional[str]] = mapped_column(String(200))
    remote_addr: Mapped[Optional[str]] = mapped_column(String(64))
    headers: Mapped[dict] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    next_trigger: Mapped[str] = mapped_column(String(16), default="scheduled")
    lease_owner: Mapped[Optional[str]] = mapped_column(String(80))
    lease_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    processed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    source: Mapped[Source] = relationship(lazy="joined")


class InboundAttempt(db.Model):
    __tablename__ = "inbound_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("inbound_requests.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16), default="scheduled")
    outcome: Mapped[str] = mapped_column(String(16))
    route_index: Mapped[Optional[int]] = mapped_column()
    detail: Mapped[Optional[str]] = mapped_column(Text)
    error: Mapped[Optional[str]] = mapped_column(Text)
    duration_ms: Mapped[Optional[int]] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


# A request stored already finished as ignored (its source has no routes, see
# inbound.store_accepted) gets its attempt row from the database, in the same
# statement: on SQLite each statement of the write transaction is a hand-over of
# Python's GIL with the writer lock held, and under load a second INSERT cost
# the ingest about a fifth of its throughput (docs/benchmarks.md, finding 14).
# The row is the one inbound.ignored_attempt describes; migration 7c1f0e9b2d55.
_IGNORED_ATTEMPT_VALUES = """
    (request_id, number, "trigger", outcome, route_index, detail, error, duration_ms, started_at)
    VALUES (NEW.id, NEW.attempts, NEW.next_trigger, 'ignored', NULL,
            'no route matched event type ' || coalesce(NEW.event_type, '(none)'), NULL, 0, NEW.processed_at)"""
STORED_IGNORED_TRIGGER = {
    "sqlite": [
        f"""CREATE TRIGGER inbound_stored_ignored AFTER INSERT ON inbound_requests
FOR EACH ROW WHEN NEW.status = 'ignored'
BEGIN INSERT INTO inbound_attempts {_IGNORED_ATTEMPT_VALUES}; END"""
    ],
    "postgresql": [
        f"""CREATE OR REPLACE FUNCTION inbound_stored_ignored() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO inbound_attempts {_IGNORED_ATTEMPT_VALUES}; RETURN NULL; END $$""",
        """CREATE TRIGGER inbound_stored_ignored AFTER INSERT ON inbound_requests
FOR EACH ROW WHEN (NEW.status = 'ignored') EXECUTE FUNCTION inbound_stored_ignored()""",
    ],
}
for _dialect, _statements in STORED_IGNORED_TRIGGER.items():
    for _statement in _statements:
        event.listen(InboundAttempt.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect))


class AuditEntry(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_tenant_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"))
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[Optional[str]] = mapped_column(String(50))
    before: Mapped[Optional[Any]] = mapped_column(JSON)
    after: Mapped[Optional[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class LoginFailure(db.Model):
    """A failed dashboard login, kept for the throttling window (see ``webhooks.logins``)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)


class Heartbeat(db.Model):
    """The last sweep of each worker process, for ``/healthz``."""

    __tablename__ = "heartbeats"

    worker: Mapped[str] = mapped_column(String(80), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class RateCounter(db.Model):
    """Requests counted per key and fixed time window, shared by every process."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
