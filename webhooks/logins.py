"""Login throttling: at most five failed logins per username and address in 15 minutes.

Failures are rows in ``login_failures`` so that every web process counts the
same ones. The key is a digest of the lower-cased username and the client
address: guessing one user's password from one address is slowed down, while
the same user can still log in from their own machine.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select

from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import LoginFailure

LIMIT = 5
WINDOW = timedelta(minutes=15)


def throttle_key(username: str, address: str | None) -> str:
    """The digest failures are counted under; usernames differing in case count together."""
    return hashlib.sha256(f"{username.strip().lower()}|{address or '-'}".encode()).hexdigest()


def blocked_for(username: str, address: str | None, *, now: datetime | None = None) -> timedelta | None:
    """How long this username may not log in from ``address``, or None when it may."""
    now = now or now_utc()
    key = throttle_key(username, address)
    count, oldest = db.session.execute(
        select(func.count(), func.min(LoginFailure.at)).where(LoginFailure.key == key, LoginFailure.at > now - WINDOW)
    ).one()
    if count < LIMIT:
        return None
    return max(oldest + WINDOW - now, timedelta(seconds=1))


def note_failure(username: str, address: str | None, *, now: datetime | None = None) -> None:
    """Count one failed login, and forget failures of every key that left the window."""
    now = now or now_utc()
    db.session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
    db.session.add(LoginFailure(key=throttle_key(username, address), at=now))
    db.session.commit()


def clear(username: str, address: str | None) -> None:
    """Forget the failures of a user who just logged in from ``address``."""
    db.session.execute(delete(LoginFailure).where(LoginFailure.key == throttle_key(username, address)))
    db.session.commit()
