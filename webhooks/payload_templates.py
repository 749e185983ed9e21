"""Payload template rules shared by the API and the dashboard: validation on save.

A template is saved only if it renders valid JSON against the sample payload
of its event type (or an empty object without one), so a typo is caught by
the person typing it and not by a failed delivery at 2 a.m.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from webhooks import catalog
from webhooks import templating
from webhooks.db import db
from webhooks.db import now_utc
from webhooks.errors import ApiError
from webhooks.errors import checked_text
from webhooks.models import PayloadTemplate
from webhooks.models import Tenant

FIELDS = {"name", "description", "body", "event_type"}
# Compiling is not time-bounded like rendering is, so the source itself is capped.
MAX_BODY_CHARS = 64 * 1024


def sample_event(event_type: str | None) -> dict:
    """The ``event`` object previews render with."""
    return {"id": "msg_preview", "type": event_type or "example.event", "created_at": now_utc().isoformat()}


def sample_payload(tenant_id: int, event_type: str | None) -> Any:
    """The catalog's sample for ``event_type``, or ``{}``."""
    entry = catalog.find(tenant_id, event_type) if event_type else None
    return entry.sample if entry is not None and entry.sample is not None else {}


def apply(template: PayloadTemplate, data: Any, *, creating: bool) -> None:
    """Validate and apply ``data``; the body must render valid JSON against the sample."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = set(data) - FIELDS
    if unknown:
        raise ApiError(422, f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    if creating:
        for required in ("name", "body"):
            if required not in data:
                raise ApiError(422, f"{required} is required", field=required)
    name = checked_text(data.get("name", template.name), "name", max_length=200)
    if not name.strip():
        raise ApiError(422, "name must be 1 to 200 characters", field="name")
    _check_unique(template, name.strip())
    if "body" in data:
        checked_text(data["body"], "body")
    if data.get("description") is not None:
        checked_text(data["description"], "description")
    if data.get("event_type"):
        checked_text(data["event_type"], "event_type", max_length=200)
    template.name = name.strip()
    template.description = data.get("description", template.description) or ""
    template.event_type = data.get("event_type", template.event_type) or None
    template.body = data.get("body", template.body)
    if len(template.body) > MAX_BODY_CHARS:
        raise ApiError(422, f"a template may be at most {MAX_BODY_CHARS} characters", field="body")
    check_body(template.tenant_id, template.body, template.event_type)


def check_body(tenant_id: int, body: str, event_type: str | None) -> None:
    """Raise ``ApiError(422)`` with the line when ``body`` does not render valid JSON."""
    result = templating.preview(body, sample_payload(tenant_id, event_type), event=sample_event(event_type))
    if not result["ok"]:
        line = f" (line {result['line']})" if result.get("line") else ""
        raise ApiError(422, f"template does not render valid JSON{line}: {result['error']}", field="body")


def create(tenant: Tenant, data: Any) -> PayloadTemplate:
    template = PayloadTemplate(tenant_id=tenant.id, name="", body="")
    apply(template, data, creating=True)
    db.session.add(template)
    db.session.commit()
    return template


def _check_unique(template: PayloadTemplate, name: str) -> None:
    clash = db.session.scalar(
        select(PayloadTemplate).where(
            PayloadTemplate.tenant_id == template.tenant_id,
            PayloadTemplate.name == name,
            PayloadTemplate.id != (template.id or -1),
        )
    )
    if clash is not None:
        raise ApiError(409, f"a template named {name!r} exists already", field="name")


def serialize(template: PayloadTemplate) -> dict:
    return {
        "id": template.id,
        "name": template.name,
        "description": template.description,
        "event_type": template.event_type,
        "body": template.body,
        "created_at": template.created_at.isoformat(),
        "updated_at": template.updated_at.isoformat(),
    }
