"""Blueprints: the UI and API of each concept."""

import json

from flask import Flask
from flask import Response
from flask import current_app
from flask.sessions import SecureCookieSessionInterface


def register_blueprints(app: Flask) -> None:
    from webhooks.views import api
    from webhooks.views import hooks
    from webhooks.views import ops

    app.register_blueprint(api.bp)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(ops.bp)
    register_dashboard(app)
    app.session_interface = SessionInterface((api.bp.url_prefix + "/", hooks.bp.url_prefix + "/"))


class SessionInterface(SecureCookieSessionInterface):
    """The dashboard's signed-cookie sessions, except on the API and hook URLs, which get Flask's null session.

    Providers and API clients carry no login (they sign, or send a key), and
    opening then saving a signed cookie is work each of their requests would
    pay for nothing. Code that reads the session there (the app-wide
    ``load_user``) sees an empty one.
    """

    def __init__(self, sessionless: tuple[str, ...]) -> None:
        self.sessionless = sessionless

    def open_session(self, app: Flask, request):
        if request.path.startswith(self.sessionless):
            return None  # Flask answers with make_null_session()
        return super().open_session(app, request)


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


def json_answer(data: dict, status: int, headers: dict[str, str] | None = None) -> Response:
    """A small JSON answer of ids, strings and numbers, for the hottest URLs (hooks, publish).

    Plain ``json.dumps``: ``jsonify`` goes through the app's JSON provider and
    sorts keys, which costs more than these answers are worth.
    """
    body = json.dumps(data, separators=(",", ":")) + "\n"
    return current_app.response_class(body, status, headers, mimetype="application/json")
