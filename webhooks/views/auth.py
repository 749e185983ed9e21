"""Dashboard access: login and logout, and the checks every dashboard route runs.

Each dashboard blueprint calls :func:`guard`. Its routes then need a login;
every request that changes something must carry the session's CSRF token
(form field or ``X-CSRF-Token`` header); and ``<tenant>`` in the URL becomes
``g.tenant`` and ``g.role``, or a 404 when the user has no role there, so a
link to another tenant's object reveals nothing. Changes need the editor role
(admins have it everywhere); views that only compute a preview are marked
:func:`read_only` so viewers may post to them.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select

from webhooks import audit
from webhooks import auth
from webhooks import htmx
from webhooks import logins
from webhooks.db import db
from webhooks.forms import LoginForm
from webhooks.forms import PasswordForm
from webhooks.forms import csrf_token
from webhooks.forms import csrf_valid
from webhooks.models import Tenant
from webhooks.models import User

bp = Blueprint("auth", __name__)
# Globals rather than context: macros imported without context call them too.
bp.add_app_template_global(csrf_token, "csrf_token")

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
EDITING_ROLES = {"admin", "editor"}
CSRF_MESSAGE = "This form is out of date or did not come from this site (CSRF check failed). Reload the page and try again."


@bp.before_app_request
def load_user() -> None:
    """``g.user`` for every request: the logged-in user, or None."""
    user_id = session.get("user_id")
    user = db.session.get(User, user_id) if user_id is not None else None
    # A session from before the user's last password change is no longer a login.
    g.user = user if user is not None and session.get("password_token") == auth.session_token(user) else None


@bp.app_url_defaults
def add_tenant(endpoint: str, values: dict) -> None:
    # url_for("endpoints.index") inside a tenant's page stays in that tenant.
    if "tenant" not in values and g.get("tenant") is not None and current_app.url_map.is_endpoint_expecting(endpoint, "tenant"):
        values["tenant"] = g.tenant.slug




@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; five failures per username and address lock it for 15 minutes."""
    if g.user is not None:
        return redirect(url_for("dashboard.index"))
    form = LoginForm(request.form if request.method == "POST" else None)
    if request.method == "GET":
        return htmx.render("auth/login.html", form=form)
    if not form.validate():
        return htmx.render("auth/login.html", form=form, status=400 if form.csrf_token.errors else 422)
    username, address = form.username.data.strip(), request.remote_addr
    wait = logins.blocked_for(username, address)
    if wait is not None:
        minutes = max(round(wait.total_seconds() / 60), 1)
        form.form_errors.append(f"Too many failed logins for {username} from your address. Try again in {minutes} minute{'s' if minutes != 1 else ''}.")
        return htmx.render("auth/login.html", form=form, status=429)
    user = auth.check_login(username, form.password.data)
    if user is None:
        logins.note_failure(username, address)
        form.form_errors.append("Wrong username or password.")
        return htmx.render("auth/login.html", form=form, status=401)
    logins.clear(username, address)
    session.clear()  # a new CSRF seed too: nothing from before the login stays valid
    session["user_id"], session["password_token"] = user.id, auth.session_token(user)
    return redirect(local_path(request.args.get("next")) or url_for("dashboard.index"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    """The logged-in user's new password; every other session of theirs ends with the old one."""
    if g.user is None:
        return redirect(url_for("auth.login", next=request.path))
    form = PasswordForm(request.form if request.method == "POST" else None)
    if request.method == "GET":
        return htmx.render("auth/password.html", form=form)
    if not form.validate():
        return htmx.render("auth/password.html", form=form, status=400 if form.csrf_token.errors else 422)
    username, address = g.user.username, request.remote_addr
    if logins.blocked_for(username, address) is not None:
        form.form_errors.append("Too many wrong passwords from your address. Try again later.")
        return htmx.render("auth/password.html", form=form, status=429)
    if not auth.change_password(g.user, form.current_password.data, form.new_password.data):
        logins.note_failure(username, address)  # a stolen session must not be a way to guess the password
        form.current_password.errors = ["This is not your current password."]
        return htmx.render("auth/password.html", form=form, status=422)
    logins.clear(username, address)
    audit.record(g.user, "user.change_password", "user", g.user.id)
    session["password_token"] = auth.session_token(g.user)
    flash("Password changed. Your other sessions are logged out.")
    return redirect(url_for("dashboard.index"))


@bp.post("/logout")
def logout():
    """End the session; a POST with the CSRF token, so no other site can log anyone out."""
    if not csrf_valid(request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")):
        abort(400, CSRF_MESSAGE)
    session.clear()
    return redirect(url_for("auth.login"))


def local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site, so ``?next=`` cannot send anyone elsewhere."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def guard(blueprint: Blueprint) -> None:
    """Put every route of ``blueprint`` behind login, CSRF, tenant and role checks."""

    @blueprint.url_value_preprocessor
    def take_tenant(endpoint, values) -> None:
        # Only noted here: the login check comes first, so a stranger gets the
        # login page rather than learning from a 404 which tenants exist.
        g.tenant_slug = values.pop("tenant", None) if values else None
        g.tenant = None

    @blueprint.before_request
    def check_access():
        if g.user is None:
            return to_login()
        changing = request.method not in SAFE_METHODS
        if changing and not csrf_valid(request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")):
            abort(400, CSRF_MESSAGE)
        if g.tenant_slug is not None:
            enter_tenant(g.tenant_slug)
            if changing and not getattr(current_app.view_functions.get(request.endpoint), "read_only", False):
                require_editor()
        return None


def to_login():
    """Send a logged-out visitor to the login page, and back here afterwards."""
    target = request.full_path.rstrip("?") if request.method == "GET" and not htmx.is_htmx() else None
    url = url_for("auth.login", next=target)
    return htmx.client_redirect(url) if htmx.is_htmx() else redirect(url)


def enter_tenant(slug: str) -> None:
    """Set ``g.tenant`` and ``g.role``; 404 when the tenant is unknown or not the user's."""
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    role = auth.role_in(g.user, tenant.id) if tenant is not None else None
    if role is None:
        abort(404)
    g.tenant, g.role = tenant, role
    if session.get("tenant") != slug:
        session["tenant"] = slug  # where "/" takes this user next time


@bp.app_template_global()
def can_edit() -> bool:
    """True when the user may change things in the current tenant."""
    return g.get("tenant") is not None and g.get("role") in EDITING_ROLES


def require_editor() -> None:
    """403 unless the user may change things in the current tenant."""
    if not can_edit():
        abort(403, f"Your role in {g.tenant.name} is {g.role}: you can look, but not change anything.")


def editor_only(view):
    """For pages that are only a form to change something: viewers get 403 on GET too."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        require_editor()
        return view(*args, **kwargs)

    return wrapped


def read_only(view):
    """Mark a POST view that changes nothing (a preview): viewers may use it."""
    view.read_only = True
    return view


def admin_required(view):
    """Only admins: tenants, users and the global audit log."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not g.user.is_admin:
            abort(403, "Only admins can manage tenants and users.")
        return view(*args, **kwargs)

    return wrapped


@bp.app_template_global()
def visible_tenants(user: User | None = None) -> list[Tenant]:
    """The tenants ``user`` may open: every one for an admin, else their memberships."""
    user = user or g.get("user")
    if user is None:
        return []
    if user.is_admin:
        return list(db.session.scalars(select(Tenant).order_by(Tenant.name, Tenant.slug)))
    return sorted((m.tenant for m in user.memberships), key=lambda t: (t.name, t.slug))


def tenant_object(model, object_id: int):
    """The current tenant's ``model`` row with this id; 404 for unknown ids and other tenants' rows."""
    item = db.session.get(model, object_id)
    if item is None or item.tenant_id != g.tenant.id:
        abort(404)
    return item


def audited(action: str, object_type: str, object_id=None, *, before=None, after=None) -> None:
    """Write an audit entry for the current user, in the current tenant (if any)."""
    tenant = g.get("tenant")
    audit.record(g.user, action, object_type, object_id, tenant_id=tenant.id if tenant else None, before=before, after=after)
