"""Requests of sources without routes: finished as ``ignored`` a batch at a time, recorded
exactly as the one-at-a-time path records an ignored request."""

from __future__ import annotations

import json
import threading

from sqlalchemy import func
from sqlalchemy import select

from webhooks import hooks
from webhooks import inbound
from webhooks import providers
from webhooks.db import db
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest

SECRET = "gh-secret-0123456789abcdef"


def github_push(client, n: int, *, path: str = "/hooks/acme/gh", event: str = "push") -> int:
    """A signed GitHub delivery; returns the inbound request id."""
    body = json.dumps({"ref": "refs/heads/main", "n": n}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": f"{path}-{n}",
        **providers.sign("github", SECRET, body),
    }
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def detail(api, request_id: int) -> dict:
    return api.get(f"/api/v1/inbound/{request_id}").get_json()


def without_time(attempts: list[dict]) -> list[dict]:
    return [{name: value for name, value in attempt.items() if name != "started_at"} for attempt in attempts]


def test_routeless_requests_are_ignored_like_unmatched_ones(api, client, process_inbound):
    api.source("gh", "github", secret=SECRET)
    release = {"when": 'event_type == "release"', "action": "publish", "event_type": "github.release"}
    api.source("routed", "github", secret=SECRET, routes=[release])
    routeless = [github_push(client, n) for n in range(3)]
    unmatched = github_push(client, 9, path="/hooks/acme/routed")
    assert process_inbound() == 4
    expected = detail(api, unmatched)
    assert expected["status"] == "ignored"
    for request_id in routeless:
        stored = detail(api, request_id)
        assert stored["status"] == "ignored"
        assert stored["processed_at"] is not None and stored["error"] is None
        assert stored["attempts"] == 1
        assert without_time(stored["attempt_log"]) == without_time(expected["attempt_log"])
        assert stored["attempt_log"][0]["started_at"] is not None
    assert process_inbound() == 0, "nothing is processed twice"


def test_reprocessing_a_routeless_request_records_a_manual_attempt(api, client, process_inbound):
    api.source("gh", "github", secret=SECRET)
    request_id = github_push(client, 1, event="issues")
    process_inbound()
    assert api.post(f"/api/v1/inbound/{request_id}/reprocess").status_code == 202
    assert process_inbound() == 1
    log = detail(api, request_id)["attempt_log"]
    assert [(a["number"], a["trigger"], a["outcome"]) for a in log] == [(1, "scheduled", "ignored"), (2, "manual", "ignored")]
    assert log[1]["detail"] == "no route matched event type issues"


def test_routes_added_later_run_for_requests_still_waiting(api, client, process_inbound):
    calls = []
    hooks.handler("github", "push", name="test.routeless.late")(lambda event: calls.append(event.id))
    try:
        source = api.source("gh", "github", secret=SECRET)
        request_id = github_push(client, 1)
        route = {"action": "handler", "handler": "test.routeless.late"}
        assert api.patch(f"/api/v1/sources/{source['id']}", json={"routes": [route]}).status_code == 200
        assert process_inbound() == 1
    finally:
        hooks.unregister("test.routeless.late")
    assert calls == [request_id]
    assert detail(api, request_id)["status"] == "processed"


def test_batches_respect_the_limit(api, client, app, monkeypatch):
    monkeypatch.setattr(inbound, "ROUTELESS_BATCH", 2)
    api.source("gh", "github", secret=SECRET)
    ids = [github_push(client, n) for n in range(5)]
    with app.app_context():
        assert inbound.process_due("w", limit=3) == 3
        assert inbound.process_due("w", limit=10) == 2
        db.session.remove()
    assert [detail(api, request_id)["status"] for request_id in ids] == ["ignored"] * 5


def test_concurrent_processors_ignore_each_request_once(api, client, app, process_inbound, monkeypatch):
    monkeypatch.setattr(inbound, "ROUTELESS_BATCH", 3)
    api.source("gh", "github", secret=SECRET)
    ids = [github_push(client, n) for n in range(40)]
    counts = []
    threads = [
        threading.Thread(target=lambda n=n: counts.append(process_inbound(owner=f"worker-{n}"))) for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == len(ids)
    with app.app_context():
        per_request = db.session.execute(
            select(InboundAttempt.request_id, func.count()).group_by(InboundAttempt.request_id)
        ).all()
        db.session.remove()
    assert sorted(per_request) == [(request_id, 1) for request_id in ids]


def test_routeless_requests_skip_the_one_at_a_time_path(api, client, app, monkeypatch):
    one_at_a_time = []
    monkeypatch.setattr(inbound, "process", lambda request_id, owner, now=None: one_at_a_time.append(request_id))
    monkeypatch.setattr(inbound, "ROUTELESS_BATCH", 2)
    api.source("gh", "github", secret=SECRET)
    for n in range(5):
        github_push(client, n)
    with app.app_context():
        assert inbound.process_due("w") == 5
        db.session.remove()
    assert one_at_a_time == []


def test_requests_arriving_during_a_tick_wait_for_the_next(api, client, app):
    api.source("gh", "github", secret=SECRET)
    github_push(client, 1)
    with app.app_context():
        tick = db.session.scalar(select(func.max(InboundRequest.created_at)))
        late = github_push(client, 2)
        assert inbound.process_due("w", now=tick) == 1
        assert inbound.process_due("w") == 1
        db.session.remove()
    assert detail(api, late)["status"] == "ignored"
