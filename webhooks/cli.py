"""``flask --app app ...`` commands: tenants, users, the worker, schema and secrets."""

from __future__ import annotations

import gc
import re
import secrets
import signal
import threading
from pathlib import Path

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from webhooks import auth
from webhooks import scheduler
from webhooks.db import db
from webhooks.db import upgrade_schema
from webhooks.models import Endpoint
from webhooks.models import Source
from webhooks.models import TENANT_SLUG
from webhooks.models import Tenant
from webhooks.models import User

tenants = AppGroup("tenants", help="Create and list tenants.")
users = AppGroup("users", help="Create dashboard users.")
secrets_group = AppGroup("secrets", help="Encryption of stored secrets.")


def create_tenant(slug: str, name: str | None = None) -> tuple[Tenant, str]:
    """Create a tenant with one API key; return the tenant and the plain key (shown once)."""
    if db.session.scalar(select(Tenant).where(Tenant.slug == slug)):
        raise click.ClickException(f"a tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name or slug)
    db.session.add(tenant)
    _, plain = auth.create_api_key(tenant)
    db.session.commit()
    return tenant, plain


@tenants.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (defaults to the slug).")
def tenants_create(slug: str, name: str | None) -> None:
    """Create tenant SLUG and print its API key once."""
    _check_slug(slug)
    tenant, plain = create_tenant(slug, name)
    click.echo(f"tenant {tenant.slug} (id {tenant.id}) created")
    click.echo(f"API key (shown once, store it now): {plain}")


@tenants.command("list")
def tenants_list() -> None:
    """List tenants with their endpoint counts."""
    for tenant in db.session.scalars(select(Tenant).order_by(Tenant.slug)):
        count = db.session.scalar(select(db.func.count()).select_from(Endpoint).where(Endpoint.tenant_id == tenant.id))
        click.echo(f"{tenant.id}\t{tenant.slug}\t{tenant.name}\t{count} endpoints")


@users.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--admin", is_flag=True, help="Admin of every tenant.")
@click.option("--tenant", "tenant_slugs", multiple=True, help="Tenant slug to grant (repeatable).")
@click.option("--role", type=click.Choice(auth.ROLES), default="editor", show_default=True)
def users_create(username: str, password: str, admin: bool, tenant_slugs: tuple[str, ...], role: str) -> None:
    """Create a dashboard user (password stored as a werkzeug scrypt hash)."""
    if db.session.scalar(select(User).where(User.username == username)):
        raise click.ClickException(f"a user {username!r} already exists")
    try:
        user = auth.create_user(username, password, is_admin=admin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for slug in tenant_slugs:
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise click.ClickException(f"no tenant {slug!r}")
        auth.grant(user, tenant, role)
    db.session.commit()
    click.echo(f"user {username} created" + (" (admin)" if admin else ""))


@click.command("worker")
def worker_command() -> None:
    """Deliver and run the periodic jobs (inbound processing, retention), no web server.

    Sweeps run back to back in this thread while there is work, instead of
    once per timer tick, and every sweep interval when there is none.
    """
    app = current_app._get_current_object()
    scheduler.start(app, sweep=False)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    worker = scheduler.worker(app)
    # The app's objects live as long as the process: full collections need not walk them (as gunicorn.conf.py).
    gc.collect()
    gc.freeze()
    click.echo(
        f"worker {worker.name} sweeping every {app.config['SWEEP_INTERVAL']}s when idle, back to back when busy, "
        f"{worker.concurrency} delivery threads; Ctrl-C stops"
    )
    worker.run(stopped)
    click.echo("stopping: no new claims, finishing in-flight deliveries")
    scheduler.stop(app)


@click.command("init-db")
def init_db_command() -> None:
    """Create the schema, or migrate an older database to the current one (same as 'db upgrade')."""
    upgrade_schema()
    click.echo("schema ready")


@click.command("demo")
def demo_command() -> None:
    """Make sure a demo tenant and admin exist, and print how to log in.

    The credentials are generated once and kept in the instance folder
    (mode 0600) so that every start of ``dev.py serve`` can print them.
    """
    path = Path(current_app.instance_path) / "demo-login.txt"
    if not path.exists() and db.session.scalar(select(User).limit(1)) is None:
        password = secrets.token_urlsafe(12)
        user = auth.create_user("admin", password, is_admin=True)
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "demo"))
        if tenant is None:
            tenant, key = create_tenant("demo", "Demo shop")
        else:
            _, key = auth.create_api_key(tenant)
        auth.grant(user, tenant, "editor")
        db.session.commit()
        path.write_text(f"dashboard login: admin / {password}\ndemo tenant API key: {key}\n")
        path.chmod(0o600)
    if path.exists():
        click.echo(path.read_text().rstrip())
    else:
        click.echo("users exist already; create more with 'flask --app app users create'")


@secrets_group.command("reencrypt")
def reencrypt() -> None:
    """Rewrite every stored secret under the first key of WEBHOOKS_ENCRYPTION_KEY.

    Set the variable to "NEW,OLD" first so old values can still be read.
    """
    count = 0
    # Marking a column modified makes the flush bind it again, which encrypts
    # it under the current key; reading it used whichever key matched.
    for model, columns in ((Endpoint, ("secret", "previous_secret", "auth")), (Source, ("secrets",))):
        for item in db.session.scalars(select(model)):
            for column in columns:
                flag_modified(item, column)
            count += 1
    db.session.commit()
    click.echo(f"re-encrypted the secrets of {count} endpoints and sources under the current key")


def _check_slug(slug: str) -> None:
    if not re.fullmatch(TENANT_SLUG, slug):
        raise click.ClickException("a slug is 1-64 lowercase letters, digits and dashes")


def init_app(app: Flask) -> None:
    for command in (tenants, users, secrets_group, worker_command, init_db_command, demo_command):
        app.cli.add_command(command)
