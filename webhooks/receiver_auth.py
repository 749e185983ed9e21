"""Credentials the hub presents to a receiver, besides the signature.

Types: ``header`` (a static API key header), ``basic``, ``bearer`` and
``oauth2`` (client credentials: the token is fetched from the token URL,
cached in the process until shortly before it expires, and fetched anew when
the receiver answers 401). Stored encrypted on the endpoint.

One token serves every delivery thread: while one thread fetches it, the
others wait for that fetch instead of starting their own, and a 401 drops
the cached token only if it is the one that was refused, so a burst of
rejected deliveries costs one new token, not one each.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from dataclasses import dataclass

import requests

from webhooks import egress

TYPES = ("header", "basic", "bearer", "oauth2")
REQUIRED = {
    "header": ("name", "value"),
    "basic": ("username", "password"),
    "bearer": ("token",),
    "oauth2": ("token_url", "client_id", "client_secret"),
}
EXPIRY_MARGIN = 30
OPTIONAL = ("scope", "audience")


class AuthError(ValueError):
    """The auth settings are invalid, or no token could be obtained."""


def validate(auth: dict | None) -> dict | None:
    """Check an endpoint's auth settings; return them normalised (None for no auth)."""
    if not auth:
        return None
    if not isinstance(auth, dict) or auth.get("type") not in TYPES:
        raise AuthError(f"auth.type must be one of {', '.join(TYPES)}")
    missing = [key for key in REQUIRED[auth["type"]] if not isinstance(auth.get(key), str) or not auth[key]]
    if missing:
        raise AuthError(f"auth.{missing[0]} is required for {auth['type']} auth")
    wrong = [key for key in OPTIONAL if key in auth and auth[key] is not None and not isinstance(auth[key], str)]
    if wrong:
        raise AuthError(f"auth.{wrong[0]} must be a string")
    problem = None
    if auth["type"] == "header":
        problem = egress.header_problem(auth["name"], auth["value"])
    elif auth["type"] == "bearer":
        problem = egress.header_problem("Authorization", auth["token"])
    if problem:
        raise AuthError(f"auth: {problem}")
    allowed = {"type", *OPTIONAL, *REQUIRED[auth["type"]]}
    return {key: value for key, value in auth.items() if key in allowed and value is not None}


def secret_header_names(auth: dict | None) -> set[str]:
    """Lower-cased names of headers that carry these credentials (masked when attempts are stored)."""
    if not auth:
        return set()
    if auth["type"] == "header":
        return {auth["name"].lower()}
    return {"authorization"}


@dataclass(frozen=True)
class Token:
    """An access token and how many seconds it may be used from now."""

    value: str
    lifetime: float


class TokenCache:
    """OAuth 2.0 access tokens per set of credentials, shared by the delivery threads.

    ``clock`` is the monotonic clock expiry is measured with; tests move it.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[tuple, tuple[str, float]] = {}  # key -> (token, expires at)
        self._fetching: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, auth: dict, fetch) -> str:
        """The cached token for ``auth``, or one ``fetch(auth)`` returns; one fetch at a time per key."""
        key = _key(auth)
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            with self._lock:
                cached = self._tokens.get(key)
                if cached and cached[1] > self.clock():
                    return cached[0]
            token = fetch(auth)
            with self._lock:
                self._tokens[key] = (token.value, self.clock() + token.lifetime)
            return token.value

    def forget(self, auth: dict, rejected: str) -> None:
        """Drop the cached token if it is ``rejected``; a newer one fetched meanwhile stays."""
        key = _key(auth)
        with self._lock:
            if key in self._tokens and self._tokens[key][0] == rejected:
                del self._tokens[key]


def _key(auth: dict) -> tuple:
    # Every field: new credentials or another scope must not reuse an old token.
    return tuple(sorted(auth.items()))


def headers_for(auth: dict | None, session: egress.Session, cache: TokenCache, *, allow_private: bool) -> dict:
    """The headers that authenticate one request to the receiver."""
    if not auth:
        return {}
    kind = auth["type"]
    if kind == "header":
        return {auth["name"]: auth["value"]}
    if kind == "basic":
        pair = f"{auth['username']}:{auth['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if kind == "bearer":
        return {"Authorization": f"Bearer {auth['token']}"}
    token = cache.get(auth, lambda a: fetch_token(a, session, allow_private=allow_private))
    return {"Authorization": f"Bearer {token}"}


def fetch_token(auth: dict, session: egress.Session, *, allow_private: bool) -> Token:
    """Run the client-credentials grant (RFC 6749 section 4.4) through the SSRF-safe egress.

    The token is used until ``EXPIRY_MARGIN`` seconds before ``expires_in``
    (an hour when the server does not say), so it never expires on the way.
    """
    form = {"grant_type": "client_credentials"}
    for key in ("scope", "audience"):
        if auth.get(key):
            form[key] = auth[key]
    basic = base64.b64encode(f"{auth['client_id']}:{auth['client_secret']}".encode()).decode()
    exchange = egress.post(
        session,
        auth["token_url"],
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": f"Basic {basic}",
        },
        body="&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in form.items()).encode(),
        timeout=10.0,
        body_limit=64 * 1024,
        allow_private=allow_private,
    )
    if exchange.error or exchange.status != 200:
        raise AuthError(f"OAuth token request failed: {exchange.error or f'HTTP {exchange.status}'}")
    try:
        data = json.loads(exchange.body)
        value = data["access_token"]
        lifetime = float(data.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError):
        raise AuthError("OAuth token response has no access_token") from None
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n"):
        raise AuthError("OAuth token response has no usable access_token")
    if not math.isfinite(lifetime) or lifetime <= 0:
        lifetime = 3600.0
    return Token(value, max(lifetime - EXPIRY_MARGIN, 1.0))
