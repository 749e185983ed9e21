"""The overview page: per-endpoint numbers over 24 hours, troubled endpoints first, the hourly chart."""

from __future__ import annotations

import re

import pytest
from werkzeug.wrappers import Response

from conftest import Dashboard
from webhooks.testing import Receiver


@pytest.fixture
def viewer(app, api):
    dashboard = Dashboard(app)
    dashboard.login_as(dashboard.user("vera", roles={api.tenant_id: "viewer"}))
    return dashboard


def test_overview_puts_failing_and_disabled_endpoints_first(app, viewer, api, receiver, drainer):
    healthy = api.endpoint(receiver.url, description="Healthy one")
    with Receiver(lambda request: Response("down", 500)) as broken:
        failing = api.endpoint(broken.url, description="Failing one", max_attempts=1)
        disabled = api.endpoint(receiver.url + "?off", description="Switched off")
        api.patch(f"/api/v1/endpoints/{disabled['id']}", json={"enabled": False})
        for _ in range(3):
            api.publish()
        drainer.drain()
    page = viewer.get("/t/acme/")
    assert page.status_code == 200
    order = [int(n) for n in re.findall(r'<a href="/t/acme/endpoints/(\d+)" class="url"', page.text)]
    assert order == [disabled["id"], failing["id"], healthy["id"]]
    text = " ".join(page.text.split())
    assert '<span class="badge badge-failed">failing</span>' in text
    assert '<span class="badge badge-disabled"' in text and '<span class="badge badge-succeeded">healthy</span>' in text
    assert "100.0 %" in text and "0.0 %" in text  # the healthy and the failing endpoint's success rates
    assert re.search(r"<svg[^>]*role=\"img\"", page.text) and "6 attempts, 3 failed" in text
    assert 'class="bar-failed"' in page.text
    assert "New endpoint" not in page.text  # a viewer


def test_overview_refreshes_as_a_fragment(viewer, api):
    page = viewer.get("/t/acme/")
    assert 'hx-get="/t/acme/" hx-trigger="every 10s"' in page.text
    fragment = viewer.get("/t/acme/", htmx=True)
    assert "<html" not in fragment.text and 'class="cards"' in fragment.text


def test_overview_of_an_empty_tenant(viewer, api):
    page = viewer.get("/t/acme/")
    assert "No endpoints yet." in page.text
    assert "0 attempts, 0 failed" in page.text
