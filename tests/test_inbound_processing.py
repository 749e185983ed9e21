"""Processing accepted requests: routes, publish (gateway mode, end to end), handlers, retries
with backoff, reprocessing, leases shared by concurrent processors."""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from conftest import make_app
from webhooks import claims
from webhooks import hooks
from webhooks import inbound
from webhooks import providers
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Event
from webhooks.models import EventType
from webhooks.models import InboundRequest

SECRET = "gh-secret-0123456789abcdef"


@pytest.fixture
def register():
    """Register handlers for one test; they are forgotten afterwards."""
    names = []

    def register(function, provider="github", event_type="*", name=None):
        name = name or f"test.{function.__name__}"
        hooks.handler(provider, event_type, name=name)(function)
        names.append(name)
        return name

    yield register
    for name in names:
        hooks.unregister(name)


def github_push(client, payload=None, *, event="push", delivery=None, path="/hooks/acme/gh", form=False):
    """A GitHub delivery, signed as GitHub documents it; returns the inbound request id."""
    payload = payload if payload is not None else {"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}}
    if form:
        body, content_type = urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
    else:
        body, content_type = json.dumps(payload).encode(), "application/json"
    headers = {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or f"{event}-{json.dumps(payload, sort_keys=True)}",
        **providers.sign("github", SECRET, body),
    }
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def detail(api, request_id):
    return api.get(f"/api/v1/inbound/{request_id}").get_json()


def count(app, model, *conditions) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(model).where(*conditions))
        finally:
            db.session.remove()


# -- gateway mode ------------------------------------------------------------------


def test_gateway_github_push_reaches_an_endpoint_resigned(api, receiver, drainer, process_inbound, live_server):
    """Provider in, many consumers out: a signed push arrives over HTTP, is published as
    github.push, and the endpoint gets it signed with its own Standard Webhooks secret."""
    endpoint = api.endpoint(receiver.url, event_types=["github.*"])
    api.source("gh", "github", secret=SECRET, routes=[{"action": "publish", "event_type": "github.{event_type}"}])
    payload = {"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        **providers.sign("github", SECRET, body),
    }
    answer = requests.post(f"http://127.0.0.1:{live_server}/hooks/acme/gh", data=body, headers=headers, timeout=10)
    assert answer.status_code == 202
    assert process_inbound() == 1
    drainer.drain()
    received = receiver.wait_for(1)[0]
    lowered = {name.lower(): value for name, value in received.headers.items()}
    event = Webhook(endpoint["secret"]).verify(received.body, lowered)
    assert event["type"] == "github.push" and event["data"] == payload
    stored = detail(api, answer.json()["id"])
    assert stored["status"] == "processed"
    [attempt] = stored["attempt_log"]
    assert attempt["outcome"] == "published" and attempt["route_index"] == 0
    assert "github.push" in attempt["detail"] and "1 endpoint(s)" in attempt["detail"]


def test_publish_reshapes_with_a_template(api, client, process_inbound):
    template = api.post(
        "/api/v1/templates",
        json={
            "name": "commit",
            "body": '{"repo": {{ repository.full_name | tojson }}, "delivery": {{ headers["x-github-delivery"] | tojson }}}',
        },
    ).get_json()
    api.source("gh", "github", secret=SECRET, routes=[{"action": "publish", "event_type": "code.pushed", "template_id": template["id"]}])
    request_id = github_push(client, delivery="d-77")
    process_inbound()
    assert detail(api, request_id)["status"] == "processed"
    event_id = int(detail(api, request_id)["attempt_log"][0]["detail"].split(" as event ")[1].split()[0])
    event = api.get(f"/api/v1/events/{event_id}").get_json()
    assert event["type"] == "code.pushed" and event["payload"] == {"repo": "acme/shop", "delivery": "d-77"}


def test_event_type_placeholder_is_made_a_valid_type(api, client, process_inbound, app):
    api.source(
        "shop",
        "shopify",
        secret=SECRET,
        routes=[{"action": "publish", "event_type": "shopify.{event_type}"}],
    )
    body = b'{"id": 820982911946154508}'
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        **providers.sign("shopify", SECRET, body),
    }
    assert client.post("/hooks/acme/shop", data=body, headers=headers).status_code == 202
    process_inbound()
    assert count(app, Event, Event.type == "shopify.orders_create") == 1


def test_reprocessing_never_publishes_twice(api, client, process_inbound, app):
    api.source("gh", "github", secret=SECRET, routes=[{"action": "publish", "event_type": "github.push"}])
    request_id = github_push(client)
    process_inbound()
    assert api.post(f"/api/v1/inbound/{request_id}/reprocess").status_code == 202
    assert process_inbound() == 1
    stored = detail(api, request_id)
    assert stored["status"] == "processed" and stored["attempts"] == 2
    assert "published before, so not again" in stored["attempt_log"][1]["detail"]
    assert stored["attempt_log"][1]["trigger"] == "manual"
    assert count(app, Event) == 1


def test_refused_publish_fails_without_retrying(api, client, process_inbound):
    """A catalog schema that refuses the payload fails the same way every time: no retry."""
    api.post(
        "/api/v1/event-types",
        json={"name": "github.push", "schema": {"type": "object", "required": ["order"]}},
    )
    api.source("gh", "github", secret=SECRET, routes=[{"action": "publish", "event_type": "github.push"}])
    request_id = github_push(client)
    process_inbound()
    stored = detail(api, request_id)
    assert stored["status"] == "failed" and stored["attempts"] == 1
    assert stored["error"].startswith("routes[0]: publishing github.push was refused")


# -- routes --------------------------------------------------------------------------


def test_every_matching_route_runs_in_order(api, client, process_inbound, register):
    calls = []
    first = register(lambda event: calls.append(("first", event.event_type)), name="test.first")
    second = register(lambda event: calls.append(("second", event.event_type)), name="test.second")
    api.source(
        "gh",
        "github",
        secret=SECRET,
        routes=[
            {"when": 'event_type == "push" and ref == "refs/heads/main"', "action": "handler", "handler": first},
            {"when": 'event.type == "issues"', "action": "handler", "handler": second},
            {"action": "handler", "handler": second},
        ],
    )
    push = github_push(client)
    process_inbound()
    assert calls == [("first", "push"), ("second", "push")]
    assert [a["route_index"] for a in detail(api, push)["attempt_log"]] == [0, 2]


def test_no_matching_route_is_ignored(api, client, process_inbound, register):
    api.source("gh", "github", secret=SECRET, routes=[{"when": 'headers["X-GitHub-Event"] == "release"', "action": "publish", "event_type": "github.release"}])
    request_id = github_push(client)
    process_inbound()
    stored = detail(api, request_id)
    assert stored["status"] == "ignored"
    assert stored["attempt_log"][0]["outcome"] == "ignored"
    assert stored["attempt_log"][0]["detail"] == "no route matched event type push"


def test_handler_declaration_limits_what_it_receives(api, client, process_inbound, register):
    seen = []
    pushes = register(lambda event: seen.append("push"), event_type="push", name="test.pushes")
    register(lambda event: seen.append("any"), event_type="*", name="test.any")
    register(lambda event: seen.append("stripe"), provider="stripe", name="test.stripe")
    api.source(
        "gh",
        "github",
        secret=SECRET,
        routes=[{"action": "handler", "handler": pushes}, {"action": "handler", "handler": "*"}],
    )
    issue = github_push(client, {"action": "opened"}, event="issues")
    process_inbound()
    assert seen == ["any"]
    assert [a["route_index"] for a in detail(api, issue)["attempt_log"]] == [1]
    github_push(client)
    process_inbound()
    assert seen == ["any", "push", "push", "any"]


def test_handler_gets_the_parsed_event(api, client, process_inbound, register):
    got = []
    name = register(got.append, name="test.collect")
    api.source("gh", "github", secret=SECRET, routes=[{"action": "handler", "handler": name}])
    request_id = github_push(client, {"ref": "refs/heads/dev"}, delivery="form-delivery", form=True)
    process_inbound()
    [event] = got
    assert isinstance(event, hooks.Event)
    assert (event.id, event.provider, event.event_type, event.source, event.tenant) == (request_id, "github", "push", "gh", "acme")
    assert event.payload == {"ref": "refs/heads/dev"}  # the form's payload field, parsed
    assert event.delivery_id == "form-delivery" and event.attempt == 1
    assert event.headers["X-Hub-Signature-256"].endswith("…")  # credentials stay masked
    assert event.body.startswith(b"payload=")


def test_handler_database_changes_commit_with_success_and_roll_back_on_error(api, client, process_inbound, register, app):
    def records(event):
        db.session.add(EventType(tenant_id=api.tenant_id, name=f"seen.{event.id}"))
        if event.payload.get("explode"):
            raise RuntimeError("after writing")

    name = register(records, name="test.records")
    api.source("gh", "github", secret=SECRET, max_attempts=1, routes=[{"action": "handler", "handler": name}])
    kept = github_push(client, {"n": 1})
    dropped = github_push(client, {"explode": True})
    process_inbound()
    assert count(app, EventType, EventType.name == f"seen.{kept}") == 1
    assert count(app, EventType, EventType.name == f"seen.{dropped}") == 0


# -- failures, retries, reprocessing ----------------------------------------------------


def test_handler_fails_then_succeeds_on_reprocess(api, client, process_inbound, register):
    broken = {"yes": True}

    def deploy(event):
        if broken["yes"]:
            raise ValueError("deploy target unreachable")

    name = register(deploy, name="test.deploy")
    api.source("gh", "github", secret=SECRET, max_attempts=1, routes=[{"action": "handler", "handler": name}])
    request_id = github_push(client)
    process_inbound()
    failed = detail(api, request_id)
    assert failed["status"] == "failed"
    assert failed["error_summary"] == "routes[0]: handler test.deploy raised ValueError: deploy target unreachable"
    assert "Traceback (most recent call last)" in failed["error"] and "in deploy" in failed["error"]
    assert "Traceback" in failed["attempt_log"][0]["error"]

    broken["yes"] = False
    assert api.post(f"/api/v1/inbound/{request_id}/reprocess").get_json()["status"] == "received"
    process_inbound()
    fixed = detail(api, request_id)
    assert fixed["status"] == "processed" and fixed["error"] is None
    assert [(a["number"], a["trigger"], a["outcome"]) for a in fixed["attempt_log"]] == [
        (1, "scheduled", "failed"),
        (2, "manual", "handled"),
    ]


def test_failing_handler_is_retried_with_backoff_and_skips_what_worked(api, client, process_inbound, register, app):
    runs = []

    def flaky(event):
        runs.append(event.attempt)
        raise ConnectionError("upstream down")

    name = register(flaky, name="test.flaky")
    api.source(
        "gh",
        "github",
        secret=SECRET,
        max_attempts=3,
        routes=[{"action": "publish", "event_type": "github.push"}, {"action": "handler", "handler": name}],
    )
    request_id = github_push(client)
    start = now_utc()
    process_inbound()
    waiting = detail(api, request_id)
    assert waiting["status"] == "received" and waiting["attempts"] == 1
    from datetime import datetime

    retry_at = datetime.fromisoformat(waiting["next_attempt_at"])
    assert timedelta(seconds=23) < retry_at - start < timedelta(seconds=37)  # 30 s ± 20 %
    assert process_inbound() == 0  # not due yet
    assert process_inbound(now=start + timedelta(seconds=40)) == 1
    assert process_inbound(now=start + timedelta(minutes=30)) == 1
    done = detail(api, request_id)
    assert done["status"] == "failed" and done["attempts"] == 3 and runs == [1, 2, 3]
    outcomes = [(a["number"], a["route_index"], a["outcome"]) for a in done["attempt_log"]]
    assert outcomes == [(1, 0, "published"), (1, 1, "failed"), (2, 0, "skipped"), (2, 1, "failed"), (3, 0, "skipped"), (3, 1, "failed")]
    assert count(app, Event) == 1


def test_unregistered_handler_fails_and_is_retried(api, client, process_inbound, register):
    name = register(lambda event: None, name="test.later")
    api.source("gh", "github", secret=SECRET, routes=[{"action": "handler", "handler": name}])
    hooks.unregister(name)  # e.g. WEBHOOKS_HANDLERS differs in the worker process
    request_id = github_push(client)
    process_inbound()
    stored = detail(api, request_id)
    assert stored["status"] == "received" and "no handler named 'test.later'" in stored["error_summary"]


# A source with a route keeps its requests waiting for the processor; one without is finished on arrival.
RELEASES_ONLY = [{"when": 'event_type == "release"', "action": "publish", "event_type": "github.release"}]


def test_reprocess_rules(api, other_api, client, app):
    api.source("gh", "github", secret=SECRET, routes=RELEASES_ONLY)
    bad = client.post("/hooks/acme/gh", json={}, headers={"X-GitHub-Event": "push"})
    rejected_id = api.get("/api/v1/inbound").get_json()["data"][0]["id"]
    assert bad.status_code == 401
    assert api.post(f"/api/v1/inbound/{rejected_id}/reprocess").status_code == 409
    request_id = github_push(client)
    with app.app_context():
        assert claims.claim_inbound("someone", 1, lease_seconds=60) == [request_id]
        db.session.remove()
    busy = api.post(f"/api/v1/inbound/{request_id}/reprocess")
    assert busy.status_code == 409 and "right now" in busy.get_json()["error"]["message"]
    assert other_api.post(f"/api/v1/inbound/{request_id}/reprocess").status_code == 404
    assert api.post("/api/v1/inbound/999999/reprocess").status_code == 404


# -- leases ------------------------------------------------------------------------------


def test_claims_take_at_most_the_limit_and_never_the_same_request(api, client, app):
    api.source("gh", "github", secret=SECRET, routes=RELEASES_ONLY)
    ids = [github_push(client, {"n": n}) for n in range(3)]
    with app.app_context():
        first = claims.claim_inbound("a", 2, lease_seconds=60)
        second = claims.claim_inbound("b", 2, lease_seconds=60)
        db.session.remove()
    assert first == ids[:2] and second == ids[2:]


def test_concurrent_processors_handle_each_request_once(api, client, process_inbound, register):
    handled = []
    lock = threading.Lock()

    def collect(event):
        with lock:
            handled.append(event.id)

    name = register(collect, name="test.once")
    api.source("gh", "github", secret=SECRET, routes=[{"action": "handler", "handler": name}])
    ids = [github_push(client, {"n": n}) for n in range(30)]
    threads = [threading.Thread(target=process_inbound, kwargs={"owner": f"worker-{n}"}) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(handled) == sorted(ids)


def test_expired_lease_is_reclaimed_and_a_lost_lease_cannot_write(api, client, process_inbound, register, app):
    calls = []
    name = register(lambda event: calls.append(event.id), name="test.reclaimed")
    api.source("gh", "github", secret=SECRET, routes=[{"action": "handler", "handler": name}])
    request_id = github_push(client)
    with app.app_context():
        assert claims.claim_inbound("crashed", 1, lease_seconds=30) == [request_id]
        assert claims.reclaim_expired_inbound() == []  # the lease still runs
        assert claims.reclaim_expired_inbound(now=now_utc() + timedelta(seconds=31)) == [request_id]
        assert inbound.process(request_id, "crashed") is None  # it no longer holds the lease
        db.session.remove()
    assert process_inbound() == 1 and calls == [request_id]
    assert detail(api, request_id)["status"] == "processed"


# -- WEBHOOKS_HANDLERS ----------------------------------------------------------------------


def test_handlers_setting_imports_modules_at_start(database_url, tmp_path, monkeypatch):
    (tmp_path / "shop_hooks.py").write_text(
        "from webhooks import hooks\n\n@hooks.handler('github', 'push')\ndef on_push(event):\n    return event.id\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app = make_app(database_url, tmp_path, HANDLERS="shop_hooks, ")
        handler = hooks.get("shop_hooks.on_push")
        assert handler is not None and handler.accepts("github", "push") and not handler.accepts("github", "issues")
        with app.app_context():
            db.engine.dispose()
        with pytest.raises(RuntimeError, match="cannot import 'no_such_module'"):
            make_app(database_url, tmp_path, HANDLERS="no_such_module")
    finally:
        hooks.unregister("shop_hooks.on_push")
        sys.modules.pop("shop_hooks", None)


def test_handler_registration_rules(register):
    register(lambda event: None, name="test.taken")
    with pytest.raises(ValueError, match="registered already"):
        hooks.handler("github", name="test.taken")(lambda event: None)
    with pytest.raises(ValueError, match="unknown provider"):
        hooks.handler("githib", "push")
    with pytest.raises(ValueError, match="reserved"):
        hooks.handler("github", name="*")(lambda event: None)
