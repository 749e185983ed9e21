"""Dashboard access: login, logout, session cookie, CSRF, throttling, tenants and roles."""

from __future__ import annotations

import re

import pytest

from conftest import Dashboard
from conftest import make_app
from conftest import make_tenant


@pytest.fixture
def acme(app):
    return make_tenant(app, "acme")[0]


@pytest.fixture
def globex(app):
    return make_tenant(app, "globex")[0]


def login_token(dashboard) -> str:
    page = dashboard.client.get("/login")
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)


def test_login_lands_on_the_users_tenant_with_a_safe_cookie(dashboard, acme):
    dashboard.user("ada", roles={acme: "editor"})
    response = dashboard.login("ada")
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    overview = dashboard.client.get("/", follow_redirects=True)
    assert overview.request.path == "/t/acme/"
    assert "acme" in overview.text and "ada" in overview.text


def test_session_cookie_is_secure_when_configured(app, database_url, tmp_path):
    # Its own app on the same database; the ``app`` fixture cleans the database up after.
    secure = make_app(database_url, tmp_path / "secure", SESSION_COOKIE_SECURE="on")
    dashboard = Dashboard(secure)
    dashboard.user("ada", admin=True)
    response = dashboard.login("ada")
    assert "Secure" in response.headers["Set-Cookie"]
    with secure.app_context():
        from webhooks.db import db

        db.engine.dispose()


def test_wrong_password_says_so_beside_the_form(dashboard, acme):
    dashboard.user("ada", roles={acme: "viewer"})
    response = dashboard.login("ada", "not the password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert dashboard.client.get("/t/acme/").status_code == 302  # still logged out


def test_login_without_csrf_token_is_refused(dashboard, acme):
    dashboard.user("ada", roles={acme: "viewer"})
    dashboard.client.get("/login")
    response = dashboard.client.post("/login", data={"username": "ada", "password": dashboard.PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.text
    assert dashboard.client.get("/t/acme/").status_code == 302


def test_forged_csrf_token_without_a_session_is_refused(dashboard):
    response = dashboard.client.post("/login", data={"username": "a", "password": "b", "csrf_token": "20990101000000##abc"})
    assert response.status_code == 400


def test_five_failures_lock_the_username_from_that_address(dashboard, acme):
    dashboard.user("ada", roles={acme: "viewer"})
    for _ in range(5):
        assert dashboard.login("ada", "guess").status_code == 401
    locked = dashboard.login("ada")  # even the right password
    assert locked.status_code == 429
    assert "Too many failed logins for ada" in locked.text
    assert "Try again in 15 minutes" in locked.text
    other_address = dashboard.client.post(
        "/login",
        data={"username": "ada", "password": dashboard.PASSWORD, "csrf_token": login_token(dashboard)},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert other_address.status_code == 302


def test_a_success_forgets_earlier_failures(app, dashboard, acme):
    from webhooks.db import db
    from webhooks.models import LoginFailure

    dashboard.user("ada", roles={acme: "viewer"})
    for _ in range(4):
        dashboard.login("ada", "guess")
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(LoginFailure)) == 4
    assert dashboard.login("ada").status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(LoginFailure)) == 0


@pytest.mark.parametrize("path", ["/", "/t/acme/", "/t/acme/endpoints/", "/t/acme/deliveries/", "/admin/users", "/t/acme/audit"])
def test_logged_out_visitors_go_to_the_login_and_come_back(dashboard, acme, path):
    response = dashboard.client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    dashboard.user("ada", admin=True)
    token = login_token(dashboard)
    back = dashboard.client.post(response.headers["Location"], data={"username": "ada", "password": dashboard.PASSWORD, "csrf_token": token})
    assert back.headers["Location"] == path


def test_logged_out_htmx_requests_redirect_the_whole_page(dashboard, acme):
    response = dashboard.client.get("/t/acme/deliveries/1/row", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"].startswith("/login")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_next_never_leaves_the_site(dashboard, acme, target):
    dashboard.user("ada", roles={acme: "viewer"})
    token = login_token(dashboard)
    response = dashboard.client.post(
        "/login", query_string={"next": target}, data={"username": "ada", "password": dashboard.PASSWORD, "csrf_token": token}
    )
    assert response.headers["Location"] == "/"


def test_logout_needs_the_csrf_token(dashboard, acme):
    user = dashboard.user("ada", roles={acme: "viewer"})
    dashboard.login_as(user)
    assert dashboard.client.post("/logout").status_code == 400
    assert dashboard.client.get("/t/acme/").status_code == 200
    response = dashboard.client.post("/logout", data={"csrf_token": dashboard.token})
    assert response.headers["Location"] == "/login"
    assert dashboard.client.get("/t/acme/").status_code == 302


def test_other_tenants_do_not_exist_for_a_member(dashboard, acme, globex):
    dashboard.login_as(dashboard.user("ada", roles={acme: "editor"}))
    assert dashboard.get("/t/acme/").status_code == 200
    assert dashboard.get("/t/globex/").status_code == 404
    assert dashboard.get("/t/globex/endpoints/").status_code == 404
    assert dashboard.get("/t/nowhere/").status_code == 404
    assert dashboard.get("/switch?tenant=globex").status_code == 404
    page = dashboard.get("/t/acme/")
    assert 'value="globex"' not in page.text  # not in the switcher either


def test_admins_see_and_switch_between_every_tenant(dashboard, acme, globex):
    dashboard.login_as(dashboard.user("root", admin=True))
    page = dashboard.get("/t/acme/endpoints/")
    assert 'value="acme"' in page.text and 'value="globex"' in page.text
    response = dashboard.get("/switch?tenant=globex&section=endpoints.index")
    assert response.headers["Location"] == "/t/globex/endpoints/"
    assert dashboard.get("/switch?tenant=globex&section=auth.logout").headers["Location"] == "/t/globex/"
    # "/" returns to the tenant looked at last
    assert dashboard.get("/t/globex/").status_code == 200
    assert dashboard.get("/").headers["Location"] == "/t/globex/"


def test_a_user_without_tenants_is_told_so(dashboard):
    dashboard.login_as(dashboard.user("lonely"))
    page = dashboard.get("/")
    assert page.status_code == 200
    assert "You have no role in any tenant" in page.text


def test_viewers_change_nothing(dashboard, acme):
    dashboard.login_as(dashboard.user("vera", roles={acme: "viewer"}))
    page = dashboard.get("/t/acme/endpoints/")
    assert "New endpoint" not in page.text
    assert dashboard.get("/t/acme/endpoints/new").status_code == 403
    refused = dashboard.post("/t/acme/endpoints/new", {"url": "https://example.com/hook"})
    assert refused.status_code == 403
    assert "you can look, but not change anything" in refused.text


def test_htmx_posts_carry_the_token_in_a_header(dashboard, acme):
    dashboard.login_as(dashboard.user("ada", roles={acme: "editor"}))
    page = dashboard.get("/t/acme/")
    assert re.search(r"<body hx-headers='\{\"X-CSRF-Token\": \"[^\"]+\"\}'>", page.text)
    assert dashboard.post("/t/acme/templates/preview", {"body": "{}"}, htmx=True).status_code == 200
    assert dashboard.post("/t/acme/templates/preview", {"body": "{}"}, htmx=True, csrf=False).status_code == 400
    forged = dashboard.client.post(
        "/t/acme/templates/preview", data={"body": "{}"}, headers={"HX-Request": "true", "X-CSRF-Token": "20990101000000##00"}
    )
    assert forged.status_code == 400


def test_pages_answer_with_vary_on_hx_request(dashboard, acme):
    dashboard.login_as(dashboard.user("ada", roles={acme: "viewer"}))
    assert "HX-Request" in dashboard.get("/t/acme/").headers["Vary"]


def test_the_json_api_needs_no_session_and_no_csrf(app, dashboard, acme):
    _, key = make_tenant(app, "initech")
    dashboard.login_as(dashboard.user("ada", admin=True))
    response = dashboard.client.post(
        "/api/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201
