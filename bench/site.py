"""The hub's database seen from the benchmark process: set-up and read-back.

Tenants and endpoints are made with the hub's own functions (so secrets are
encrypted and URLs checked as usual); counts are read with plain SQL after a
run, to check that what the hub answered is what it stored.
"""

from __future__ import annotations

from sqlalchemy import text

from bench.procs import hub_config


class Site:
    """``with Site(url) as site:`` binds a hub app to ``url`` without starting any scheduler."""

    def __init__(self, database_url: str) -> None:
        from app import create_app

        self.app = create_app(hub_config(database_url))

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc) -> None:
        from webhooks.db import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()

    def tenant(self, slug: str) -> tuple[int, str]:
        """A new tenant; returns its id and API key."""
        from webhooks.cli import create_tenant

        with self.app.app_context():
            tenant, key = create_tenant(slug)
            return tenant.id, key

    def endpoint(self, tenant_id: int, url: str, **fields) -> int:
        """A new endpoint (``fields`` as in the API, e.g. ``event_types``); returns its id."""
        from webhooks import endpoints
        from webhooks.db import db
        from webhooks.models import Tenant

        with self.app.app_context():
            endpoint = endpoints.create(db.session.get(Tenant, tenant_id), {"url": url, **fields})
            return endpoint.id

    def scalar(self, sql: str, **params):
        """One value of a read-only query."""
        from webhooks.db import db

        with self.app.app_context():
            try:
                return db.session.execute(text(sql), params).scalar()
            finally:
                db.session.remove()

    def count_deliveries(self, status: str | None = None) -> int:
        """How many deliveries there are, or how many have ``status``."""
        if status is None:
            return self.scalar("SELECT count(*) FROM deliveries")
        return self.scalar("SELECT count(*) FROM deliveries WHERE status = :status", status=status)
