"""Errors as answers: ``ApiError`` for the JSON API, and handlers so that nothing
ever reaches a client as a traceback.

API errors have one shape: ``{"error": {"code", "message", "field"?}}``.
"""

from __future__ import annotations

import logging

from flask import Flask
from flask import jsonify
from flask import render_template
from flask import request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from webhooks.db import db

log = logging.getLogger("webhooks.errors")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the API reports as JSON with ``status``."""

    def __init__(self, status: int, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or CODES.get(status, "error")


def checked_text(value, field: str, *, max_length: int | None = None) -> str:
    """``value`` if it is text a database column can hold, else ``ApiError(422)`` naming ``field``.

    Besides the type and length, NUL characters (PostgreSQL's text columns
    refuse them) and lone surrogates (not Unicode: no driver can encode them)
    are refused here rather than by the database, with a 500.
    """
    if not isinstance(value, str):
        raise ApiError(422, f"{field} must be a string", field=field)
    if "\x00" in value:
        raise ApiError(422, f"{field} must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"{field} must be Unicode text (it has a lone surrogate)", field=field) from None
    if max_length is not None and len(value) > max_length:
        raise ApiError(422, f"{field} must be at most {max_length} characters", field=field)
    return value


def error_response(status: int, message: str, *, field: str | None = None, code: str | None = None, headers=None):
    """The one place that builds an ``{"error": ...}`` body."""
    body = {"code": code or CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def wants_json() -> bool:
    """API and hook URLs always speak JSON; the dashboard speaks HTML."""
    return request.path.startswith(("/api/", "/hooks/")) or request.accept_mimetypes.best == "application/json"


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.status, error.message, field=error.field, code=error.code)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if wants_json():
            message = error.description or error.name
            return error_response(error.code or 500, message, headers=_retry_after(error))
        return render_template("error.html", error=error), error.code

    @app.errorhandler(OperationalError)
    def database_down(error: OperationalError):
        # Writes fail cleanly while the database restarts; nothing half-written stays.
        db.session.rollback()
        log.error("database unavailable: %s", error.orig)
        if wants_json():
            return error_response(503, "the database is unavailable; try again shortly", headers={"Retry-After": "5"})
        return render_template("error.html", error=_Unavailable()), 503

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return error_response(500, "internal error; it has been logged")
        return render_template("error.html", error=_Internal()), 500


def _retry_after(error: HTTPException) -> dict:
    retry_after = getattr(error, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after else {}


class _Unavailable:
    code = 503
    name = "Service Unavailable"
    description = "The database is unavailable; try again shortly."


class _Internal:
    code = 500
    name = "Internal Server Error"
    description = "Something went wrong on our side; it has been logged."
