"""Fixtures: an app on a fresh database (SQLite file, or PostgreSQL when asked),
API clients with real keys, a loopback receiver and a worker to drain deliveries.

Set ``WEBHOOKS_TEST_DB=postgres`` (with ``WEBHOOKS_TEST_POSTGRES_URL``) to run
the whole suite against PostgreSQL; ``.ci/run`` runs it both ways.
"""

from __future__ import annotations

import functools
import os
import re
import uuid

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine
from sqlalchemy import text

from app import create_app
from webhooks.testing import Receiver
from webhooks.testing import wait_until

POSTGRES_URL = os.environ.get("WEBHOOKS_TEST_POSTGRES_URL")
ON_POSTGRES = os.environ.get("WEBHOOKS_TEST_DB") == "postgres"
ENCRYPTION_KEY = Fernet.generate_key().decode()


def pg_driver_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def postgres_database():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not POSTGRES_URL:
        pytest.skip("WEBHOOKS_TEST_POSTGRES_URL is not set; PostgreSQL tests need a server")
    admin = create_engine(pg_driver_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"webhooks_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base = pg_driver_url(POSTGRES_URL).rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_postgres_url():
    """An empty PostgreSQL database of its own for one test (migrations, real processes)."""
    if not POSTGRES_URL:
        pytest.skip("WEBHOOKS_TEST_POSTGRES_URL is not set; PostgreSQL tests need a server")
    admin = create_engine(pg_driver_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"webhooks_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield pg_driver_url(POSTGRES_URL).rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(request, tmp_path):
    if ON_POSTGRES:
        return request.getfixturevalue("postgres_database")
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


def make_app(database_url: str, tmp_path, **overrides):
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret",
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "ALLOW_PRIVATE_TARGETS": True,
        "DELIVERY_CONCURRENCY": 4,
        "LEASE_SECONDS": 30,
        **overrides,
    }
    app = create_app(config)
    app.instance_path = str(tmp_path / "instance")
    return app


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(database_url, tmp_path)
    yield app
    with app.app_context():
        from webhooks.db import db

        db.session.remove()
        if ON_POSTGRES:
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as connection:
                connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Api:
    """A test client that sends one tenant's API key with every call."""

    def __init__(self, client, key: str, tenant_id: int) -> None:
        self.client = client
        self.key = key
        self.tenant_id = tenant_id

    def _headers(self, kwargs):
        return {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}

    def get(self, url, **kwargs):
        return self.client.get(url, headers=self._headers(kwargs), **kwargs)

    def post(self, url, **kwargs):
        return self.client.post(url, headers=self._headers(kwargs), **kwargs)

    def patch(self, url, **kwargs):
        return self.client.patch(url, headers=self._headers(kwargs), **kwargs)

    def delete(self, url, **kwargs):
        return self.client.delete(url, headers=self._headers(kwargs), **kwargs)

    def endpoint(self, url: str, **fields) -> dict:
        response = self.post("/api/v1/endpoints", json={"url": url, **fields})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def publish(self, type: str = "order.created", payload=None, **fields) -> dict:
        response = self.post("/api/v1/events", json={"type": type, "payload": payload or {}, **fields})
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def source(self, slug: str = "gh", provider: str = "github", **fields) -> dict:
        response = self.post("/api/v1/sources", json={"slug": slug, "provider": provider, **fields})
        assert response.status_code == 201, response.get_json()
        return response.get_json()


def make_tenant(app, slug: str) -> tuple[int, str]:
    from webhooks.cli import create_tenant

    with app.app_context():
        tenant, key = create_tenant(slug)
        return tenant.id, key


@pytest.fixture
def api(app, client) -> Api:
    tenant_id, key = make_tenant(app, "acme")
    return Api(client, key, tenant_id)


@pytest.fixture
def other_api(app, client) -> Api:
    tenant_id, key = make_tenant(app, "globex")
    return Api(client, key, tenant_id)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


class Drainer:
    """Runs the real worker's sweep until the due work is done."""

    def __init__(self, app) -> None:
        from webhooks.worker import Worker

        self.app = app
        self.worker = Worker(app, concurrency=4, name="test-worker")

    def sweep(self) -> int:
        with self.app.app_context():
            from webhooks.db import db

            try:
                return self.worker.sweep(budget=0.5)
            finally:
                db.session.remove()

    def drain(self, timeout: float = 10.0) -> None:
        """Sweep until a sweep starts nothing and nothing is in flight."""

        def settled():
            started = self.sweep()
            self.worker.wait_idle(timeout)
            return started == 0

        wait_until(settled, timeout=timeout, interval=0)


@pytest.fixture
def drainer(app):
    drainer = Drainer(app)
    yield drainer
    drainer.worker.stop(timeout=5)


@pytest.fixture
def live_server(app):
    """The app on a real loopback HTTP server; yields its port."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


class Dashboard:
    """A test client for the dashboard: makes users, logs in, and posts forms
    with the session's CSRF token, as a browser would."""

    PASSWORD = "correct horse battery"

    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()
        self.token: str | None = None

    def user(self, username: str, *, admin: bool = False, roles: dict[int, str] | None = None) -> int:
        """Create a user with the test password and ``{tenant_id: role}``; return its id."""
        from webhooks.db import db
        from webhooks.models import Membership
        from webhooks.models import User

        with self.app.app_context():
            # A hash made once: scrypt costs a tenth of a second per call.
            user = User(username=username, password_hash=_password_hash(self.PASSWORD), is_admin=admin)
            db.session.add(user)
            db.session.flush()
            for tenant_id, role in (roles or {}).items():
                db.session.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role))
            db.session.commit()
            return user.id

    def login(self, username: str, password: str | None = None):
        """Log in through the form, as a person does; returns the answer to the POST."""
        page = self.client.get("/login")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        response = self.client.post(
            "/login", data={"username": username, "password": password or self.PASSWORD, "csrf_token": token}
        )
        self.refresh_token()
        return response

    def login_as(self, user_id: int) -> None:
        """Start a logged-in session without typing the password (fast; the login form has its own tests)."""
        from webhooks import auth
        from webhooks.db import db
        from webhooks.models import User

        with self.app.app_context():
            token = auth.session_token(db.session.get(User, user_id))
        with self.client.session_transaction() as session:
            session["user_id"], session["password_token"] = user_id, token
        self.refresh_token()

    def refresh_token(self) -> None:
        page = self.client.get("/", follow_redirects=True)
        found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
        self.token = found.group(1) if found else None

    def get(self, url: str, *, htmx: bool = False, **kwargs):
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.get(url, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)

    def post(self, url: str, data: dict | None = None, *, csrf: bool = True, htmx: bool = False, **kwargs):
        """POST a form; ``csrf=False`` leaves the token out, ``htmx=True`` sends it as htmx does, in a header."""
        data = dict(data or {})
        headers = {}
        if htmx:
            headers["HX-Request"] = "true"
            if csrf:
                headers["X-CSRF-Token"] = self.token
        elif csrf:
            data["csrf_token"] = self.token
        return self.client.post(url, data=data, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


@functools.lru_cache(maxsize=1)
def _password_hash(password: str) -> str:
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password)


@pytest.fixture
def dashboard(app) -> Dashboard:
    return Dashboard(app)


@pytest.fixture
def editor(dashboard, api):
    """The dashboard, logged in as an editor of the ``api`` tenant."""
    dashboard.login_as(dashboard.user("eddie", roles={api.tenant_id: "editor"}))
    return dashboard


@pytest.fixture
def viewer(app, api):
    """A second dashboard client, logged in as a viewer of the ``api`` tenant."""
    dashboard = Dashboard(app)
    dashboard.login_as(dashboard.user("vera", roles={api.tenant_id: "viewer"}))
    return dashboard


@pytest.fixture
def process_inbound(app):
    """Run the scheduler's inbound processing once, as a test step; returns how many it processed."""

    def process(now=None, owner: str = "test-worker") -> int:
        from webhooks import inbound
        from webhooks.db import db

        with app.app_context():
            try:
                return inbound.process_due(owner, budget=10.0, now=now)
            finally:
                db.session.remove()

    return process
