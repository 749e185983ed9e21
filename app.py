"""The application factory: defaults, environment, the config argument, then wiring."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the hub.

    Settings come from ``webhooks.config.DEFAULTS``, then ``WEBHOOKS_*``
    environment variables (``SECRET_KEY`` and ``DATABASE_URL`` too), then
    ``config`` (tests pass a dict here).
    """
    from webhooks import cli
    from webhooks import config as settings
    from webhooks import crypto
    from webhooks import db
    from webhooks import errors
    from webhooks import hooks
    from webhooks import htmx
    from webhooks import scheduler
    from webhooks.views import register_blueprints

    app = Flask(__name__, instance_relative_config=True, static_folder="static", template_folder="templates")
    app.config.from_mapping(settings.DEFAULTS)
    app.config.from_prefixed_env("WEBHOOKS")
    app.config.from_prefixed_env("FLASK")
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.database_url(app.instance_path)
    app.config.update(config or {})
    settings.normalise(app.config)
    app.config["SECRET_KEY"] = app.config["SECRET_KEY"] or _instance_secret(app.instance_path)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    _configure_logging(app)

    crypto.configure(crypto.load_keys(app.config["ENCRYPTION_KEY"], app.instance_path))
    db.init_app(app)
    errors.init_app(app)
    htmx.init_app(app)
    register_blueprints(app)
    hooks.init_app(app)
    cli.init_app(app)
    scheduler.init_app(app)
    return app


def _instance_secret(instance_path: str) -> str:
    """A session key kept in the instance folder, so logins survive restarts on one host."""
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _configure_logging(app: Flask) -> None:
    """One line per event on stderr, with the logger name, readable by people and grep."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
