"""Receiving at /hooks/<tenant>[/<source>]: every preset (valid, rotated, wrong, missing and
stale signatures), every answer code, duplicates, size limits over real sockets, rejected
requests kept and bounded."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import socket
import threading
import time
from datetime import datetime
from datetime import timezone
from urllib.parse import urlencode

import pytest
from standardwebhooks.webhooks import Webhook

from webhooks import inbound
from webhooks import providers
from webhooks.testing import wait_until

# (provider, config, signs a timestamp)
PRESETS = [
    ("github", {}, False),
    ("stripe", {}, True),
    ("shopify", {}, False),
    ("slack", {}, True),
    ("standard", {}, True),
    ("gitlab", {}, False),
    ("hmac", {"algorithm": "sha512", "encoding": "base64", "prefix": "sha512=", "id_header": "X-Request-Id"}, False),
    ("hmac", {"timestamp_header": "X-Timestamp", "event_header": "X-Event"}, True),
    ("token", {"scheme": "bearer"}, False),
    ("token", {"scheme": "header", "header": "X-Api-Token"}, False),
    ("token", {"scheme": "basic", "username": "hub"}, False),
]
PRESET_IDS = [f"{name}-{'-'.join(map(str, config.values())) or 'default'}" for name, config, _ in PRESETS]
TIMESTAMPED = [case for case in PRESETS if case[2]]
TIMESTAMPED_IDS = [PRESET_IDS[PRESETS.index(case)] for case in TIMESTAMPED]
# Per preset: the headers naming the event type and the delivery id, as each provider sends them.
EVENT_HEADERS = {
    "github": lambda n: {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"gh-{n}"},
    "shopify": lambda n: {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": f"sh-{n}"},
    "gitlab": lambda n: {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": f"gl-{n}"},
    "hmac": lambda n: {"X-Request-Id": f"req-{n}", "X-Event": "thing.happened"},
}
_counter = itertools.count(1)


def secrets_for(provider: str) -> tuple[str, str]:
    """A (new, old) pair in the format the preset expects."""
    if provider == "standard":
        return "whsec_" + base64.b64encode(b"n" * 24).decode(), "whsec_" + base64.b64encode(b"o" * 24).decode()
    return "new-secret-0123456789abcdef", "old-secret-fedcba9876543210"


def body_for(n: int) -> bytes:
    """A JSON body carrying what Stripe and Slack read their type and id from."""
    return json.dumps(
        {"id": f"evt_{n}", "type": "invoice.paid", "event_id": f"Ev{n}", "event": {"type": "message"}, "n": n}
    ).encode()


def signed(provider: str, secret: str, body: bytes, config=None, timestamp: float | None = None) -> dict:
    """Authentication headers computed as the provider documents it; Standard Webhooks by its own library."""
    timestamp = int(time.time() if timestamp is None else timestamp)
    if provider == "standard":
        msg_id = f"msg_{next(_counter)}"
        sent_at = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        signature = Webhook(secret).sign(msg_id, sent_at, body.decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    return providers.sign(provider, secret, body, headers_config=config, timestamp=timestamp)


def delivery(provider: str, secret: str | None, config=None, timestamp=None) -> tuple[bytes, dict]:
    n = next(_counter)
    body = body_for(n)
    headers = {"Content-Type": "application/json", **EVENT_HEADERS.get(provider, lambda n: {})(n)}
    if secret is not None:
        headers.update(signed(provider, secret, body, config, timestamp))
    return body, headers


def make_source(api, provider, config, **fields) -> dict:
    new, old = secrets_for(provider)
    return api.source("src", provider, config=config, secrets=[new, old], **fields)


def inbound_rows(api, **query) -> list[dict]:
    response = api.get("/api/v1/inbound", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def detail(api, request_id: int) -> dict:
    return api.get(f"/api/v1/inbound/{request_id}").get_json()


# -- every preset ----------------------------------------------------------------


@pytest.mark.parametrize("provider, config, _", PRESETS, ids=PRESET_IDS)
def test_valid_signature_is_stored_and_acknowledged(api, client, provider, config, _):
    make_source(api, provider, config)
    body, headers = delivery(provider, secrets_for(provider)[0], config)
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    stored = detail(api, response.get_json()["id"])
    # The source has no routes: the request is stored finished, with the attempt that says so.
    assert stored["status"] == "ignored" and stored["verification"]["passed"] is True
    assert [attempt["outcome"] for attempt in stored["attempt_log"]] == ["ignored"]
    assert stored["headers"]["Content-Type"] == headers["Content-Type"]
    assert stored["body"] == body.decode()
    credential = secrets_for(provider)[0]
    assert credential not in json.dumps(stored["headers"])


@pytest.mark.parametrize("provider, config, _", PRESETS, ids=PRESET_IDS)
def test_rotated_secret_keeps_working(api, client, provider, config, _):
    make_source(api, provider, config)
    body, headers = delivery(provider, secrets_for(provider)[1], config)
    assert client.post("/hooks/acme/src", data=body, headers=headers).status_code == 202


@pytest.mark.parametrize("provider, config, _", PRESETS, ids=PRESET_IDS)
def test_wrong_secret_is_refused_and_kept_masked(api, client, provider, config, _):
    make_source(api, provider, config)
    wrong = "whsec_" + base64.b64encode(b"w" * 24).decode() if provider == "standard" else "wrong-secret-0123456789"
    body, headers = delivery(provider, wrong, config)
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] in ("signature mismatch", "token mismatch")
    [row] = inbound_rows(api, status="rejected")
    stored = detail(api, row["id"])
    assert stored["http_status"] == 401 and stored["verification"] == {
        "passed": False,
        "preset": provider,
        "reason": response.get_json()["error"]["message"],
    }
    assert stored["body"] == body.decode()
    assert wrong not in json.dumps(stored["headers"])


@pytest.mark.parametrize("provider, config, _", PRESETS, ids=PRESET_IDS)
def test_missing_signature_is_refused(api, client, provider, config, _):
    make_source(api, provider, config)
    body, headers = delivery(provider, None, config)
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["message"].startswith("missing ")


@pytest.mark.parametrize("provider, config, _", TIMESTAMPED, ids=TIMESTAMPED_IDS)
def test_stale_timestamp_is_refused(api, client, provider, config, _):
    make_source(api, provider, config)
    body, headers = delivery(provider, secrets_for(provider)[0], config, timestamp=time.time() - 3600)
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 401
    assert "tolerance" in response.get_json()["error"]["message"]


def test_unauthenticated_source_accepts_anything_and_says_so(api, client):
    source = api.source("open", "none")
    assert source["unauthenticated"] is True and "anyone" in source["warning"]
    response = client.post("/hooks/acme/open", json={"hello": "world"})
    assert response.status_code == 202
    assert detail(api, response.get_json()["id"])["verification"]["reason"].startswith("not verified")


def test_signature_is_checked_on_the_raw_bytes(api, client):
    """Re-serialising the JSON (here: other whitespace) breaks the signature, as it must."""
    make_source(api, "github", {})
    body, headers = delivery("github", secrets_for("github")[0])
    reformatted = json.dumps(json.loads(body), indent=2).encode()
    assert client.post("/hooks/acme/src", data=reformatted, headers=headers).status_code == 401


def test_github_form_encoded_payload(api, client):
    make_source(api, "github", {})
    payload = {"ref": "refs/heads/main", "commits": [{"id": "abc"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "form-1",
        **signed("github", secrets_for("github")[0], body),
    }
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 202
    stored = detail(api, response.get_json()["id"])
    assert stored["event_type"] == "push" and stored["delivery_id"] == "form-1"
    assert stored["content_type"] == "application/x-www-form-urlencoded"


def test_github_ping_is_accepted(api, client):
    make_source(api, "github", {})
    body = b'{"zen":"Design for failure.","hook_id":1}'
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping", "X-GitHub-Delivery": "ping-1"}
    headers.update(signed("github", secrets_for("github")[0], body))
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 202
    assert detail(api, response.get_json()["id"])["event_type"] == "ping"


def test_slack_url_verification_is_answered_with_the_challenge(api, client):
    make_source(api, "slack", {})
    body = json.dumps({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).encode()
    headers = {"Content-Type": "application/json", **signed("slack", secrets_for("slack")[0], body)}
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert inbound_rows(api) == []


def test_slack_challenge_needs_a_valid_signature(api, client):
    make_source(api, "slack", {})
    body = b'{"challenge":"abc","type":"url_verification"}'
    response = client.post("/hooks/acme/src", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and "abc" not in response.get_data(as_text=True)


# -- answers ---------------------------------------------------------------------


def test_duplicate_delivery_answers_200_with_the_first_id(api, client):
    make_source(api, "github", {})
    body, headers = delivery("github", secrets_for("github")[0])
    first = client.post("/hooks/acme/src", data=body, headers=headers)
    again = client.post("/hooks/acme/src", data=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json() == {"id": first.get_json()["id"], "duplicate": True}
    assert len(inbound_rows(api)) == 1


def test_same_delivery_id_on_another_source_is_not_a_duplicate(api, client):
    make_source(api, "github", {})
    api.source("other", "github", secret=secrets_for("github")[0])
    body, headers = delivery("github", secrets_for("github")[0])
    assert client.post("/hooks/acme/src", data=body, headers=headers).status_code == 202
    assert client.post("/hooks/acme/other", data=body, headers=headers).status_code == 202


def test_simultaneous_duplicates_store_one_request(api, app):
    """Eight copies of one delivery at once: one 202, seven 200s naming it, one row."""
    make_source(api, "github", {})
    body, headers = delivery("github", secrets_for("github")[0])
    barrier = threading.Barrier(8)
    answers = []

    def send():
        client = app.test_client()
        barrier.wait()
        response = client.post("/hooks/acme/src", data=body, headers=headers)
        answers.append((response.status_code, response.get_json()["id"]))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(code for code, _ in answers) == [200] * 7 + [202]
    assert len({request_id for _, request_id in answers}) == 1
    assert len(inbound_rows(api)) == 1


def test_unknown_tenant_and_unknown_source_look_the_same(api, client, other_api):
    make_source(api, "github", {})
    other_api.source("theirs", "github")
    body, headers = delivery("github", secrets_for("github")[0])
    unknown_tenant = client.post("/hooks/nobody/src", data=body, headers=headers)
    unknown_source = client.post("/hooks/acme/nothing", data=body, headers=headers)
    other_tenants_source = client.post("/hooks/acme/theirs", data=body, headers=headers)
    no_default = client.post("/hooks/acme", data=body, headers=headers)
    answers = {(r.status_code, r.get_data()) for r in (unknown_tenant, unknown_source, other_tenants_source, no_default)}
    assert len(answers) == 1 and answers.pop()[0] == 404


def test_disabled_source_answers_404_but_keeps_the_request(api, client):
    make_source(api, "github", {}, enabled=False)
    body, headers = delivery("github", secrets_for("github")[0])
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 404
    assert response.get_data() == client.post("/hooks/acme/nothing", data=body, headers=headers).get_data()
    [row] = inbound_rows(api)
    assert row["status"] == "rejected" and row["reason"] == "the source is disabled"


def test_default_source_answers_at_the_tenant_url(api, client):
    make_source(api, "github", {})
    default = api.source("main", "github", secret=secrets_for("github")[0], is_default=True)
    assert default["default_url"] == "http://localhost/hooks/acme"
    body, headers = delivery("github", secrets_for("github")[0])
    response = client.post("/hooks/acme", data=body, headers=headers)
    assert response.status_code == 202
    assert detail(api, response.get_json()["id"])["source"] == "main"


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_405_with_allow(api, client, method):
    make_source(api, "github", {})
    for path in ("/hooks/acme/src", "/hooks/acme", "/hooks/nobody/src"):
        response = client.open(path, method=method)
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert inbound_rows(api) == []


def test_ip_allowlist(api, client):
    make_source(api, "github", {}, ip_allowlist=["192.0.2.0/24", "2001:db8::/32"])
    for address, expected in (
        ("192.0.2.77", 202),
        ("::ffff:192.0.2.8", 202),
        ("2001:db8::1", 202),
        ("198.51.100.1", 403),
        ("2001:db9::1", 403),
    ):
        body, headers = delivery("github", secrets_for("github")[0])
        response = client.post("/hooks/acme/src", data=body, headers=headers, environ_base={"REMOTE_ADDR": address})
        assert response.status_code == expected, address
    rejected = inbound_rows(api, status="rejected")
    assert [row["reason"] for row in rejected] == [
        "2001:db9::1 is not in the source's IP allowlist",
        "198.51.100.1 is not in the source's IP allowlist",
    ]


@pytest.mark.parametrize(
    "content_type, body",
    [("application/json", b'{"not json'), ("application/x-www-form-urlencoded", b"nothing=here")],
)
def test_body_that_is_not_what_its_content_type_says_is_400(api, client, content_type, body):
    make_source(api, "github", {})
    headers = {"Content-Type": content_type, "X-GitHub-Event": "push", **signed("github", secrets_for("github")[0], body)}
    response = client.post("/hooks/acme/src", data=body, headers=headers)
    assert response.status_code == 400
    [row] = inbound_rows(api)
    assert row["status"] == "rejected" and row["http_status"] == 400


def test_over_the_size_limit_is_413(api, client):
    make_source(api, "github", {}, max_body_bytes=1024)
    for size, expected in ((1024, 202), (1025, 413)):
        body = json.dumps({"pad": "x" * (size - 11)}).encode()
        assert len(body) == size
        headers = {"Content-Type": "application/json", **signed("github", secrets_for("github")[0], body)}
        assert client.post("/hooks/acme/src", data=body, headers=headers).status_code == expected
    [row] = inbound_rows(api, status="rejected")
    assert row["http_status"] == 413


def test_rate_limit_answers_429_with_retry_after(api, client):
    make_source(api, "github", {}, rate_limit_per_minute=2)
    # The limit counts per clock minute: start well inside one, or the window may turn mid-test.
    wait_until(lambda: time.time() % 60 < 50, timeout=15, interval=0.2)
    answers = []
    for _ in range(3):
        body, headers = delivery("github", secrets_for("github")[0])
        answers.append(client.post("/hooks/acme/src", data=body, headers=headers))
    assert [r.status_code for r in answers] == [202, 202, 429]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    # Throttled requests are counted, not stored: the limit exists to spare the database.
    assert len(inbound_rows(api)) == 2


def test_rejected_requests_are_bounded_per_source(api, client, monkeypatch):
    monkeypatch.setattr(inbound, "REJECTED_KEPT", 3)
    make_source(api, "github", {})
    api.source("other", "github", secret=secrets_for("github")[0])
    body, headers = delivery("github", None)
    assert client.post("/hooks/acme/other", data=body, headers=headers).status_code == 401
    for _ in range(5):
        assert client.post("/hooks/acme/src", data=body, headers=headers).status_code == 401
    kept = inbound_rows(api, source="src")
    assert len(kept) == 3 and [row["id"] for row in kept] == sorted((row["id"] for row in kept), reverse=True)
    assert kept[-1]["id"] == kept[0]["id"] - 2  # the newest three
    assert len(inbound_rows(api, source="other")) == 1  # bounded per source


def test_accepted_row_is_committed_before_the_answer(api, client, app):
    make_source(api, "github", {})
    body, headers = delivery("github", secrets_for("github")[0])
    request_id = client.post("/hooks/acme/src", data=body, headers=headers).get_json()["id"]
    from sqlalchemy import create_engine
    from sqlalchemy import text

    # A connection of its own sees only what was committed.
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as connection:
            status = connection.execute(text("SELECT status FROM inbound_requests WHERE id = :id"), {"id": request_id})
            assert status.scalar() == "ignored"  # no routes: finished in the same commit
    finally:
        engine.dispose()


# -- over real sockets -------------------------------------------------------------


def raw_post(port: int, path: str, headers: dict, body_parts: list[bytes]) -> http.client.HTTPResponse:
    """Send headers and then only ``body_parts``; answer within 5 s or the test fails."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n")
    for part in body_parts:
        sock.sendall(part)
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    sock.close()
    return response


def test_declared_length_over_the_limit_is_refused_without_reading(api, live_server):
    """Content-Length says 100 MB and nothing follows: the answer comes at once, nothing is read."""
    make_source(api, "github", {}, max_body_bytes=1024)
    response = raw_post(live_server, "/hooks/acme/src", {"Content-Length": str(100 * 1024 * 1024), "Content-Type": "application/json"}, [])
    assert response.status == 413
    [row] = inbound_rows(api)
    assert row["reason"].startswith("the body of 104857600 bytes")


def test_chunked_upload_stops_at_the_limit(api, live_server):
    """Without a length the body is read up to one byte past the limit, then refused: the
    sender's endless stream (never terminated here) is not read to its end."""
    make_source(api, "github", {}, max_body_bytes=1024)
    chunk = b"x" * 4096
    parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"]
    response = raw_post(live_server, "/hooks/acme/src", {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}, parts)
    assert response.status == 413
    stored = detail(api, inbound_rows(api)[0]["id"])
    assert len(stored["body"]) == 1025


def test_chunked_upload_within_the_limit_is_accepted(api, live_server):
    make_source(api, "github", {})
    body, headers = delivery("github", secrets_for("github")[0])
    parts = [f"{len(body[:10]):x}\r\n".encode() + body[:10] + b"\r\n", f"{len(body[10:]):x}\r\n".encode() + body[10:] + b"\r\n0\r\n\r\n"]
    response = raw_post(live_server, "/hooks/acme/src", {**headers, "Transfer-Encoding": "chunked"}, parts)
    assert response.status == 202
