"""Tenants, users and roles (admins), API keys per tenant, and the audit log pages."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from conftest import Dashboard
from conftest import make_tenant
from webhooks.db import db
from webhooks.models import ApiKey
from webhooks.models import AuditEntry
from webhooks.models import Membership
from webhooks.models import Tenant
from webhooks.models import User


@pytest.fixture
def admin(dashboard):
    dashboard.login_as(dashboard.user("root", admin=True))
    return dashboard


@pytest.fixture
def editor(app, api):
    dashboard = Dashboard(app)
    dashboard.login_as(dashboard.user("eddie", roles={api.tenant_id: "editor"}))
    return dashboard


@pytest.fixture
def viewer(app, api):
    dashboard = Dashboard(app)
    dashboard.login_as(dashboard.user("vera", roles={api.tenant_id: "viewer"}))
    return dashboard


def shown_key(html: str) -> str:
    return re.search(r'id="new-key"[^>]*>(whk_[^<]+)<', html).group(1)


def test_admin_creates_a_tenant_and_sees_its_key_once(app, admin, client):
    response = admin.post("/admin/tenants", {"slug": "initech", "name": "Initech"})
    assert response.status_code == 201
    key = shown_key(response.text)
    assert client.get("/api/v1/endpoints", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert key not in admin.get("/admin/tenants").text
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "tenant.create"))
        assert entry.after == {"slug": "initech", "name": "Initech"} and key not in str(entry.after)


@pytest.mark.parametrize("slug, message", [("", "This field is required"), ("Bad Slug", "lowercase"), ("acme", "already exists")])
def test_tenant_form_errors(app, admin, api, slug, message):
    response = admin.post("/admin/tenants", {"slug": slug})
    assert response.status_code == 422
    assert message in re.search(r'id="slug-error">(.*?)</p>', response.text).group(1)
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Tenant)) == 1


def test_only_admins_manage_tenants_and_users(editor):
    for path in ("/admin/tenants", "/admin/users", "/admin/audit", "/admin/users/1"):
        assert editor.get(path).status_code == 403
    assert editor.post("/admin/tenants", {"slug": "evil"}).status_code == 403
    assert editor.post("/admin/users", {"username": "evil", "password": "long enough"}).status_code == 403
    assert "Tenants" not in editor.get("/t/acme/").text.split("<main")[0]


def test_admin_forms_need_csrf(app, admin):
    assert admin.post("/admin/tenants", {"slug": "initech"}, csrf=False).status_code == 400
    assert admin.post("/admin/users", {"username": "x", "password": "long enough"}, csrf=False).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(Tenant).where(Tenant.slug == "initech")) is None


def test_admin_creates_a_user_and_gives_roles(app, admin, api, other_api):
    response = admin.post("/admin/users", {"username": "newbie", "password": "long enough"})
    assert response.status_code == 302
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "newbie"))
    page = admin.get(f"/admin/users/{user_id}")
    assert page.status_code == 200 and 'name="role-1"' in page.text
    saved = admin.post(f"/admin/users/{user_id}", {f"role-{api.tenant_id}": "editor", f"role-{other_api.tenant_id}": "viewer"})
    assert saved.status_code == 302
    with app.app_context():
        roles = dict(db.session.execute(select(Membership.tenant_id, Membership.role).where(Membership.user_id == user_id)).all())
        assert roles == {api.tenant_id: "editor", other_api.tenant_id: "viewer"}
    admin.post(f"/admin/users/{user_id}", {f"role-{api.tenant_id}": "viewer", f"role-{other_api.tenant_id}": ""})
    with app.app_context():
        roles = dict(db.session.execute(select(Membership.tenant_id, Membership.role).where(Membership.user_id == user_id)).all())
        assert roles == {api.tenant_id: "viewer"}
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "user.update").order_by(AuditEntry.id)).all()
        assert entries[-1].before["roles"] == {"acme": "editor", "globex": "viewer"}
        assert entries[-1].after["roles"] == {"acme": "viewer"}
    # the new user can log in and sees only acme, read-only
    newbie = Dashboard(app)
    assert newbie.login("newbie", "long enough").status_code == 302
    assert newbie.get("/t/acme/").status_code == 200 and newbie.get("/t/globex/").status_code == 404


@pytest.mark.parametrize(
    "form, field, message",
    [
        ({"username": "", "password": "long enough"}, "username", "This field is required"),
        ({"username": "short", "password": "short"}, "password", "at least 8 characters"),
        ({"username": "root", "password": "long enough"}, "username", "exists already"),
    ],
)
def test_user_form_errors(admin, form, field, message):
    response = admin.post("/admin/users", form)
    assert response.status_code == 422
    assert message in re.search(rf'id="{field}-error">(.*?)</p>', response.text).group(1)


def test_admins_keep_their_own_admin_flag_and_account(app, admin):
    with app.app_context():
        me = db.session.scalar(select(User.id).where(User.username == "root"))
    admin.post(f"/admin/users/{me}", {})  # the admin box unticked
    assert admin.post(f"/admin/users/{me}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(User, me).is_admin


def test_delete_a_user(app, admin):
    other = admin.user("leaver")
    assert admin.post(f"/admin/users/{other}/delete").headers["Location"] == "/admin/users"
    with app.app_context():
        assert db.session.get(User, other) is None


def test_api_keys_are_shown_once_and_can_be_revoked(app, editor, client, api):
    response = editor.post("/t/acme/api-keys", {"name": "ci"})
    assert response.status_code == 201
    key = shown_key(response.text)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/endpoints", headers=headers).status_code == 200
    listing = editor.get("/t/acme/api-keys")
    assert key not in listing.text and key[:10] in listing.text
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.name == "ci"))
    assert editor.post(f"/t/acme/api-keys/{key_id}/revoke").status_code == 302
    assert client.get("/api/v1/endpoints", headers=headers).status_code == 401
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "api_key")))
        assert actions == ["api_key.create", "api_key.revoke"]
        assert key not in str(db.session.scalars(select(AuditEntry.after)).all())


def test_api_key_errors_and_access(app, editor, viewer, other_api):
    assert editor.post("/t/acme/api-keys", {"name": ""}).status_code == 422
    assert viewer.get("/t/acme/api-keys").status_code == 200
    assert "Create key" not in viewer.get("/t/acme/api-keys").text
    assert viewer.post("/t/acme/api-keys", {"name": "x"}).status_code == 403
    assert editor.post("/t/acme/api-keys", {"name": "x"}, csrf=False).status_code == 400
    with app.app_context():
        theirs = db.session.scalar(select(ApiKey.id).where(ApiKey.tenant_id == other_api.tenant_id))
    assert editor.post(f"/t/acme/api-keys/{theirs}/revoke").status_code == 404
    assert editor.get("/t/globex/api-keys").status_code == 404
    with app.app_context():
        assert db.session.get(ApiKey, theirs).revoked_at is None


def test_audit_pages(app, admin, editor, api, other_api):
    editor.post("/t/acme/api-keys", {"name": "ci"})
    make_tenant(app, "initech")
    admin.post("/admin/tenants", {"slug": "hooli"})
    tenant_log = editor.get("/t/acme/audit")
    assert tenant_log.status_code == 200
    assert "api_key.create" in tenant_log.text and "eddie" in tenant_log.text
    assert "tenant.create" not in tenant_log.text
    everything = admin.get("/admin/audit")
    assert "api_key.create" in everything.text and "tenant.create" in everything.text
    assert editor.get("/t/globex/audit").status_code == 404


def test_audit_log_pages_by_id(app, editor, api):
    from webhooks import audit

    with app.app_context():
        for number in range(55):
            audit.record(None, "test.entry", "thing", number, tenant_id=api.tenant_id, actor="script")
    first = editor.get("/t/acme/audit")
    assert first.text.count("test.entry") == 50
    older = re.search(r'href="\?before=(\d+)"', first.text).group(1)
    assert editor.get(f"/t/acme/audit?before={older}").text.count("test.entry") == 5
