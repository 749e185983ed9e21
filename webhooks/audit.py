"""The audit log: who changed what, when, with the state before and after.

Entries are written after the change is committed, one small transaction
each. Secrets never reach the log: any key that names a credential has its
value replaced by ``"***"`` before the entry is stored, at every depth (so a
custom header ``X-Api-Key`` is masked inside an endpoint's ``headers``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from webhooks.db import db
from webhooks.models import AuditEntry
from webhooks.models import User

SENSITIVE_WORDS = ("secret", "password", "token", "authorization", "cookie", "credential", "api-key", "api_key", "apikey")
MASK = "***"


def is_sensitive(name: str) -> bool:
    """True when a key or header name says its value is a credential."""
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


def masked(value: Any) -> Any:
    """``value`` with the values of sensitive keys replaced, recursively; empty values stay empty."""
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and is_sensitive(key) and item not in (None, "", [], {}) else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def record(
    user: User | None,
    action: str,
    object_type: str,
    object_id: Any = None,
    *,
    tenant_id: int | None = None,
    before: Any = None,
    after: Any = None,
    actor: str | None = None,
) -> AuditEntry:
    """Store one entry and commit.

    ``action`` is ``<object type>.<verb>`` (``endpoint.update``). ``actor``
    defaults to the user's name; pass it for things no user did, or for a
    failed login, where the name typed is all there is.
    """
    entry = AuditEntry(
        tenant_id=tenant_id,
        user_id=user.id if user is not None else None,
        actor=actor or (user.username if user is not None else "system"),
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        before=masked(before),
        after=masked(after),
    )
    db.session.add(entry)
    db.session.commit()
    return entry


def changes(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """The top-level keys whose values differ, as ``{key: (before, after)}``, for display."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return {}
    keys = sorted(set(before) | set(after))
    return {key: (before.get(key), after.get(key)) for key in keys if before.get(key) != after.get(key)}


def page(tenant_id: int | None, *, before: int | None = None, limit: int = 50) -> tuple[list[AuditEntry], int | None]:
    """Entries newest first, keyset-paginated by id, and the ``before`` of the next page.

    ``tenant_id`` None is the admin's view of every entry (tenants, users and
    API keys included); otherwise one tenant's entries.
    """
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if tenant_id is not None:
        query = query.where(AuditEntry.tenant_id == tenant_id)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    entries = list(db.session.scalars(query))
    return entries[:limit], entries[limit - 1].id if len(entries) > limit else None
