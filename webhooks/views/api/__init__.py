"""JSON API v1, tenant-scoped by ``Authorization: Bearer <api key>``.

Every route here is thin: parse, call one ``webhooks`` function, serialise.
An object of another tenant is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Blueprint
from flask import g
from flask import request
from sqlalchemy import BigInteger

from webhooks.auth import api_key_required
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.models import Tenant

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_PAGE = 200


@bp.before_request
@api_key_required
def authenticate():
    """Every API route needs a key; the decorator sets ``g.tenant``, the tenant's id without its row."""


def tenant_row() -> Tenant:
    """The caller's tenant as a row of this request's session, for new objects that link to it.

    Another process may have deleted the tenant, and its keys with it, while
    this one still honours a key it checked (for ``auth.KEY_CACHE_SECONDS``):
    that is refused like the deleted key.
    """
    tenant = db.session.get(Tenant, g.tenant.id)
    if tenant is None:
        raise ApiError(401, "invalid or revoked API key")
    return tenant


def json_body(*, required: bool = True) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "the request body must be JSON")
        return {}
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None


def _not_json(name: str):
    # Python's json reads NaN and Infinity, which JSON does not have (PostgreSQL refuses them).
    raise ValueError(f"{name} is not a JSON value")


def json_object(*, required: bool = True) -> dict:
    body = json_body(required=required)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def owned(model, object_id: int, what: str):
    """The tenant's object with this id, or 404 (also for other tenants' objects)."""
    item = db.session.get(model, object_id) if 0 <= object_id <= largest_id(model.id) else None
    if item is None or item.tenant_id != g.tenant.id:
        raise ApiError(404, f"no {what} with id {object_id}")
    return item


def page_limit() -> int:
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise ApiError(400, "limit must be a number", field="limit") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return limit


def decode_cursor() -> int | None:
    """Cursors are opaque to clients; inside they are the last id of the previous page."""
    cursor = request.args.get("cursor")
    if not cursor:
        return None
    try:
        last_id = int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid cursor", field="cursor") from None
    if not 0 <= last_id <= 2**63 - 1:
        raise ApiError(400, "invalid cursor", field="cursor")
    return last_id


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode()


def largest_id(column) -> int:
    """The largest value an integer column holds; a larger one overflows the driver instead of matching nothing."""
    return 2**63 - 1 if isinstance(column.type, BigInteger) else 2**31 - 1


def int_arg(name: str, column) -> int | None:
    """The query argument ``name`` as a value of the integer ``column``, or None when absent."""
    value = request.args.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", field=name) from None
    if abs(number) > largest_id(column):
        raise ApiError(400, f"{name} is out of range", field=name)
    return number


from webhooks.views.api import catalog  # noqa: E402,F401  (routes register on bp)
from webhooks.views.api import deliveries  # noqa: E402,F401
from webhooks.views.api import endpoints  # noqa: E402,F401
from webhooks.views.api import events  # noqa: E402,F401
from webhooks.views.api import sources  # noqa: E402,F401
