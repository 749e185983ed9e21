"""Operations: ``/healthz``, ``/metrics`` and the one log line per attempt."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from werkzeug.wrappers import Response

from conftest import ENCRYPTION_KEY
from conftest import make_app
from webhooks import health
from webhooks import metrics
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Delivery
from webhooks.testing import Receiver

ROOT = Path(__file__).resolve().parent.parent


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one sample in Prometheus exposition text, or None."""
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    wanted = f"{name}{{{label_text}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return None


def test_healthz_needs_a_recent_heartbeat(app, client, drainer):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["database"]["ok"] is True
    assert body["scheduler"] == {"ok": False, "workers": 0, "last_beat_seconds_ago": None, "stale_after_seconds": 30.0}

    drainer.sweep()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["status"] == "ok" and body["scheduler"]["ok"] and body["scheduler"]["workers"] == 1
    assert 0 <= body["scheduler"]["last_beat_seconds_ago"] < 30


def test_healthz_fails_when_every_heartbeat_is_stale(app, client):
    with app.app_context():
        health.beat("gone-worker", now=now_utc() - timedelta(minutes=5))
    body = client.get("/healthz").get_json()
    assert body["scheduler"]["ok"] is False and body["scheduler"]["workers"] == 0
    assert body["scheduler"]["last_beat_seconds_ago"] >= 300


def test_healthz_reports_the_due_backlog(app, api, client, receiver):
    api.endpoint(receiver.url)
    api.post("/api/v1/events", json=[{"type": "a", "payload": {}} for _ in range(3)])
    backlog = client.get("/healthz").get_json()["backlog"]
    assert backlog["due"] == 3 and backlog["oldest_due_seconds"] >= 0


def test_healthz_and_metrics_when_the_database_is_gone(tmp_path):
    """503 JSON from /healthz; /metrics still serves this process's counters."""
    folder = tmp_path / "db"
    folder.mkdir()
    app = make_app(f"sqlite:///{folder / 'hub.sqlite'}", tmp_path)
    with app.app_context():
        db.engine.dispose()
    shutil.rmtree(folder)  # SQLite cannot even create a new file now
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["database"]["ok"] is False
    assert body["database"]["error"] == "the database did not answer", "no host names to anonymous callers"
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert sample(scraped.get_data(as_text=True), "webhooks_database_up") == 0
    assert "# TYPE webhooks_attempts_total counter" in scraped.get_data(as_text=True)


def test_api_answers_503_json_when_the_database_cannot_be_reached(tmp_path):
    """The failure comes at connection checkout, in the API key check before the view."""
    folder = tmp_path / "db"
    folder.mkdir()
    app = make_app(f"sqlite:///{folder / 'hub.sqlite'}", tmp_path)
    with app.app_context():
        db.engine.dispose()
    shutil.rmtree(folder)
    response = app.test_client().post(
        "/api/v1/events", json={"type": "a", "payload": {}}, headers={"Authorization": "Bearer whk_x"}
    )
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "unavailable"


def test_metrics_exposition(app, api, client, receiver, drainer):
    before = client.get("/metrics").get_data(as_text=True)
    api.endpoint(receiver.url)
    api.post("/api/v1/events", json=[{"type": "a", "payload": {}} for _ in range(2)])
    pending = client.get("/metrics").get_data(as_text=True)
    assert sample(pending, "webhooks_due_backlog") == 2
    assert sample(pending, "webhooks_deliveries", status="pending") == 2
    drainer.drain()
    metrics.observe_inbound(202)

    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert sample(text, "webhooks_database_up") == 1
    assert sample(text, "webhooks_deliveries", status="succeeded") == 2
    assert sample(text, "webhooks_due_backlog") == 0

    def grew(name, **labels):
        return (sample(text, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    assert grew("webhooks_attempts_total", outcome="succeeded") == 2
    assert grew("webhooks_attempt_duration_seconds_count") == 2
    assert grew("webhooks_inbound_requests_total", code="202") == 1


def test_metrics_add_up_every_process_sharing_the_multiprocess_folder(tmp_path):
    """gunicorn workers and ``flask worker`` of one host count into one /metrics."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "WEBHOOKS_SECRET_KEY": "test-secret",
        "WEBHOOKS_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite'}",
    }
    (tmp_path / "prometheus").mkdir()
    count = "from webhooks import metrics; metrics.observe_attempt('failed', 30); metrics.observe_inbound(401)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], cwd=ROOT, env=env, check=True, timeout=60)
    scrape = (
        "from app import create_app; app = create_app({'TESTING': True}); "
        "print(app.test_client().get('/metrics').get_data(as_text=True))"
    )
    text = subprocess.run(
        [sys.executable, "-c", scrape], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert sample(text, "webhooks_attempts_total", outcome="failed") == 2
    assert sample(text, "webhooks_inbound_requests_total", code="401") == 2
    assert sample(text, "webhooks_attempt_duration_seconds_count") == 2
    assert sample(text, "webhooks_database_up") == 1


def test_one_log_line_per_attempt(app, api, drainer, caplog):
    answers = iter([Response("nope", 503), Response("ok", 200)])
    with Receiver(lambda request: next(answers)) as receiver:
        endpoint = api.endpoint(receiver.url)
        event = api.publish("order.created", {"n": 1})
        with caplog.at_level(logging.INFO, logger="webhooks.delivery"):
            drainer.drain()
            with app.app_context():
                db.session.query(Delivery).update({"next_attempt_at": now_utc()})  # skip the backoff wait
                db.session.commit()
            drainer.drain()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("attempt ")]
    assert len(lines) == 2
    prefix = rf"attempt delivery=\d+ endpoint={endpoint['id']} event={event['webhook_id']}"
    first = r" number=1 trigger=scheduled status=503 outcome=pending duration_ms=\d+ error='HTTP 503'"
    assert re.fullmatch(prefix + first, lines[0]), lines[0]
    second = r" number=2 trigger=retry status=200 outcome=succeeded duration_ms=\d+"
    assert re.fullmatch(prefix + second, lines[1]), lines[1]
