"""Blueprints: the UI and API of each concept."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from webhooks.views import api

    app.register_blueprint(api.bp)
