"""The overview of a tenant, the tenant switcher and the tenant's audit log."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from flask import Blueprint
from flask import abort
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from markupsafe import Markup

from webhooks import audit
from webhooks import htmx
from webhooks import stats
from webhooks.db import now_utc
from webhooks.views.auth import guard
from webhooks.views.auth import visible_tenants

bp = Blueprint("dashboard", __name__)
guard(bp)


@bp.app_template_filter("when")
def when(value) -> str:
    """A timestamp as the dashboard shows them: UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "—"


@bp.app_template_filter("clock")
def clock(value) -> str:
    """A time of day when ``value`` is today (UTC), else the full timestamp."""
    if value is None:
        return "—"
    return value.strftime("%H:%M:%S") if value.date() == now_utc().date() else when(value)


@bp.app_template_filter("short_url")
def short_url(value: str) -> str:
    """A URL without its scheme, for narrow table cells (the full one goes in a title)."""
    return value.split("://", 1)[-1]


@bp.app_template_filter("ms")
def milliseconds(value) -> str:
    """A duration in ms as people read it (``850 ms``, ``2.3 s``)."""
    return "—" if value is None else (f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s")


@bp.app_template_filter("percent")
def percent(value) -> str:
    """A share as a percentage with one decimal, or a dash for none."""
    return "—" if value is None else f"{value * 100:.1f} %"


@bp.app_template_filter("pretty_json")
def pretty_json(value) -> str:
    """JSON (a value, or text that parses) indented for reading; other text unchanged."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@bp.app_template_global("query_with")
def query_with(**changes) -> str:
    """The current query string with some arguments replaced (pagination links keep the filters)."""
    args = request.args.to_dict()
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return Markup("?" + urlencode(args)) if args else Markup("?")


@bp.get("/")
def index():
    """Go to the tenant the user looked at last, else their first one."""
    tenants = visible_tenants()
    if not tenants:
        return htmx.render("dashboard/no_tenants.html")
    last = next((t for t in tenants if t.slug == session.get("tenant")), tenants[0])
    return redirect(url_for("dashboard.overview", tenant=last.slug))


@bp.get("/switch")
def switch():
    """The tenant switcher's target: the same section in another tenant."""
    slug = request.args.get("tenant", "")
    if slug not in {t.slug for t in visible_tenants()}:
        abort(404)
    section = request.args.get("section", "dashboard.overview")
    if section not in SECTIONS:
        section = "dashboard.overview"
    return redirect(url_for(section, tenant=slug))


@bp.get("/t/<tenant>/")
def overview():
    """The tenant's last 24 hours; htmx refreshes the fragment every 10 s."""
    endpoint_stats = stats.endpoint_stats(g.tenant.id)
    hours = stats.hourly(g.tenant.id)
    totals = {
        "deliveries": sum(s.deliveries for s in endpoint_stats),
        "succeeded": sum(s.succeeded for s in endpoint_stats),
        "failed": sum(s.failed for s in endpoint_stats),
        "backlog": sum(s.backlog for s in endpoint_stats),
        "attempts": sum(h.attempts for h in hours),
        "failures": sum(h.failures for h in hours),
    }
    return htmx.render("dashboard/overview.html", "dashboard/_overview.html", stats=endpoint_stats, hours=hours, totals=totals)


@bp.get("/t/<tenant>/audit")
def audit_log():
    """The tenant's audit log, newest first."""
    entries, older = audit.page(g.tenant.id, before=request.args.get("before", type=int))
    return htmx.render(
        "dashboard/audit.html", "dashboard/_audit_rows.html", entries=entries, older=older, changes=audit.changes
    )


# Sections the tenant switcher may return to; each is a page without an object id.
SECTIONS = {
    "dashboard.overview",
    "dashboard.audit_log",
    "endpoints.index",
    "deliveries.index",
    "catalog.event_types",
    "catalog.templates",
    "inbound.sources_list",
    "inbound.requests_log",
    "admin.api_keys",
}
