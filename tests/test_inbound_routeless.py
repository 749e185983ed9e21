"""Requests of sources without routes: finished as ``ignored`` when they arrive, or a batch at a
time when they wait (reprocessed, or their source lost its routes meanwhile), and recorded exactly
as the one-at-a-time path records an ignored request."""

from __future__ import annotations

import json
import threading

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

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


# A route whose condition these tests' pushes never meet: with it, requests wait for the processor.
RELEASES_ONLY = [{"when": 'event_type == "release"', "action": "publish", "event_type": "github.release"}]


def waiting_then_routeless(api, client, count: int) -> list[int]:
    """``count`` requests that wait for processing, and then their source loses its routes."""
    source = api.source("gh", "github", secret=SECRET, routes=RELEASES_ONLY)
    ids = [github_push(client, n) for n in range(count)]
    assert api.patch(f"/api/v1/sources/{source['id']}", json={"routes": []}).status_code == 200
    return ids


def test_routeless_requests_are_ignored_on_arrival_like_unmatched_ones(api, client, process_inbound):
    api.source("gh", "github", secret=SECRET)
    api.source("routed", "github", secret=SECRET, routes=RELEASES_ONLY)
    routeless = [github_push(client, n) for n in range(3)]
    unmatched = github_push(client, 9, path="/hooks/acme/routed")
    assert detail(api, unmatched)["status"] == "received"
    assert process_inbound() == 1, "only the routed source's request waits for the processor"
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


def test_waiting_requests_of_a_source_that_lost_its_routes_are_ignored_in_a_batch(api, client, process_inbound):
    ids = waiting_then_routeless(api, client, 3)
    assert [detail(api, request_id)["status"] for request_id in ids] == ["received"] * 3
    assert process_inbound() == 3
    for request_id in ids:
        stored = detail(api, request_id)
        assert stored["status"] == "ignored" and stored["attempts"] == 1
        assert [a["detail"] for a in stored["attempt_log"]] == ["no route matched event type push"]


def test_reprocessing_a_routeless_request_records_a_manual_attempt(api, client, process_inbound):
    api.source("gh", "github", secret=SECRET)
    request_id = github_push(client, 1, event="issues")
    assert process_inbound() == 0
    assert api.post(f"/api/v1/inbound/{request_id}/reprocess").status_code == 202
    assert process_inbound() == 1
    log = detail(api, request_id)["attempt_log"]
    assert [(a["number"], a["trigger"], a["outcome"]) for a in log] == [(1, "scheduled", "ignored"), (2, "manual", "ignored")]
    assert log[1]["detail"] == "no route matched event type issues"


def test_whether_a_source_has_routes_is_read_when_the_request_is_stored(api, client, app, process_inbound):
    """Not from the per-process source cache: another process's change applies to the next request."""
    calls = []
    hooks.handler("github", "push", name="test.routeless.late")(lambda event: calls.append(event.id))
    try:
        source = api.source("gh", "github", secret=SECRET)
        first = github_push(client, 1)  # fills this process's source cache, routes and all
        route = json.dumps([{"action": "handler", "handler": "test.routeless.late"}])
        with app.app_context():
            # As another process would: the row changes, this process's cache does not hear of it.
            db.session.execute(text("UPDATE sources SET routes = :routes WHERE id = :id"), {"routes": route, "id": source["id"]})
            db.session.commit()
            db.session.remove()
        second = github_push(client, 2)
        assert detail(api, second)["status"] == "received"
        assert process_inbound() == 1
    finally:
        hooks.unregister("test.routeless.late")
    assert calls == [second]
    assert detail(api, second)["status"] == "processed"
    assert detail(api, first)["status"] == "ignored", "a request finished on arrival stays finished until reprocessed"


def test_batches_respect_the_limit(api, client, app, monkeypatch):
    monkeypatch.setattr(inbound, "ROUTELESS_BATCH", 2)
    ids = waiting_then_routeless(api, client, 5)
    with app.app_context():
        assert inbound.process_due("w", limit=3) == 3
        assert inbound.process_due("w", limit=10) == 2
        db.session.remove()
    assert [detail(api, request_id)["status"] for request_id in ids] == ["ignored"] * 5


def test_concurrent_processors_ignore_each_request_once(api, client, app, process_inbound, monkeypatch):
    monkeypatch.setattr(inbound, "ROUTELESS_BATCH", 3)
    ids = waiting_then_routeless(api, client, 40)
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
    waiting_then_routeless(api, client, 5)
    with app.app_context():
        assert inbound.process_due("w") == 5
        db.session.remove()
    assert one_at_a_time == []


def test_requests_arriving_during_a_tick_wait_for_the_next(api, client, app):
    source = api.source("gh", "github", secret=SECRET, routes=RELEASES_ONLY)
    github_push(client, 1)
    with app.app_context():
        tick = db.session.scalar(select(func.max(InboundRequest.created_at)))
        late = github_push(client, 2)
        assert api.patch(f"/api/v1/sources/{source['id']}", json={"routes": []}).status_code == 200
        assert inbound.process_due("w", now=tick) == 1
        assert inbound.process_due("w") == 1
        db.session.remove()
    assert detail(api, late)["status"] == "ignored"
