"""Tenants and users (admins only), each tenant's API keys, and the global audit log."""

from __future__ import annotations

import click
from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import url_for
from sqlalchemy import select

from webhooks import audit
from webhooks import auth
from webhooks import cli
from webhooks import htmx
from webhooks.db import db
from webhooks.forms import ApiKeyForm
from webhooks.forms import TenantForm
from webhooks.forms import UserForm
from webhooks.models import ApiKey
from webhooks.models import Membership
from webhooks.models import Tenant
from webhooks.models import User
from webhooks.views.auth import admin_required
from webhooks.views.auth import audited
from webhooks.views.auth import guard
from webhooks.views.auth import tenant_object

bp = Blueprint("admin", __name__)
guard(bp)

NO_ROLE = ""


@bp.route("/admin/tenants", methods=["GET", "POST"])
@admin_required
def tenants():
    """Every tenant, and the form for a new one (its first API key shown once)."""
    form = TenantForm(request.form if request.method == "POST" else None)
    new_key = created = None
    status = 200
    if request.method == "POST":
        if form.validate():
            try:
                created, new_key = cli.create_tenant(form.slug.data, form.name.data or None)
            except click.ClickException as exc:
                form.slug.errors = [exc.message]
            else:
                audit.record(g.user, "tenant.create", "tenant", created.id, tenant_id=created.id, after={"slug": created.slug, "name": created.name})
                form = TenantForm()
        status = 422 if form.errors else 201
    items = db.session.scalars(select(Tenant).order_by(Tenant.slug))
    return htmx.render("admin/tenants.html", form=form, tenants=list(items), created=created, new_key=new_key, status=status)


@bp.route("/t/<tenant>/api-keys", methods=["GET", "POST"])
def api_keys():
    """A tenant's API keys; a new key is shown once, in the answer that made it."""
    form = ApiKeyForm(request.form if request.method == "POST" else None)
    new_key = None
    status = 200
    if request.method == "POST":
        if form.validate():
            key, new_key = auth.create_api_key(g.tenant, form.name.data.strip())
            db.session.commit()
            audited("api_key.create", "api_key", key.id, after={"name": key.name, "prefix": key.prefix})
            form = ApiKeyForm()
            status = 201
        else:
            status = 422
    keys = db.session.scalars(select(ApiKey).where(ApiKey.tenant_id == g.tenant.id).order_by(ApiKey.id.desc()))
    return htmx.render("admin/api_keys.html", form=form, keys=list(keys), new_key=new_key, status=status)


@bp.post("/t/<tenant>/api-keys/<int:key_id>/revoke")
def revoke_api_key(key_id: int):
    """Revoke a key; requests with it get 401 from now on."""
    key = tenant_object(ApiKey, key_id)
    auth.revoke_api_key(key)
    db.session.commit()
    audited("api_key.revoke", "api_key", key.id, before={"name": key.name, "prefix": key.prefix})
    flash(f"API key {key.name} ({key.prefix}…) revoked; requests with it get 401 from now on.")
    return redirect(url_for("admin.api_keys"))


@bp.route("/admin/users", methods=["GET", "POST"])
@admin_required
def users():
    """Every user with their access, and the form for a new one."""
    form = UserForm(request.form if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.validate():
            username = form.username.data.strip()
            if db.session.scalar(select(User).where(User.username == username)) is not None:
                form.username.errors = [f"a user {username!r} exists already"]
            else:
                try:
                    user = auth.create_user(username, form.password.data, is_admin=form.is_admin.data)
                except ValueError as exc:
                    form.password.errors = [str(exc)]
                else:
                    db.session.commit()
                    audited("user.create", "user", user.id, after={"username": user.username, "is_admin": user.is_admin})
                    flash(f"User {user.username} created. Give them roles below.")
                    return redirect(url_for("admin.user", user_id=user.id))
        status = 422
    items = db.session.scalars(select(User).order_by(User.username))
    return htmx.render("admin/users.html", form=form, users=list(items), status=status)


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@admin_required
def user(user_id: int):
    """One user's admin flag and role per tenant (none, viewer, editor)."""
    member = db.get_or_404(User, user_id)
    tenants_list = list(db.session.scalars(select(Tenant).order_by(Tenant.slug)))
    if request.method == "POST":
        before = _access(member)
        if member.id != g.user.id:  # nobody removes their own admin rights by accident
            member.is_admin = request.form.get("is_admin") == "1"
        for tenant in tenants_list:
            role = request.form.get(f"role-{tenant.id}", NO_ROLE)
            if role in auth.ROLES:
                auth.grant(member, tenant, role)
            elif role == NO_ROLE:
                _remove_membership(member, tenant)
        db.session.commit()
        db.session.refresh(member)
        audited("user.update", "user", member.id, before=before, after=_access(member))
        flash(f"Access of {member.username} saved.")
        return redirect(url_for("admin.user", user_id=member.id))
    roles = {m.tenant_id: m.role for m in member.memberships}
    return htmx.render("admin/user.html", member=member, tenants=tenants_list, roles=roles, role_names=auth.ROLES)


@bp.post("/admin/users/<int:user_id>/delete")
@admin_required
def delete_user(user_id: int):
    """Delete a user (not oneself)."""
    member = db.get_or_404(User, user_id)
    if member.id == g.user.id:
        flash("You cannot delete yourself.", "error")
        return redirect(url_for("admin.user", user_id=member.id))
    before = _access(member)
    db.session.delete(member)
    db.session.commit()
    audited("user.delete", "user", user_id, before=before)
    flash(f"User {before['username']} deleted.")
    return redirect(url_for("admin.users"))


@bp.get("/admin/audit")
@admin_required
def audit_log():
    """Every audit entry of every tenant, plus tenants and users."""
    entries, older = audit.page(None, before=request.args.get("before", type=int))
    tenant_names = {t.id: t.slug for t in db.session.scalars(select(Tenant))}
    return htmx.render(
        "admin/audit.html", "dashboard/_audit_rows.html", entries=entries, older=older, changes=audit.changes, tenant_names=tenant_names
    )


def _access(member: User) -> dict:
    return {
        "username": member.username,
        "is_admin": member.is_admin,
        "roles": {m.tenant.slug: m.role for m in sorted(member.memberships, key=lambda m: m.tenant_id)},
    }


def _remove_membership(member: User, tenant: Tenant) -> None:
    membership = db.session.scalar(select(Membership).where(Membership.user_id == member.id, Membership.tenant_id == tenant.id))
    if membership is not None:
        member.memberships.remove(membership)
