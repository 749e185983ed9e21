"""Delivery history (filters, keyset pages, live rows), delivery detail with every
attempt, redelivery, and replaying what failed."""

from __future__ import annotations

import shlex

from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import url_for
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from webhooks import audit
from webhooks import delivery as delivery_engine
from webhooks import endpoints
from webhooks import history
from webhooks import htmx
from webhooks import receiver_auth
from webhooks import serialize
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.forms import HistoryForm
from webhooks.forms import ReplayForm
from webhooks.forms import options
from webhooks.forms import utc
from webhooks.models import DELIVERING
from webhooks.models import PENDING
from webhooks.models import Attempt
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.views.auth import audited
from webhooks.views.auth import guard
from webhooks.views.auth import tenant_object

bp = Blueprint("deliveries", __name__, url_prefix="/t/<tenant>/deliveries")
guard(bp)

LIVE = (PENDING, DELIVERING)


@bp.get("/")
def index():
    """Delivery history: filters, keyset pages, live rows, the replay form."""
    form, filters = _history_filters()
    if form.errors:
        page = history.Page([], None)
    else:
        page = history.page(g.tenant.id, filters, before=request.args.get("before", type=int))
    newest = page.deliveries[0].id if page.deliveries else 0
    return htmx.render(
        "deliveries/index.html",
        "deliveries/_history.html",
        form=form,
        listing=page,
        newest=newest,
        live=not request.args.get("before"),
        replay_form=_replay_form(MultiDict({"endpoint_id": str(filters.endpoint_id or "")})),
        status=422 if form.errors else 200,
    )


@bp.get("/newer")
def newer():
    """Rows created since the page was drawn, above a fresh copy of the polling sentinel."""
    form, filters = _history_filters()
    after = request.args.get("after", 0, type=int)
    rows = [] if form.errors else history.newer(g.tenant.id, filters, after)
    return htmx.render("deliveries/_newer.html", rows=rows, newest=rows[0].id if rows else after)


@bp.get("/<int:delivery_id>/row")
def row(delivery_id: int):
    """One history row; polled every 2 s while the delivery is pending."""
    item = tenant_object(Delivery, delivery_id)
    return htmx.render("deliveries/_row.html", d=item, status=200 if item.status in LIVE else htmx.STOP_POLLING)


@bp.get("/<int:delivery_id>")
def detail(delivery_id: int):
    """One delivery with every attempt, request and response."""
    item = tenant_object(Delivery, delivery_id)
    return htmx.render("deliveries/detail.html", d=item, **_attempts(item))


@bp.get("/<int:delivery_id>/attempts")
def attempts(delivery_id: int):
    """The detail page's live part: status and attempt timeline, polled while pending."""
    item = tenant_object(Delivery, delivery_id)
    return htmx.render(
        "deliveries/_live.html", d=item, **_attempts(item), status=200 if item.status in LIVE else htmx.STOP_POLLING
    )


@bp.post("/<int:delivery_id>/redeliver")
def redeliver(delivery_id: int):
    """One manual attempt now; from a history row, htmx swaps in the row again."""
    item = tenant_object(Delivery, delivery_id)
    try:
        endpoints.redeliver(item)
    except ApiError as error:
        flash(error.message, "error")
    else:
        audited("delivery.redeliver", "delivery", item.id, after={"event": item.event.uid, "endpoint_id": item.endpoint_id})
        if not htmx.is_htmx():
            flash(f"Delivery {item.id} queued for one more attempt.")
    if htmx.is_htmx() and request.form.get("from") == "row":
        return htmx.render("deliveries/_row.html", d=item)
    return redirect(url_for("deliveries.detail", delivery_id=item.id))


@bp.get("/replay")
def replay_confirm():
    """Say how many failed deliveries a replay would queue, and ask."""
    form = _replay_form(request.args)
    if not form.validate():
        return htmx.render("deliveries/replay.html", "deliveries/_replay_confirm.html", form=form, count=None, status=422)
    endpoint = tenant_object(Endpoint, form.endpoint_id.data)
    count = endpoints.replay_count(endpoint, since=utc(form.since.data), until=utc(form.until.data))
    return htmx.render("deliveries/replay.html", "deliveries/_replay_confirm.html", form=form, endpoint=endpoint, count=count)


@bp.post("/replay")
def replay():
    """Replay the failed deliveries the confirmation counted."""
    form = _replay_form(request.form)
    if not form.validate():
        return htmx.render("deliveries/replay.html", form=form, count=None, status=422)
    endpoint = tenant_object(Endpoint, form.endpoint_id.data)
    since, until = utc(form.since.data), utc(form.until.data)
    count = endpoints.replay(endpoint, since=since, until=until)
    audited(
        "endpoint.replay",
        "endpoint",
        endpoint.id,
        after={"status": "failed", "since": serialize.iso(since), "until": serialize.iso(until), "redelivered": count},
    )
    flash(f"{count} failed deliver{'y' if count == 1 else 'ies'} to {endpoint.url} queued again.")
    if htmx.is_htmx():
        return htmx.client_redirect(url_for("deliveries.index", endpoint_id=endpoint.id))
    return redirect(url_for("deliveries.index", endpoint_id=endpoint.id))


def _history_filters() -> tuple[HistoryForm, history.Filters]:
    form = HistoryForm(request.args)
    form.endpoint_id.choices = options([(0, "any")] + [(e.id, e.url) for e in _tenant_endpoints()])
    if not form.validate():
        return form, history.Filters()
    filters = history.Filters(
        status=form.status.data or None,
        endpoint_id=form.endpoint_id.data or None,
        event_type=(form.event_type.data or "").strip() or None,
        event=(form.event.data or "").strip() or None,
        since=utc(form.since.data),
        until=utc(form.until.data),
    )
    return form, filters


def _replay_form(formdata) -> ReplayForm:
    form = ReplayForm(formdata)
    form.endpoint_id.choices = options((e.id, e.url) for e in _tenant_endpoints())
    return form


def _tenant_endpoints() -> list[Endpoint]:
    return list(db.session.scalars(select(Endpoint).where(Endpoint.tenant_id == g.tenant.id).order_by(Endpoint.id)))


def _attempts(item: Delivery) -> dict:
    attempt_list = list(db.session.scalars(select(Attempt).where(Attempt.delivery_id == item.id).order_by(Attempt.number)))
    secret = receiver_auth.secret_header_names(item.endpoint.auth)
    shown = [
        {
            "attempt": attempt,
            "request_headers": shown_headers(attempt.request_headers or {}, secret),
            "response_headers": shown_headers(attempt.response_headers or {}, set()),
            "curl": curl_command(attempt, secret),
        }
        for attempt in reversed(attempt_list)
    ]
    return {"attempts": shown}


def shown_headers(headers: dict, secret_names: set[str]) -> dict:
    """Headers as the dashboard shows them: credentials masked, whatever their name."""
    names = secret_names | {name.lower() for name in headers if audit.is_sensitive(name)}
    return delivery_engine.mask(headers, names)


def curl_command(attempt: Attempt, secret_names: set[str]) -> str:
    """The attempt as a curl command, to replay it by hand; credentials stay masked."""
    lines = [f"curl -X POST {shlex.quote(attempt.request_url)}"]
    for name, value in shown_headers(attempt.request_headers or {}, secret_names).items():
        lines.append(f"-H {shlex.quote(f'{name}: {value}')}")
    lines.append(f"--data-raw {shlex.quote(attempt.request_body or '')}")
    return " \\\n  ".join(lines)
