"""Inbound: sources (the hook URL to paste into the provider, its secrets) and the
log of what providers sent, accepted or rejected, with reprocessing."""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import url_for
from sqlalchemy import select

from webhooks import history
from webhooks import htmx
from webhooks import inbound
from webhooks import providers
from webhooks import serialize
from webhooks import sources
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.forms import InboundLogForm
from webhooks.forms import SecretForm
from webhooks.forms import SourceForm
from webhooks.forms import options
from webhooks.forms import show_api_error
from webhooks.models import InboundAttempt
from webhooks.models import InboundRequest
from webhooks.models import Source
from webhooks.views.auth import audited
from webhooks.views.auth import editor_only
from webhooks.views.auth import guard
from webhooks.views.auth import tenant_object

bp = Blueprint("inbound", __name__, url_prefix="/t/<tenant>/inbound")
guard(bp)

LIVE = (inbound.RECEIVED, inbound.PROCESSING)


@bp.get("/")
def sources_list():
    """The tenant's sources with their hook URLs."""
    items = list(db.session.scalars(select(Source).where(Source.tenant_id == g.tenant.id).order_by(Source.slug)))
    return htmx.render("inbound/sources.html", items=[(item, sources.serialize(item)) for item in items])


@bp.route("/sources/new", methods=["GET", "POST"])
@editor_only
def create_source():
    """The new-source form; the answer that creates one shows its secret once."""
    form = _source_form()
    if request.method == "POST" and form.validate():
        try:
            source = sources.create(g.tenant, form.to_data())
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error, SourceForm.API_FIELDS)
        else:
            audited("source.create", "source", source.id, after=sources.serialize(source))
            return _detail(source, new_secrets=list(source.secrets or []), status=201)
    return htmx.render("inbound/source_edit.html", form=form, source=None, presets=_presets(), status=422 if request.method == "POST" else 200)


@bp.get("/sources/<int:source_id>")
def source(source_id: int):
    """One source: hook URL, secrets, settings and recent requests."""
    return _detail(tenant_object(Source, source_id))


@bp.route("/sources/<int:source_id>/edit", methods=["GET", "POST"])
@editor_only
def edit_source(source_id: int):
    """The source form; a blank secret keeps the stored ones."""
    item = tenant_object(Source, source_id)
    form = _source_form()
    if request.method == "GET":
        form.fill(item)
        return htmx.render("inbound/source_edit.html", form=form, source=item, presets=_presets())
    if form.validate():
        before = sources.serialize(item)
        try:
            sources.apply(item, form.to_data(item))
            sources.save(item)
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error, SourceForm.API_FIELDS)
        else:
            audited("source.update", "source", item.id, before=before, after=sources.serialize(item))
            flash("Source saved.")
            return redirect(url_for("inbound.source", source_id=item.id))
    return htmx.render("inbound/source_edit.html", form=form, source=item, presets=_presets(), status=422)


@bp.post("/sources/<int:source_id>/secrets")
def add_secret(source_id: int):
    """Put a new secret in front; the old ones keep verifying until dropped (rotation without loss)."""
    item = tenant_object(Source, source_id)
    form = SecretForm(request.form)
    secret = (form.secret.data or "").strip()
    if not secret and item.provider in sources.GENERATED_SECRETS:
        secret = sources.generate_secret(item.provider)
    before = sources.serialize(item)
    try:
        if not secret:
            raise ApiError(422, f"{providers.PRESETS[item.provider].label} issues its own secrets: paste the new one.", field="secret")
        sources.apply(item, {"add_secret": secret})
        sources.save(item)
    except ApiError as error:
        db.session.rollback()
        show_api_error(form, error, SourceForm.API_FIELDS)
        return _detail(tenant_object(Source, source_id), secret_form=form, status=422)
    audited("source.add_secret", "source", item.id, before=before, after=sources.serialize(item))
    return _detail(item, new_secrets=[secret])


@bp.post("/sources/<int:source_id>/secrets/drop-old")
def drop_old_secrets(source_id: int):
    """Keep only the newest secret, once the provider signs with it."""
    item = tenant_object(Source, source_id)
    before = sources.serialize(item)
    sources.apply(item, {"secrets": (item.secrets or [])[:1]})
    sources.save(item)
    audited("source.drop_secrets", "source", item.id, before=before, after=sources.serialize(item))
    flash("Older secrets removed; only the newest one verifies requests now.")
    return redirect(url_for("inbound.source", source_id=item.id))


@bp.post("/sources/<int:source_id>/delete")
def delete_source(source_id: int):
    """Delete a source with every request it received."""
    item = tenant_object(Source, source_id)
    before = sources.serialize(item)
    sources.delete(item)
    audited("source.delete", "source", source_id, before=before)
    flash(f"Source {before['slug']} deleted, with every request it received.")
    return redirect(url_for("inbound.sources_list"))


@bp.get("/requests")
def requests_log():
    """Everything providers sent, newest first, filtered by source and status."""
    form, source_id, status = _log_filters()
    page = (
        history.InboundPage([], None)
        if form.errors
        else history.inbound_page(g.tenant.id, source_id=source_id, status=status, before=request.args.get("before", type=int))
    )
    return htmx.render(
        "inbound/requests.html",
        "inbound/_requests.html",
        form=form,
        log=page,
        newest=page.requests[0].id if page.requests else 0,
        live=not form.errors and not request.args.get("before"),
        status=422 if form.errors else 200,
    )


@bp.get("/requests/newer")
def requests_newer():
    """Requests received since the log was drawn, above a fresh copy of the polling sentinel."""
    form, source_id, status = _log_filters()
    after = request.args.get("after", 0, type=int)
    rows = [] if form.errors else history.inbound_newer(g.tenant.id, source_id=source_id, status=status, after=after)
    return htmx.render("inbound/_newer.html", rows=rows, newest=rows[0].id if rows else after)


@bp.get("/requests/<int:request_id>/row")
def request_row(request_id: int):
    """One log row; polled while the request waits to be processed."""
    item = tenant_object(InboundRequest, request_id)
    return htmx.render("inbound/_request_row.html", r=item, status=200 if item.status in LIVE else htmx.STOP_POLLING)


@bp.get("/requests/<int:request_id>")
def request_detail(request_id: int):
    """One received request: verification, attempts, headers and body."""
    item = tenant_object(InboundRequest, request_id)
    return htmx.render("inbound/request.html", "inbound/_request_live.html", **_request_context(item))


@bp.get("/requests/<int:request_id>/live")
def request_live(request_id: int):
    """The detail page's status and attempts, polled while processing is pending."""
    item = tenant_object(InboundRequest, request_id)
    status = 200 if item.status in LIVE else htmx.STOP_POLLING
    return htmx.render("inbound/_request_live.html", **_request_context(item), status=status)


@bp.post("/requests/<int:request_id>/reprocess")
def reprocess(request_id: int):
    """Run the routes again for an accepted request (publishing stays idempotent)."""
    item = tenant_object(InboundRequest, request_id)
    try:
        inbound.reprocess(item)
    except ApiError as error:
        flash(error.message, "error")
    else:
        audited("inbound.reprocess", "inbound_request", item.id, after={"source": item.source.slug})
        flash(f"Request {item.id} queued for processing again.")
    return redirect(url_for("inbound.request_detail", request_id=item.id))


def _log_filters() -> tuple[InboundLogForm, int | None, str | None]:
    form = InboundLogForm(request.args)
    items = db.session.scalars(select(Source).where(Source.tenant_id == g.tenant.id).order_by(Source.slug))
    form.source.choices = options([(0, "any")] + [(s.id, s.slug) for s in items])
    form.status.choices = options([("", "any")] + [(s, s) for s in inbound.STATUSES])
    if not form.validate():
        return form, None, None
    return form, form.source.data or None, form.status.data or None


def _source_form() -> SourceForm:
    form = SourceForm(request.form if request.method == "POST" else None)
    form.provider.choices = options((name, preset.label) for name, preset in providers.PRESETS.items())
    return form


def _presets() -> list[dict]:
    """What the source form explains per preset: the secret to paste, the settings it takes."""
    return [
        {"name": name, "label": preset.label, "secret_help": preset.secret_help, "defaults": preset.default_config}
        for name, preset in providers.PRESETS.items()
    ]


def _detail(item: Source, *, new_secrets: list[str] | None = None, secret_form: SecretForm | None = None, status: int = 200):
    return htmx.render(
        "inbound/source.html",
        source=item,
        info=sources.serialize(item),
        preset=providers.PRESETS[item.provider],
        new_secrets=new_secrets,
        secret_form=secret_form or SecretForm(),
        log=history.inbound_page(g.tenant.id, source_id=item.id, limit=20),
        status=status,
    )


def _request_context(item: InboundRequest) -> dict:
    attempts = list(db.session.scalars(select(InboundAttempt).where(InboundAttempt.request_id == item.id).order_by(InboundAttempt.id)))
    return {"r": item, "detail": serialize.inbound_detail(item, attempts), "attempts": attempts}
