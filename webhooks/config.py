"""Every setting of the hub, with its default and its parser, in one place.

``create_app`` reads ``WEBHOOKS_*`` variables through Flask's
``from_prefixed_env``, which JSON-decodes values (``"1"`` becomes ``1`` but
``off`` stays a string), so every value is normalised here before use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,
    "SCHEDULER": True,
    "SWEEP_INTERVAL": 1.0,
    "DELIVERY_CONCURRENCY": 16,
    "ALLOW_PRIVATE_TARGETS": False,
    "LEASE_SECONDS": 120,
    "CLAIM_BATCH": 100,
    "MAX_EVENT_BYTES": 1024 * 1024,
    "MAX_BULK_EVENTS": 1000,
    "RESPONSE_BODY_LIMIT": 64 * 1024,
    "SECRET_ROTATION_HOURS": 24,
    "IDEMPOTENCY_HOURS": 24,
    "USER_AGENT": "webhooks-hub/1.0",
    "SESSION_COOKIE_SECURE": False,
    "HANDLERS": "",
    "RETENTION_DAYS": 90,
    "ENCRYPTION_KEY": None,
}

BOOLEAN = {"SCHEDULER", "ALLOW_PRIVATE_TARGETS", "SESSION_COOKIE_SECURE"}
NUMBERS = {
    "SWEEP_INTERVAL": float,
    "DELIVERY_CONCURRENCY": int,
    "LEASE_SECONDS": int,
    "CLAIM_BATCH": int,
    "MAX_EVENT_BYTES": int,
    "MAX_BULK_EVENTS": int,
    "RESPONSE_BODY_LIMIT": int,
    "SECRET_ROTATION_HOURS": float,
    "IDEMPOTENCY_HOURS": float,
    "RETENTION_DAYS": int,
}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def parse_bool(value: Any) -> bool:
    """Read a flag the way people write it in an environment file.

    Raises ``ValueError`` for anything else, so a typo such as ``WEBHOOKS_SCHEDULER=of``
    stops the start instead of silently meaning "on".
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected on/off, got {value!r}")


def normalise(config: dict[str, Any]) -> None:
    """Coerce the typed settings in place and fail early on nonsense."""
    for key in BOOLEAN:
        config[key] = parse_bool(config[key])
    for key, kind in NUMBERS.items():
        try:
            config[key] = kind(config[key])
        except (TypeError, ValueError):
            raise ValueError(f"WEBHOOKS_{key} must be a number, got {config[key]!r}") from None
        if config[key] <= 0:
            raise ValueError(f"WEBHOOKS_{key} must be positive, got {config[key]!r}")


def database_url(instance_path: str) -> str:
    """``DATABASE_URL`` if set, else a SQLite file in the instance folder.

    ``postgres://`` (as Heroku-style hosts hand out) and plain ``postgresql://``
    are mapped to the psycopg 3 driver, the only one we install.
    """
    url = os.environ.get("DATABASE_URL")
    if not url:
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        return "sqlite:///" + str(Path(instance_path) / "webhooks.sqlite")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
