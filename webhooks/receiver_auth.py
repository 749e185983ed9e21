"""Credentials the hub presents to a receiver, besides the signature.

Types: ``header`` (a static API key header), ``basic``, ``bearer`` and
``oauth2`` (client credentials: the token is fetched from the token URL,
cached in the process until shortly before it expires, and fetched anew when
the receiver answers 401). Stored encrypted on the endpoint.
"""

from __future__ import annotations

import base64
import json
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
    allowed = {"type", "scope", "audience", *REQUIRED[auth["type"]]}
    return {key: value for key, value in auth.items() if key in allowed}


def secret_header_names(auth: dict | None) -> set[str]:
    """Lower-cased names of headers that carry these credentials (masked when attempts are stored)."""
    if not auth:
        return set()
    if auth["type"] == "header":
        return {auth["name"].lower()}
    return {"authorization"}


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """OAuth 2.0 access tokens per (token URL, client id), shared by the delivery threads."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._lock = threading.Lock()

    def get(self, auth: dict, fetch) -> str:
        key = (auth["token_url"], auth["client_id"])
        with self._lock:
            token = self._tokens.get(key)
            if token and token.expires_at > time.monotonic():
                return token.value
        token = fetch(auth)
        with self._lock:
            self._tokens[key] = token
        return token.value

    def forget(self, auth: dict) -> None:
        with self._lock:
            self._tokens.pop((auth["token_url"], auth["client_id"]), None)


def headers_for(auth: dict | None, session: requests.Session, cache: TokenCache, *, allow_private: bool) -> dict:
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


def fetch_token(auth: dict, session: requests.Session, *, allow_private: bool) -> _Token:
    """Run the client-credentials grant (RFC 6749 section 4.4) through the SSRF-safe egress."""
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
    return _Token(value, time.monotonic() + max(lifetime - EXPIRY_MARGIN, 1.0))
