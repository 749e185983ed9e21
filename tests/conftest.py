"""Fixtures: an app on a fresh database (SQLite file, or PostgreSQL when asked),
API clients with real keys, a loopback receiver and a worker to drain deliveries.

Set ``WEBHOOKS_TEST_DB=postgres`` (with ``WEBHOOKS_TEST_POSTGRES_URL``) to run
the whole suite against PostgreSQL; ``.ci/run`` runs it both ways.
"""

from __future__ import annotations

import os
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
