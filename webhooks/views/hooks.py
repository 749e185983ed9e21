"""``/hooks/<tenant>[/<source>]``: where providers post; a thin adapter over :mod:`webhooks.inbound`.

No session, no CSRF token, no API key: a provider proves itself with the
signature its preset checks. Every method is routed here so that anything
but POST gets a proper 405 with ``Allow``.
"""

from __future__ import annotations

from flask import Blueprint
from flask import request

from webhooks import inbound
from webhooks.errors import error_response
from webhooks.views import json_answer

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("/<tenant>", methods=METHODS, defaults={"source": None}, provide_automatic_options=False)
@bp.route("/<tenant>/<source>", methods=METHODS, provide_automatic_options=False)
def receive(tenant: str, source: str | None):
    answer = inbound.receive(request, tenant, source)
    if answer.status >= 400:
        return error_response(answer.status, answer.message, headers=answer.headers)
    return json_answer(answer.body, answer.status, answer.headers)
