"""The dashboard in a real browser: Debian's Chromium driven by Playwright against
the real app (scheduler on, a SQLite file, a loopback receiver).

The scenario follows an integration admin: log in, add an endpoint, watch an
event get delivered, break the receiver and watch the retries, redeliver, then
edit a filter and a template and see their live previews. Screenshots of the
main pages land in docs/screenshots/ for the README.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from conftest import Dashboard
from conftest import make_app
from conftest import make_tenant
from webhooks.testing import Receiver

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TIMEOUT = 20_000  # ms; every wait is on a condition, this only bounds it

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]


class Switchboard:
    """What the loopback receiver answers; ``hold`` keeps a request in flight until released."""

    def __init__(self) -> None:
        self.status = 200
        self.released = threading.Event()
        self.released.set()

    def respond(self, request):
        self.released.wait(30)
        if self.status == 200:
            return Response('{"received": true}', 200, content_type="application/json")
        return Response('{"error": "database is down"}', self.status, content_type="application/json")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The real app on a loopback port, sweeping every 0.2 s; yields (base URL, app, API key)."""
    from webhooks import scheduler

    tmp_path = tmp_path_factory.mktemp("hub")
    app = make_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path, TESTING=False, SWEEP_INTERVAL=0.2)
    assert "webhooks.scheduler" in app.extensions  # create_app started it
    _, key = make_tenant(app, "acme")
    make_tenant(app, "globex")
    Dashboard(app).user("ada", admin=True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    seed_a_day_of_traffic(base, app, key)
    yield base, app, key
    server.shutdown()
    server.server_close()
    scheduler.stop(app, timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, hub):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm and data-confirm
    yield page
    context.close()


@pytest.fixture(scope="module")
def switchboard():
    board = Switchboard()
    with Receiver(board.respond) as receiver:
        board.url = receiver.url
        board.receiver = receiver
        yield board
        board.released.set()


def log_in(page, base: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Username", exact=True).fill("ada")
    page.get_by_label("Password", exact=True).fill(Dashboard.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/t/acme/$"))


def publish(base: str, key: str, payload: dict, event_type: str = "order.created") -> dict:
    response = requests.post(
        base + "/api/v1/events", json={"type": event_type, "payload": payload}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()


def seed_a_day_of_traffic(base: str, app, key: str) -> None:
    """An endpoint with 24 hours of finished deliveries (and an outage), written
    straight into the tables, oldest first as the hub would have, so the
    overview's chart and the history have something to show."""
    from datetime import timedelta

    from webhooks.db import db
    from webhooks.db import now_utc
    from webhooks.models import Attempt
    from webhooks.models import Delivery
    from webhooks.models import Event
    from webhooks.models import Tenant

    endpoint = requests.post(
        base + "/api/v1/endpoints",
        json={"url": "http://127.0.0.1:9/warehouse", "description": "Analytics warehouse", "event_types": ["invoice.*"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    now = now_utc()
    with app.app_context():
        tenant_id = db.session.scalar(select(Tenant.id).where(Tenant.slug == "acme"))
        for hours_ago in range(23, 0, -1):
            for number in range(8 + (hours_ago * 7) % 11):
                at = now - timedelta(hours=hours_ago) + timedelta(minutes=number * 3)
                failed = 15 <= hours_ago <= 17 and number % 3 != 0
                event = Event(tenant_id=tenant_id, type="invoice.paid", payload={"invoice": number}, created_at=at)
                db.session.add(event)
                db.session.flush()
                delivery = Delivery(
                    tenant_id=tenant_id, event_id=event.id, endpoint_id=endpoint["id"], event_type="invoice.paid",
                    status="failed" if failed else "succeeded", attempts=1, next_attempt_at=None,
                    last_status_code=503 if failed else 200, created_at=at, updated_at=at,
                )
                db.session.add(delivery)
                db.session.flush()
                db.session.add(
                    Attempt(
                        delivery_id=delivery.id, number=1, trigger="scheduled", request_url=endpoint["url"], request_headers={},
                        request_body="{}", response_status=503 if failed else 200, response_headers={}, response_body="",
                        duration_ms=40 + (number * 37) % 400, started_at=at,
                    )
                )
        db.session.commit()


def shoot(page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def test_deliver_retry_redeliver_and_edit_filters_and_templates(page, hub, switchboard):
    from playwright.sync_api import expect

    base, app, key = hub
    requests.post(
        base + "/api/v1/event-types",
        json={"name": "order.created", "description": "A customer placed an order", "sample": {"order": {"id": 42, "total": 250, "customer": {"tags": ["vip"]}}}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).raise_for_status()
    log_in(page, base)

    # An endpoint, made through the form; its secret is shown once.
    page.get_by_role("link", name="Endpoints", exact=True).click()
    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label("URL", exact=True).fill(switchboard.url)
    page.get_by_label("Description", exact=True).fill("ERP order sync")
    page.get_by_label("Event types", exact=True).fill("order.*")
    page.get_by_label("Max attempts", exact=True).fill("4")
    page.get_by_label("Backoff base (seconds)", exact=True).fill("1")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.locator("#new-secret")).to_have_value(re.compile(r"^whsec_"))
    endpoint_url = page.url  # the create answer stays on the form's URL; find the endpoint's own page
    endpoint_id = re.search(r"Endpoints</a> / #(\d+)", page.content()).group(1)
    assert endpoint_url.endswith("/endpoints/new")

    # Published through the API while the history is open: the row appears and turns
    # "succeeded" without a reload (the marker on window survives only without one).
    page.goto(f"{base}/t/acme/deliveries/")
    page.evaluate("window.stillTheSamePage = true")
    switchboard.released.clear()  # the receiver holds the request: the row is caught in flight
    first = publish(base, key, {"order": {"id": 1, "total": 120, "customer": {"tags": ["vip"]}}})
    row = page.locator("tr", has_text=first["webhook_id"])
    expect(row.locator(".status-cell")).to_contain_text(re.compile("pending|delivering"))
    switchboard.released.set()
    expect(row.locator(".status-cell")).to_have_text(re.compile(r"^\s*succeeded\s*$"))
    assert page.evaluate("window.stillTheSamePage") is True
    assert switchboard.receiver.requests[-1].headers["Webhook-Id"] == first["webhook_id"]

    # The receiver breaks: retries appear in the row on their own.
    switchboard.status = 500
    second = publish(base, key, {"order": {"id": 2, "total": 80}})
    broken = page.locator("tr", has_text=second["webhook_id"])
    expect(broken.locator(".attempts")).to_have_text("2", timeout=TIMEOUT)
    expect(broken.locator(".status-cell")).to_contain_text("pending")
    expect(broken).to_contain_text("HTTP 500")
    assert page.evaluate("window.stillTheSamePage") is True
    shoot(page, "deliveries", full_page=False)

    # Fixed again: one click on Redeliver, and the row turns succeeded.
    switchboard.status = 200
    broken.get_by_role("button", name="Redeliver").click()
    expect(broken.locator(".status-cell")).to_have_text(re.compile(r"^\s*succeeded\s*$"))
    attempts = int(broken.locator(".attempts").inner_text())
    assert attempts >= 3

    # The delivery's page: every attempt with request and response, and curl.
    broken.locator("td").first.get_by_role("link").click()
    expect(page.locator(".timeline > li")).to_have_count(attempts)
    expect(page.locator(".timeline > li").first).to_contain_text("200")
    expect(page.locator(".timeline > li").last).to_contain_text("500")
    expect(page.locator("#curl-1")).to_have_value(re.compile(r"^curl -X POST "))
    shoot(page, "delivery-detail")

    # The filter editor: rows added and reordered without a reload, the result live.
    page.goto(f"{base}/t/acme/endpoints/{endpoint_id}/filter")
    result = page.locator("#filter-result")
    page.get_by_role("button", name="Add rule").click()
    page.locator("#rule-0").fill("order.total > 1000")
    expect(result).to_contain_text("no match")
    expect(result).to_contain_text(re.compile(r"Of the last 2 events of\s+order\.\*,\s+0 would match"))
    page.get_by_role("button", name="Add rule").click()
    page.locator("#rule-1").fill('"vip" in order.customer.tags')
    page.get_by_label("Match", exact=True).select_option("any")
    expect(result).to_contain_text("matches")
    expect(result).to_contain_text(re.compile(r"Of the last 2 events of\s+order\.\*,\s+1 would match"))
    page.get_by_role("button", name="Move rule up").nth(1).click()
    expect(page.locator("#rule-0")).to_have_value('"vip" in order.customer.tags')
    expect(page.locator("#rule-1")).to_have_value("order.total > 1000")
    page.get_by_role("button", name="Add rule").click()
    page.locator("#rule-2").fill("order.total >")
    expect(result).to_contain_text("expected")  # the syntax error, with its column
    page.get_by_role("button", name="Remove rule").nth(2).click()
    expect(page.locator(".rule-row")).to_have_count(2)
    expect(result).not_to_contain_text("expected")
    shoot(page, "filter-editor")
    page.get_by_role("button", name="Save filter").click()
    expect(page.locator(".flash-ok")).to_have_text("Filter saved.")
    expect(page.locator("#rule-0")).to_have_value('"vip" in order.customer.tags')

    # The template editor: the preview follows the typing; errors carry their line.
    page.get_by_role("link", name="Templates", exact=True).click()
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Name", exact=True).fill("ERP order")
    page.get_by_label("Event type", exact=True).fill("order.created")
    page.get_by_label("Event type", exact=True).dispatch_event("change")
    expect(page.locator("#payload")).to_have_value(re.compile(r'"total": 250'))
    body = page.get_by_label("Template", exact=True)
    body.fill("")
    body.press_sequentially('{\n"order": {{ order.id | tojson }},\n"total": {{ order.total | nosuchfilter }}\n}')
    preview = page.locator("#preview")
    expect(preview).to_contain_text("line 3")
    expect(preview.locator(".error-line")).to_contain_text("nosuchfilter")
    body.fill("")
    body.press_sequentially('{\n  "order": {{ order.id | tojson }},\n  "total": {{ order.total }},\n  "vip": {{ ("vip" in order.customer.tags) | tojson }}\n}')
    expect(preview).to_contain_text("valid JSON")
    expect(preview.locator(".preview-output")).to_contain_text('"total": 250')
    expect(preview.locator(".preview-output")).to_contain_text('"vip": true')
    shoot(page, "template-editor")
    page.get_by_role("button", name="Create template").click()
    expect(page.locator(".flash-ok")).to_contain_text("Template ERP order created.")

    # The overview, the endpoint list and the endpoint's page, with this traffic and the seeded day.
    page.goto(f"{base}/t/acme/")
    expect(page.locator(".cards")).to_contain_text("Succeeded")
    shoot(page, "overview")
    page.goto(f"{base}/t/acme/endpoints/")
    shoot(page, "endpoints")
    page.goto(f"{base}/t/acme/endpoints/{endpoint_id}")
    expect(page.locator("#recent-deliveries")).to_contain_text("succeeded")
    shoot(page, "endpoint-detail")


def test_rotate_secret_and_send_a_test_event(page, hub, switchboard):
    from playwright.sync_api import expect

    base, app, key = hub
    created = requests.post(
        base + "/api/v1/endpoints", json={"url": switchboard.url, "description": "Rotation"}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    log_in(page, base)
    page.goto(f"{base}/t/acme/endpoints/{created['id']}")
    page.evaluate("window.stillTheSamePage = true")
    page.get_by_role("button", name="Rotate secret").click()
    secret = page.locator("#new-secret")
    expect(secret).to_have_value(re.compile(r"^whsec_"))
    assert secret.input_value() != created["secret"]
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#test-result")).to_contain_text("queued")
    expect(page.locator("#recent-deliveries")).to_contain_text("webhook.test")
    assert page.evaluate("window.stillTheSamePage") is True


def test_inbound_source_and_request_log(page, hub):
    from playwright.sync_api import expect

    from webhooks import providers

    base, app, key = hub
    log_in(page, base)
    page.get_by_role("link", name="Inbound", exact=True).click()
    page.get_by_role("link", name="New source").click()
    page.get_by_label("Slug", exact=True).fill("github")
    page.get_by_label("Name", exact=True).fill("Our GitHub org")
    page.get_by_label("Provider preset", exact=True).select_option("github")
    page.get_by_label("Routes (JSON)", exact=True).fill('[{"action": "publish", "event_type": "github.{event_type}"}]')
    page.get_by_role("button", name="Create source").click()
    secret = page.locator("#new-secret-1").input_value()
    hook_url = page.locator("#hook-url").input_value()
    assert hook_url == f"{base}/hooks/acme/github"

    page.get_by_role("link", name="Request log").first.click()
    page.evaluate("window.stillTheSamePage = true")
    body = b'{"ref": "refs/heads/main", "pusher": {"name": "ada"}}'
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", **providers.sign("github", secret, body)}
    assert requests.post(hook_url, data=body, headers=headers, timeout=10).status_code == 202
    forged = {**headers, "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert requests.post(hook_url, data=body, headers=forged, timeout=10).status_code == 401
    page.reload()  # the log has no live "new rows" feed; the accepted row then updates itself
    expect(page.locator("#request-1 .status-cell")).to_have_text(re.compile(r"^\s*processed\s*$"))
    expect(page.locator("#request-2")).to_contain_text("rejected")
    shoot(page, "inbound-requests")
    page.get_by_role("link", name="1", exact=True).click()
    expect(page.locator("#request-live")).to_contain_text("github.push")
    shoot(page, "inbound-request")
    page.get_by_role("link", name="Inbound", exact=True).click()
    expect(page.locator("main")).to_contain_text("Our GitHub org")
    shoot(page, "inbound-sources")


def test_a_viewer_gets_no_edit_controls(browser, hub):
    from playwright.sync_api import expect

    base, app, key = hub
    with app.app_context():
        from webhooks.db import db
        from webhooks.models import Tenant

        acme = db.session.scalar(select(Tenant.id).where(Tenant.slug == "acme"))
    Dashboard(app).user("vic", roles={acme: "viewer"})
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(base + "/login")
    page.get_by_label("Username", exact=True).fill("vic")
    page.get_by_label("Password", exact=True).fill(Dashboard.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".who")).to_contain_text("viewer")
    page.goto(base + "/t/acme/deliveries/")
    expect(page.get_by_role("button", name="Redeliver")).to_have_count(0)
    page.goto(base + "/t/acme/endpoints/")
    expect(page.get_by_role("link", name="New endpoint")).to_have_count(0)
    shoot(page, "endpoints-phone", full_page=False)
    context.close()
