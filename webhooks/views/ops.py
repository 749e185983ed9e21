"""Operations: ``/healthz`` for load balancers and alerts, ``/metrics`` for Prometheus.

Neither needs a login: they show counts and timings, never tenant data.
Expose them on the internal network only.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from webhooks import health
from webhooks import metrics

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    healthy, details = health.report()
    response = jsonify(details)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics_text():
    return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)
