"""Endpoints: list, create and edit, enable/disable, secret rotation, test events,
and the filter rule editor with its live preview."""

from __future__ import annotations

import re
from datetime import datetime

from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import url_for
from sqlalchemy import select

from webhooks import catalog
from webhooks import endpoints
from webhooks import filters
from webhooks import history
from webhooks import htmx
from webhooks import payload_templates
from webhooks import publishing
from webhooks import serialize
from webhooks import stats
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.forms import EndpointForm
from webhooks.forms import FilterForm
from webhooks.forms import options
from webhooks.forms import show_api_error
from webhooks.forms import valid_except
from webhooks.models import Endpoint
from webhooks.models import PayloadTemplate
from webhooks.views.auth import audited
from webhooks.views.auth import editor_only
from webhooks.views.auth import guard
from webhooks.views.auth import read_only
from webhooks.views.auth import tenant_object

bp = Blueprint("endpoints", __name__, url_prefix="/t/<tenant>/endpoints")
guard(bp)

RULE_FIELD = re.compile(r"^filter\.rules\[(\d+)\]$")


@bp.get("/")
def index():
    """Every endpoint of the tenant with its 24-hour numbers."""
    items = stats.endpoint_stats(g.tenant.id)
    return htmx.render("endpoints/index.html", stats=sorted(items, key=lambda s: s.endpoint.id))


@bp.route("/new", methods=["GET", "POST"])
@editor_only
def create():
    """The new-endpoint form; the answer that creates one shows its secret once."""
    form = _endpoint_form()
    if request.method == "POST" and form.validate():
        try:
            endpoint = endpoints.create(g.tenant, form.to_data())
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error, EndpointForm.API_FIELDS)
        else:
            audited("endpoint.create", "endpoint", endpoint.id, after=serialize.endpoint(endpoint))
            return _detail(endpoint, new_secret=endpoint.secret, status=201)
    status = 422 if request.method == "POST" else 200
    return htmx.render("endpoints/edit.html", form=form, endpoint=None, status=status)


@bp.get("/<int:endpoint_id>")
def detail(endpoint_id: int):
    """One endpoint: numbers, chart, settings, actions and recent deliveries."""
    return _detail(tenant_object(Endpoint, endpoint_id))


@bp.get("/<int:endpoint_id>/deliveries")
def recent_deliveries(endpoint_id: int):
    """The detail page's delivery table, reloaded after a test event."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    return htmx.render("endpoints/_recent.html", deliveries=history.recent(endpoint.id), endpoint=endpoint)


@bp.route("/<int:endpoint_id>/edit", methods=["GET", "POST"])
@editor_only
def edit(endpoint_id: int):
    """The endpoint form; credentials left blank keep their stored values."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    form = _endpoint_form()
    if request.method == "GET":
        form.fill(endpoint)
        return htmx.render("endpoints/edit.html", form=form, endpoint=endpoint)
    if form.validate():
        before = serialize.endpoint(endpoint)
        try:
            endpoints.apply(endpoint, form.to_data(current_auth=endpoint.auth))
            db.session.commit()
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error, EndpointForm.API_FIELDS)
        else:
            audited("endpoint.update", "endpoint", endpoint.id, before=before, after=serialize.endpoint(endpoint))
            flash("Endpoint saved.")
            return redirect(url_for("endpoints.detail", endpoint_id=endpoint.id))
    return htmx.render("endpoints/edit.html", form=form, endpoint=endpoint, status=422)


@bp.post("/<int:endpoint_id>/enabled")
def set_enabled(endpoint_id: int):
    """Enable (which also closes the circuit) or disable an endpoint."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    before = serialize.endpoint(endpoint)
    offer = endpoints.apply(endpoint, {"enabled": request.form.get("enabled") == "1"})
    if not endpoint.enabled:
        endpoint.disabled_reason = f"disabled by {g.user.username}"
    db.session.commit()
    verb = "enable" if endpoint.enabled else "disable"
    audited(f"endpoint.{verb}", "endpoint", endpoint.id, before=before, after=serialize.endpoint(endpoint))
    if offer and offer["count"]:
        # Back up: offer to send again what failed while it was down.
        flash(f"Endpoint enabled. {offer['count']} deliveries failed while it was in trouble; replay them below.")
        since = datetime.fromisoformat(offer["since"]).strftime("%Y-%m-%dT%H:%M") if offer["since"] else None
        return redirect(url_for("deliveries.replay_confirm", endpoint_id=endpoint.id, since=since))
    flash(f"Endpoint {verb}d.")
    return redirect(url_for("endpoints.detail", endpoint_id=endpoint.id))


@bp.post("/<int:endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: int):
    """A new signing secret, shown this once; the old one keeps signing during the overlap."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    secret = endpoints.rotate_secret(endpoint)
    audited("endpoint.rotate_secret", "endpoint", endpoint.id, after={"previous_secret_expires_at": serialize.iso(endpoint.previous_secret_expires_at)})
    if htmx.is_htmx():
        return htmx.render("endpoints/_secret.html", endpoint=endpoint, new_secret=secret)
    return _detail(endpoint, new_secret=secret)


@bp.post("/<int:endpoint_id>/test")
def send_test(endpoint_id: int):
    """Queue a ``webhook.test`` event to this endpoint only."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    published = endpoints.send_test(endpoint)
    audited("endpoint.test", "endpoint", endpoint.id, after={"event_id": published.id, "webhook_id": published.uid})
    if htmx.is_htmx():
        return htmx.render("endpoints/_test_sent.html", published=published, trigger="deliveries-changed")
    flash(f"Test event {published.uid} queued.")
    return redirect(url_for("endpoints.detail", endpoint_id=endpoint.id))


@bp.post("/<int:endpoint_id>/delete")
def delete(endpoint_id: int):
    """Delete an endpoint with its delivery history."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    before = serialize.endpoint(endpoint)
    db.session.delete(endpoint)
    db.session.commit()
    audited("endpoint.delete", "endpoint", endpoint_id, before=before)
    flash(f"Endpoint {before['url']} deleted, with its delivery history.")
    return redirect(url_for("endpoints.index"))


@bp.route("/<int:endpoint_id>/filter", methods=["GET", "POST"])
def filter_editor(endpoint_id: int):
    """The filter rules of an endpoint; saving validates every rule."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    form = _filter_form(endpoint)
    rule_errors: dict[int, str] = {}
    status = 200
    if request.method == "POST" and valid_except(form, "payload", "event_type"):
        before = {"match": endpoint.filter_match, "rules": list(endpoint.filter_rules or [])}
        try:
            endpoints.apply(endpoint, {"filter": {"match": form.match.data, "rules": form.rule.data}})
            db.session.commit()
        except ApiError as error:
            db.session.rollback()
            rule = RULE_FIELD.match(error.field or "")
            if rule:
                rule_errors[int(rule.group(1))] = error.message
            else:
                show_api_error(form, error, {"filter.match": "match", "filter": "match"})
            status = 422
        else:
            audited("endpoint.filter", "endpoint", endpoint.id, before={"filter": before}, after={"filter": {"match": endpoint.filter_match, "rules": endpoint.filter_rules}})
            flash("Filter saved.")
            return redirect(url_for("endpoints.filter_editor", endpoint_id=endpoint.id))
    elif request.method == "POST":
        status = 422
    result = _filter_result(endpoint, form) if form.match.data in filters.MATCH_MODES else None
    return htmx.render("endpoints/filter.html", endpoint=endpoint, form=form, rule_errors=rule_errors, result=result, status=status)


@bp.post("/<int:endpoint_id>/filter/preview")
@read_only
def filter_preview(endpoint_id: int):
    """The live result of the rules being edited, against a sample or a pasted payload."""
    endpoint = tenant_object(Endpoint, endpoint_id)
    form = _filter_form(endpoint)
    form.validate()
    return htmx.render("endpoints/_filter_result.html", endpoint=endpoint, form=form, result=_filter_result(endpoint, form))


def _detail(endpoint: Endpoint, *, new_secret: str | None = None, status: int = 200):
    summary = stats.endpoint_stats(g.tenant.id, endpoint_id=endpoint.id)
    return htmx.render(
        "endpoints/detail.html",
        endpoint=endpoint,
        summary=summary[0] if summary else None,
        hours=stats.hourly(g.tenant.id, endpoint_id=endpoint.id),
        deliveries=history.recent(endpoint.id),
        new_secret=new_secret,
        warnings=endpoints.warnings(endpoint),
        status=status,
    )


def _endpoint_form() -> EndpointForm:
    form = EndpointForm(request.form if request.method == "POST" else None)
    templates = db.session.scalars(
        select(PayloadTemplate).where(PayloadTemplate.tenant_id == g.tenant.id).order_by(PayloadTemplate.name)
    )
    form.template_id.choices = options([(0, "Default envelope {id, type, created_at, data}")] + [(t.id, t.name) for t in templates])
    return form


def _filter_form(endpoint: Endpoint) -> FilterForm:
    if request.method == "POST":
        form = FilterForm(request.form)
    else:
        form = FilterForm(data={"match": endpoint.filter_match, "rule": endpoint.filter_rules or []})
    types = set(catalog.entries(g.tenant.id)) | {t for t in endpoint.event_types or [] if not any(c in t for c in "*?[")}
    form.event_type.choices = options([("", "—")] + [(name, name) for name in sorted(types)])
    if request.method == "GET" and types:
        form.event_type.data = sorted(types)[0]
        form.payload.data = payload_templates.sample_payload(g.tenant.id, form.event_type.data)
    return form


def _filter_result(endpoint: Endpoint, form: FilterForm) -> dict:
    """The rules' verdict on the payload being tried, and on the last 100 events of the endpoint's types."""
    if form.payload.errors:
        return {"error": form.payload.errors[0]}
    rules, match = form.rule.data or [], form.match.data if form.match.data in filters.MATCH_MODES else "all"
    event_type = form.event_type.data or None
    payload = form.payload.data if form.payload.data is not None else {}
    context = filters.build_context(payload, event=payload_templates.sample_event(event_type))
    outcome = filters.evaluate_rules(rules, match, context)
    recent = publishing.recent_events(g.tenant.id, endpoint.event_types or [])
    would_match = sum(
        filters.evaluate_rules(
            rules, match, publishing.filter_context(e.type, e.payload, uid=e.uid, created_at=e.created_at)
        ).matched
        for e in recent
    )
    return {"outcome": outcome, "checked": len(recent), "would_match": would_match}
