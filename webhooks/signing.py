"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; the key is
the base64-decoded part of a ``whsec_`` secret. Pure functions: no Flask, no
database, so the worker, the inbound ``standard`` preset and the tests all
call the same code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DEFAULT_TOLERANCE = 300


class SignatureError(ValueError):
    """The signature headers are missing, malformed, stale or do not match."""


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` plus base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after an optional ``whsec_`` prefix.

    Decoded as the reference ``standardwebhooks`` library does (prefix and
    padding optional), so a secret means the same key here and at the receiver.
    """
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded + "==")
    except ValueError:
        raise SignatureError("the secret must be base64, optionally after whsec_") from None


def validate_secret(secret: str) -> None:
    """Refuse secrets too short to be safe or not decodable."""
    if len(secret_key(secret)) < 16:
        raise SignatureError("a signing secret needs at least 16 bytes of key material")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature for a message.

    :param secret: A ``whsec_`` secret.
    :param msg_id: The ``webhook-id``.
    :param timestamp: Unix seconds, as sent in ``webhook-timestamp``.
    :param body: The exact bytes of the request body.
    """
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: space-separated, one entry per valid secret.

    During a rotation both the new and the old secret sign, so receivers that
    have not switched yet keep verifying.
    """
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def headers(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


def verify(
    secrets: Iterable[str],
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check a received message; raise :class:`SignatureError` saying why it fails.

    Accepts the message when any ``v1`` entry matches any secret, compared in
    constant time. Timestamps outside ``tolerance`` seconds either way are
    refused to stop replays.
    """
    if not msg_id or not timestamp or not signature:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if abs(now - sent_at) > tolerance:
        raise SignatureError(f"webhook-timestamp is outside the {tolerance} s tolerance")
    offered = [entry.partition(",")[2] for entry in signature.split() if entry.startswith("v1,")]
    if not offered:
        raise SignatureError("webhook-signature has no v1 entry")
    offered_bytes = [candidate.encode("utf-8", "replace") for candidate in offered]
    for secret in secrets:
        expected = sign(secret, msg_id, sent_at, body).partition(",")[2].encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered_bytes):
            return
    raise SignatureError("signature mismatch")
