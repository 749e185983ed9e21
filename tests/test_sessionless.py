"""Hook and API URLs run without the dashboard's session: no cookie is read or written
there, and a logged-in browser posting to one keeps its login."""

from __future__ import annotations


def test_hook_answers_carry_no_session_cookie_and_no_vary(api, client):
    api.source("gh", "github", secret="gh-secret-0123456789abcdef")
    response = client.post("/hooks/acme/gh", json={}, headers={"X-GitHub-Event": "push"})
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers, "a JSON answer depends on neither the cookie nor HX-Request"


def test_a_logged_in_browser_keeps_its_session_across_a_hook_post(editor):
    assert editor.get("/t/acme/").status_code == 200
    response = editor.client.post("/hooks/acme/nothing", json={})
    assert response.status_code == 404
    assert "Set-Cookie" not in response.headers
    page = editor.get("/t/acme/")
    assert page.status_code == 200 and "HX-Request" in page.headers["Vary"]


def test_api_answers_carry_no_session_cookie_and_ignore_a_login(api, editor):
    published = api.post("/api/v1/events", json={"type": "order.created", "payload": {}})
    assert published.status_code == 202 and "Set-Cookie" not in published.headers
    logged_in = editor.client.get("/api/v1/endpoints")  # a dashboard login is no API credential
    assert logged_in.status_code == 401 and "Set-Cookie" not in logged_in.headers
