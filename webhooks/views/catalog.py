"""The event-type catalog and the payload template editor with its live preview."""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import url_for
from sqlalchemy import select

from webhooks import catalog
from webhooks import htmx
from webhooks import payload_templates
from webhooks import templating
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.forms import EventTypeForm
from webhooks.forms import TemplateForm
from webhooks.forms import show_api_error
from webhooks.forms import valid_except
from webhooks.models import Endpoint
from webhooks.models import EventType
from webhooks.models import PayloadTemplate
from webhooks.views.auth import audited
from webhooks.views.auth import editor_only
from webhooks.views.auth import guard
from webhooks.views.auth import read_only
from webhooks.views.auth import tenant_object

bp = Blueprint("catalog", __name__, url_prefix="/t/<tenant>")
guard(bp)


@bp.get("/event-types")
def event_types():
    """The tenant's event-type catalog."""
    items = db.session.scalars(select(EventType).where(EventType.tenant_id == g.tenant.id).order_by(EventType.name))
    return htmx.render("catalog/event_types.html", items=list(items))


@bp.route("/event-types/new", methods=["GET", "POST"])
@editor_only
def create_event_type():
    """The new-event-type form."""
    form = EventTypeForm(request.form if request.method == "POST" else None)
    if request.method == "POST" and form.validate():
        entry = EventType(tenant_id=g.tenant.id, name="")
        try:
            catalog.apply(entry, _event_type_data(form), creating=True)
        except ApiError as error:
            show_api_error(form, error)
        else:
            db.session.add(entry)
            db.session.commit()
            audited("event_type.create", "event_type", entry.id, after=catalog.serialize(entry))
            flash(f"Event type {entry.name} created.")
            return redirect(url_for("catalog.edit_event_type", type_id=entry.id))
    return htmx.render("catalog/event_type.html", form=form, entry=None, status=422 if request.method == "POST" else 200)


@bp.route("/event-types/<int:type_id>", methods=["GET", "POST"])
def edit_event_type(type_id: int):
    """One event type; a read-only form for viewers."""
    entry = tenant_object(EventType, type_id)
    form = EventTypeForm(request.form if request.method == "POST" else None, obj=entry)
    if request.method == "POST" and form.validate():
        before = catalog.serialize(entry)
        try:
            catalog.apply(entry, _event_type_data(form), creating=False)
            db.session.commit()
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error)
        else:
            audited("event_type.update", "event_type", entry.id, before=before, after=catalog.serialize(entry))
            flash(f"Event type {entry.name} saved.")
            return redirect(url_for("catalog.edit_event_type", type_id=entry.id))
    status = 422 if request.method == "POST" else 200
    return htmx.render("catalog/event_type.html", form=form, entry=entry, status=status)


@bp.post("/event-types/<int:type_id>/delete")
def delete_event_type(type_id: int):
    """Delete a catalog entry; events of its type can still be published."""
    entry = tenant_object(EventType, type_id)
    before = catalog.serialize(entry)
    db.session.delete(entry)
    db.session.commit()
    audited("event_type.delete", "event_type", type_id, before=before)
    flash(f"Event type {before['name']} deleted.")
    return redirect(url_for("catalog.event_types"))


@bp.get("/templates")
def templates():
    """The tenant's payload templates and how many endpoints use each."""
    items = db.session.scalars(select(PayloadTemplate).where(PayloadTemplate.tenant_id == g.tenant.id).order_by(PayloadTemplate.name))
    used = dict(
        db.session.execute(
            select(Endpoint.template_id, db.func.count()).where(Endpoint.tenant_id == g.tenant.id).group_by(Endpoint.template_id)
        ).all()
    )
    return htmx.render("catalog/templates.html", items=list(items), used=used)


@bp.route("/templates/new", methods=["GET", "POST"])
@editor_only
def create_template():
    """The template editor for a new template."""
    form = _template_form(None)
    if request.method == "POST" and valid_except(form, "payload"):
        try:
            template = payload_templates.create(g.tenant, _template_data(form))
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error)
        else:
            audited("template.create", "template", template.id, after=payload_templates.serialize(template))
            flash(f"Template {template.name} created.")
            return redirect(url_for("catalog.edit_template", template_id=template.id))
    return _template_page(form, None, 422 if request.method == "POST" else 200)


@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
def edit_template(template_id: int):
    """The template editor; saving checks the body against the sample."""
    template = tenant_object(PayloadTemplate, template_id)
    form = _template_form(template)
    if request.method == "POST" and valid_except(form, "payload"):
        before = payload_templates.serialize(template)
        try:
            payload_templates.apply(template, _template_data(form), creating=False)
            db.session.commit()
        except ApiError as error:
            db.session.rollback()
            show_api_error(form, error)
        else:
            audited("template.update", "template", template.id, before=before, after=payload_templates.serialize(template))
            flash(f"Template {template.name} saved.")
            return redirect(url_for("catalog.edit_template", template_id=template.id))
    return _template_page(form, template, 422 if request.method == "POST" else 200)


@bp.post("/templates/<int:template_id>/delete")
def delete_template(template_id: int):
    """Delete a template; its endpoints go back to the default envelope."""
    template = tenant_object(PayloadTemplate, template_id)
    before = payload_templates.serialize(template)
    db.session.delete(template)
    db.session.commit()
    audited("template.delete", "template", template_id, before=before)
    flash(f"Template {before['name']} deleted; its endpoints send the default envelope now.")
    return redirect(url_for("catalog.templates"))


@bp.post("/templates/preview")
@read_only
def preview_template():
    """Render the template being typed against the payload beside it (or the type's sample)."""
    form = TemplateForm(request.form)
    form.validate()
    if form.payload.errors:
        result = {"ok": False, "error": f"payload: {form.payload.errors[0]}", "line": None}
    else:
        event_type = (form.event_type.data or "").strip() or None
        payload = form.payload.data if form.payload.data is not None else payload_templates.sample_payload(g.tenant.id, event_type)
        result = templating.preview(form.body.data or "", payload, event=payload_templates.sample_event(event_type))
    lines = (form.body.data or "").splitlines()
    return htmx.render("catalog/_preview.html", result=result, lines=lines)


@bp.get("/event-types/sample")
def sample_payload():
    """The editors' payload textarea, refilled with the catalog sample of the chosen event type."""
    event_type = request.args.get("event_type", "").strip() or None
    form = TemplateForm(data={"payload": payload_templates.sample_payload(g.tenant.id, event_type)})
    return htmx.render("catalog/_sample.html", form=form, trigger="sample-loaded")


def _event_type_data(form: EventTypeForm) -> dict:
    return {"name": form.name.data.strip(), "description": form.description.data or "", "schema": form.schema.data, "sample": form.sample.data}


def _template_form(template: PayloadTemplate | None) -> TemplateForm:
    if request.method == "POST":
        return TemplateForm(request.form)
    if template is None:
        return TemplateForm(data={"body": '{\n  "id": {{ event.id | tojson }},\n  "type": {{ event.type | tojson }},\n  "data": {{ payload | tojson }}\n}', "payload": {}})
    form = TemplateForm(obj=template)
    form.payload.data = payload_templates.sample_payload(g.tenant.id, template.event_type)
    return form


def _template_data(form: TemplateForm) -> dict:
    return {
        "name": form.name.data.strip(),
        "description": form.description.data or "",
        "event_type": (form.event_type.data or "").strip() or None,
        "body": form.body.data,
    }


def _template_page(form: TemplateForm, template: PayloadTemplate | None, status: int):
    names = list(db.session.scalars(select(EventType.name).where(EventType.tenant_id == g.tenant.id).order_by(EventType.name)))
    event_type = (form.event_type.data or "").strip() or None
    payload = form.payload.data if form.payload.data is not None else payload_templates.sample_payload(g.tenant.id, event_type)
    result = templating.preview(form.body.data or "", payload, event=payload_templates.sample_event(event_type))
    return htmx.render(
        "catalog/template.html",
        form=form,
        template=template,
        type_names=names,
        result=result,
        lines=(form.body.data or "").splitlines(),
        status=status,
    )
