"""Secrets at rest: Fernet (from ``cryptography``) around every stored credential.

``WEBHOOKS_ENCRYPTION_KEY`` holds one or more comma-separated Fernet keys; the
first encrypts, all of them decrypt, so keys can be rotated without downtime
(``flask secrets reencrypt`` then rewrites every value under the first key).
Without the variable, a key is generated once into the instance folder, which
is right for the embedded single-host setup and wrong for several hosts:
README's Production section says to set it.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from sqlalchemy import Text
from sqlalchemy import types

PREFIX = "fernet:"

_keyring: MultiFernet | None = None


def load_keys(configured: str | None, instance_path: str) -> list[str]:
    """The configured keys, or the instance key file (created on first use)."""
    if configured:
        return [key.strip() for key in str(configured).split(",") if key.strip()]
    path = Path(instance_path) / "encryption.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return [path.read_text().strip()]


def configure(keys: list[str]) -> None:
    """Install the keyring used by the encrypted column types."""
    global _keyring
    try:
        _keyring = MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ValueError("WEBHOOKS_ENCRYPTION_KEY must be comma-separated Fernet keys (Fernet.generate_key())") from None


def encrypt(plain: str) -> str:
    """Encrypt under the current key."""
    return PREFIX + _ring().encrypt(plain.encode()).decode()


def decrypt(stored: str) -> str:
    """Decrypt with any configured key; values written before encryption pass through."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _ring().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret cannot be decrypted with WEBHOOKS_ENCRYPTION_KEY") from None


def rotate(stored: str) -> str:
    """Re-encrypt a stored value under the current (first) key."""
    if not stored.startswith(PREFIX):
        return encrypt(stored)
    return PREFIX + _ring().rotate(stored[len(PREFIX):].encode()).decode()


def _ring() -> MultiFernet:
    if _keyring is None:
        raise RuntimeError("encryption keys are not configured; create_app() configures them")
    return _keyring


class EncryptedText(types.TypeDecorator):
    """A string column stored encrypted."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(value)

    def process_result_value(self, value, dialect):
        return None if value is None else decrypt(value)


class EncryptedJSON(types.TypeDecorator):
    """A JSON value stored encrypted (receiver credentials, source secrets)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(json.dumps(value))

    def process_result_value(self, value, dialect):
        return None if value is None else json.loads(decrypt(value))
