"""Credentials the hub presents to receivers: exact headers on the wire, OAuth 2.0
client credentials against a loopback token server, encryption at rest, masking in the log."""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import parse_qs

import pytest
from sqlalchemy import text
from werkzeug.wrappers import Response

from webhooks.db import db
from webhooks.models import Delivery
from webhooks.testing import Receiver


def delivery_details(api) -> list[dict]:
    listed = api.get("/api/v1/deliveries?limit=200").get_json()["data"]
    return [api.get(f"/api/v1/deliveries/{d['id']}").get_json() for d in reversed(listed)]


def stored_auth(app) -> str:
    with app.app_context():
        return db.session.execute(text("SELECT auth FROM endpoints")).scalar_one()


class TokenServer:
    """A client-credentials token endpoint that issues ``tok-1``, ``tok-2``... and remembers each request."""

    def __init__(self, *, lifetime: int = 3600, delay: float = 0.0, status: int = 200) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.status = status
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.forms: list[dict] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request):
        if self.delay:
            time.sleep(self.delay)  # a slow token server: delivery threads overlap while it answers
        with self.lock:
            self.forms.append({k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()})
            self.authorizations.append(request.headers.get("Authorization", ""))
            if self.status != 200:
                return Response("no", self.status)
            token = f"tok-{len(self.issued) + 1}-{'q' * 24}"
            self.issued.append(token)
            self.valid.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        return Response(json.dumps(body), 200, content_type="application/json")

    def guard(self, request):
        """The receiver: accepts the tokens this server issued and has not revoked, else 401."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return Response("ok") if token in self.valid else Response("who are you", 401)


@pytest.fixture
def tokens():
    server = TokenServer()
    with Receiver(server) as running:
        server.url = running.url.replace("/hook", "/oauth/token")
        yield server


@pytest.fixture
def guarded(tokens):
    with Receiver(tokens.guard) as running:
        yield running


def oauth(tokens, **extra) -> dict:
    return {
        "type": "oauth2",
        "token_url": tokens.url,
        "client_id": "hub-client",
        "client_secret": "cs-0123456789-abcdef",
        **extra,
    }


@pytest.mark.parametrize(
    "auth, header, expected, secret",
    [
        (
            {"type": "header", "name": "X-Api-Key", "value": "key-0123456789-secret"},
            "X-Api-Key",
            "key-0123456789-secret",
            "key-0123456789-secret",
        ),
        (
            {"type": "basic", "username": "hub", "password": "pw-0123456789-secret"},
            "Authorization",
            "Basic " + base64.b64encode(b"hub:pw-0123456789-secret").decode(),
            "pw-0123456789-secret",
        ),
        (
            {"type": "bearer", "token": "bt-0123456789-secret"},
            "Authorization",
            "Bearer bt-0123456789-secret",
            "bt-0123456789-secret",
        ),
    ],
    ids=["header", "basic", "bearer"],
)
def test_static_credentials_reach_the_receiver_and_nowhere_else(app, api, receiver, drainer, auth, header, expected, secret):
    created = api.endpoint(receiver.url, auth=auth)
    assert created["auth"] == {"type": auth["type"]}
    api.publish()
    drainer.drain()
    assert receiver.wait_for(1)[0].headers[header] == expected
    [detail] = delivery_details(api)
    assert detail["status"] == "succeeded"
    logged = detail["attempt_log"][0]["request"]["headers"][header]
    assert logged != expected and logged.endswith("…")
    for shown in (json.dumps(detail), json.dumps(api.get("/api/v1/endpoints").get_json())):
        assert secret not in shown and expected not in shown
    raw = stored_auth(app)
    assert raw.startswith("fernet:") and secret not in raw and expected not in raw
    with app.app_context():
        rows = db.session.execute(text("SELECT request_headers FROM attempts")).scalars().all()
    assert rows and all(expected not in str(row) for row in rows)


def test_oauth_token_is_fetched_once_for_many_deliveries(app, api, tokens, guarded, drainer):
    tokens.delay = 0.2
    api.endpoint(guarded.url, auth=oauth(tokens, scope="webhooks:write"))
    api.post("/api/v1/events", json=[{"type": "a", "payload": {"n": n}} for n in range(10)])
    drainer.drain()
    assert len(tokens.issued) == 1, "concurrent deliveries wait for one fetch instead of each fetching"
    assert tokens.forms == [{"grant_type": "client_credentials", "scope": "webhooks:write"}]
    assert tokens.authorizations == ["Basic " + base64.b64encode(b"hub-client:cs-0123456789-abcdef").decode()]
    sent = guarded.wait_for(10)
    assert {r.headers["Authorization"] for r in sent} == {f"Bearer {tokens.issued[0]}"}
    details = delivery_details(api)
    assert [d["status"] for d in details] == ["succeeded"] * 10
    everything = json.dumps(details)
    assert tokens.issued[0] not in everything and "cs-0123456789-abcdef" not in everything
    raw = stored_auth(app)
    assert "cs-0123456789-abcdef" not in raw and "hub-client" not in raw


def test_oauth_token_is_fetched_again_after_it_expires(api, tokens, guarded, drainer):
    api.endpoint(guarded.url, auth=oauth(tokens))
    api.publish()
    drainer.drain()
    api.publish()
    drainer.drain()
    assert len(tokens.issued) == 1
    cache = drainer.worker.settings.tokens
    cache.clock = lambda: time.monotonic() + 3600 - 29  # within the margin before expires_in
    api.publish()
    drainer.drain()
    assert len(tokens.issued) == 2
    assert guarded.wait_for(3)[-1].headers["Authorization"] == f"Bearer {tokens.issued[1]}"


def test_oauth_401_fetches_a_new_token_once_and_retries_within_the_attempt(app, api, tokens, guarded, drainer):
    api.endpoint(guarded.url, auth=oauth(tokens))
    api.publish()
    drainer.drain()
    tokens.valid.clear()  # the authorisation server revoked tok-1; the hub still caches it
    api.post("/api/v1/events", json=[{"type": "a", "payload": {"n": n}} for n in range(3)])
    drainer.drain()
    assert len(tokens.issued) == 2, "a burst of 401s costs one new token"
    with_old = [r for r in guarded.requests if r.headers["Authorization"] == f"Bearer {tokens.issued[0]}"]
    with_new = [r for r in guarded.requests if r.headers["Authorization"] == f"Bearer {tokens.issued[1]}"]
    # The first delivery went with tok-1 before the revocation; then 1 to 3 were refused with it.
    assert len(with_new) == 3 and 2 <= len(with_old) <= 4
    details = delivery_details(api)
    assert [(d["status"], d["attempts"]) for d in details] == [("succeeded", 1)] * 4
    assert [a["response"]["status"] for d in details for a in d["attempt_log"]] == [200] * 4


def test_token_server_failure_is_a_failed_attempt(app, api, tokens, guarded, drainer):
    tokens.status = 500
    api.endpoint(guarded.url, auth=oauth(tokens))
    api.publish()
    drainer.drain()
    assert guarded.requests == []
    [detail] = delivery_details(api)
    assert detail["status"] == "pending" and detail["attempts"] == 1
    assert detail["attempt_log"][0]["error"] == "OAuth token request failed: HTTP 500"
    with app.app_context():
        assert db.session.query(Delivery).one().last_error == "OAuth token request failed: HTTP 500"


@pytest.mark.parametrize(
    "auth, message",
    [
        ({"type": "header", "name": "webhook-signature", "value": "x"}, "set by the hub"),
        ({"type": "header", "name": "X Key", "value": "x"}, "not a valid HTTP header name"),
        ({"type": "header", "name": "X-Key", "value": "a\r\nInjected: 1"}, "control characters"),
        ({"type": "header", "name": "X-Key\x00", "value": "a"}, "not a valid HTTP header name"),
        ({"type": "oauth2", "token_url": "ftp://x/", "client_id": "a", "client_secret": "b"}, "http"),
        ({"type": "oauth2", "token_url": "RECEIVER", "client_id": "a", "client_secret": "b", "scope": 5}, "scope"),
        ({"type": "bearer", "token": ""}, "auth.token is required"),
        ({"type": "bearer", "token": "t\r\nX-Injected: 1"}, "control characters"),
        ("bearer", "auth.type must be one of"),
    ],
)
def test_invalid_auth_is_422(api, receiver, auth, message):
    if isinstance(auth, dict) and auth.get("token_url") == "RECEIVER":
        auth = {**auth, "token_url": receiver.url}
    response = api.post("/api/v1/endpoints", json={"url": receiver.url, "auth": auth})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "auth" and message in error["message"]


def test_token_url_must_not_reach_private_addresses(app, api):
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    auth = {"type": "oauth2", "token_url": "http://169.254.169.254/token", "client_id": "a", "client_secret": "b"}
    response = api.post("/api/v1/endpoints", json={"url": "https://93.184.216.34/hook", "auth": auth})
    assert response.status_code == 422 and "private or reserved" in response.get_json()["error"]["message"]
