"""Who is calling: API keys for the JSON API, users and roles for the dashboard."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import current_app
from flask import g
from flask import has_app_context
from flask import request
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from webhooks.db import db
from webhooks.db import now_utc
from webhooks.errors import ApiError
from webhooks.models import ApiKey
from webhooks.models import Membership
from webhooks.models import Tenant
from webhooks.models import User

KEY_PREFIX = "whk_"
ROLES = ("viewer", "editor")
# A process answers API requests from keys it checked this long ago. Revoking
# a key applies at once in the process that revokes it, and within this many
# seconds in the others (other gunicorn workers, or a revocation by the CLI).
KEY_CACHE_SECONDS = 5.0


def hash_key(key: str) -> str:
    """SHA-256 of an API key; see :class:`webhooks.models.ApiKey` for why a fast hash is right."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(tenant: Tenant, name: str = "default") -> tuple[ApiKey, str]:
    """Create a key; the plain key is returned once and never stored."""
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant=tenant, name=name, prefix=plain[:10], key_hash=hash_key(plain))
    db.session.add(key)
    return key, plain


@dataclass(frozen=True)
class KeyTenant:
    """The tenant an API key belongs to, as API requests see it: its id, not its row.

    A plain value needs no database session: publishing, the hottest API
    call, never opens one (see :func:`webhooks.publishing.accept`). Code that
    links a new row to the tenant loads the row itself.
    """

    id: int


def tenant_for_key(plain: str) -> KeyTenant | None:
    """The tenant of a valid, unrevoked key.

    Valid keys are remembered for :data:`KEY_CACHE_SECONDS`, so a request
    with a key checked recently costs no query. A check that raced
    :func:`forget_keys` is not remembered.
    """
    digest = hash_key(plain)
    cache = _key_cache()
    hit = cache["keys"].get(digest)
    if hit is not None and time.monotonic() - hit[0] < KEY_CACHE_SECONDS:
        return hit[1]
    checked_at, generation = time.monotonic(), cache["generation"]
    tenant_id = db.session.scalar(select(ApiKey.tenant_id).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
    if tenant_id is None:
        cache["keys"].pop(digest, None)
        return None
    tenant = KeyTenant(tenant_id)
    if cache["generation"] == generation:
        cache["keys"][digest] = (checked_at, tenant)
    return tenant


def forget_keys() -> None:
    """Check every key against the database again on its next use."""
    cache = _key_cache()
    cache["generation"] += 1
    cache["keys"].clear()


def _key_cache() -> dict:
    # Per app: tests build many apps on databases whose rows share ids.
    return current_app.extensions.setdefault("auth.api_keys", {"generation": 0, "keys": {}})


@event.listens_for(Session, "before_flush")
def _note_key_changes(session, flush_context, instances) -> None:
    """A changed or deleted tenant or key empties the cache once the change commits."""
    if any(isinstance(item, (Tenant, ApiKey)) for item in (*session.dirty, *session.deleted)):
        session.info["auth.forget_keys"] = True


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session) -> None:
    if session.info.pop("auth.forget_keys", False) and has_app_context():
        forget_keys()


def api_key_required(view):
    """Authenticate ``Authorization: Bearer <key>`` and put its :class:`KeyTenant` in ``g.tenant``."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "send your API key as 'Authorization: Bearer <key>'")
        tenant = tenant_for_key(token.strip())
        if tenant is None:
            raise ApiError(401, "invalid or revoked API key")
        g.tenant = tenant
        return view(*args, **kwargs)

    return wrapped


def create_user(username: str, password: str, *, is_admin: bool = False) -> User:
    """Create a dashboard user with a werkzeug password hash (scrypt)."""
    if len(password) < 8:
        raise ValueError("the password needs at least 8 characters")
    user = User(username=username, password_hash=generate_password_hash(password), is_admin=is_admin)
    db.session.add(user)
    return user


def change_password(user: User, current: str, new: str) -> bool:
    """Give ``user`` the ``new`` password if ``current`` is theirs; False (and no change) if not.

    The caller commits. Sessions carry :func:`session_token`, so every
    session made with the old password stops being a login.
    """
    if not check_password_hash(user.password_hash, current):
        return False
    if len(new) < 8:
        raise ValueError("the password needs at least 8 characters")
    user.password_hash = generate_password_hash(new)
    return True


def session_token(user: User) -> str:
    """A value a session keeps from its login, which no longer matches once the password changes.

    Derived from the password hash (keyed with the app's secret, so the
    cookie says nothing about the hash): sessions are signed cookies, kept
    nowhere on the server, so this is how a password change ends them.
    """
    key = current_app.secret_key.encode() if isinstance(current_app.secret_key, str) else current_app.secret_key
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def check_login(username: str, password: str) -> User | None:
    """The user if the password matches; hashes a dummy on unknown names so timing says nothing."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def grant(user: User, tenant: Tenant, role: str) -> Membership:
    """Give ``user`` a role in ``tenant`` (replacing an earlier one)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant.id)
    )
    if membership is None:
        membership = Membership(user=user, tenant=tenant, role=role)
        db.session.add(membership)
    membership.role = role
    return membership


def role_in(user: User, tenant_id: int) -> str | None:
    """``admin``, ``editor``, ``viewer`` or None when the user may not see the tenant."""
    if user.is_admin:
        return "admin"
    return next((m.role for m in user.memberships if m.tenant_id == tenant_id), None)


def revoke_api_key(key: ApiKey) -> None:
    """Revoke a key; requests with it get 401 from now on (see :data:`KEY_CACHE_SECONDS`)."""
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=now_utc()))
    db.session.info["auth.forget_keys"] = True  # cached keys are forgotten when this commits


_DUMMY_HASH = generate_password_hash("timing-equaliser")
