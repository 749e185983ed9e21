"""Blueprints: the UI and API of each concept."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from webhooks.views import api
    from webhooks.views import hooks
    from webhooks.views import ops

    app.register_blueprint(api.bp)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(ops.bp)
    register_dashboard(app)


def register_dashboard(app: Flask) -> None:
    """The dashboard: server-rendered pages behind a login (see ``webhooks.views.auth``)."""
    from webhooks.views import admin
    from webhooks.views import auth
    from webhooks.views import catalog
    from webhooks.views import dashboard
    from webhooks.views import deliveries
    from webhooks.views import endpoints
    from webhooks.views import inbound

    for blueprint in (auth.bp, dashboard.bp, endpoints.bp, deliveries.bp, catalog.bp, inbound.bp, admin.bp):
        app.register_blueprint(blueprint)
