"""The event-type catalog: names, descriptions, JSON Schemas and sample payloads.

Publishing checks events against it: an event whose type has a schema must
validate (422 naming the failing path), and a tenant in strict mode may only
publish types the catalog knows.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable
from sqlalchemy import select

from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.errors import checked_text
from webhooks.models import EventType


def find(tenant_id: int, name: str) -> EventType | None:
    """The catalog entry for ``name`` in a tenant, if any."""
    return db.session.scalar(select(EventType).where(EventType.tenant_id == tenant_id, EventType.name == name))


def entries(tenant_id: int) -> dict[str, EventType]:
    """The tenant's whole catalog by name."""
    return {entry.name: entry for entry in db.session.scalars(select(EventType).where(EventType.tenant_id == tenant_id))}


def validators(tenant_id: int) -> dict[str, Any]:
    """What publishing checks against: each catalog type's schema validator, or None when it has no schema."""
    rows = db.session.execute(select(EventType.name, EventType.schema).where(EventType.tenant_id == tenant_id))
    return {name: None if schema is None else _validator(json.dumps(schema, sort_keys=True)) for name, schema in rows}


def check_schema(schema: Any) -> None:
    """Refuse a schema that is not a valid JSON Schema (raises ``ValueError``)."""
    if schema is None:
        return
    if not isinstance(schema, (dict, bool)):
        raise ValueError("a JSON Schema is an object (or true or false)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None


def schema_errors(schema: Any, payload: Any) -> list[str]:
    """Every violation as ``path: message``, most relevant first."""
    return _errors(_validator(json.dumps(schema, sort_keys=True)), payload)


class SchemaUnusable(ValueError):
    """The schema has a ``$ref`` that leads nowhere: only validating a payload finds that out."""


def check_event(known: dict[str, Any], event_type: str, payload: Any, *, strict: bool, field: str = "payload") -> None:
    """Raise ``ApiError(422)`` if the catalog (``known``, from :func:`validators`) refuses this event;
    a ``strict`` tenant accepts catalog types only."""
    if event_type not in known:
        if strict:
            raise ApiError(422, f"unknown event type {event_type!r}; this tenant only accepts catalog types", field="type")
        return
    validator = known[event_type]
    if validator is not None:
        try:
            errors = _errors(validator, payload)
        except SchemaUnusable as exc:
            raise ApiError(422, f"the catalog's schema of {event_type} cannot be used: {exc}", field="type") from None
        if errors:
            raise ApiError(422, f"payload does not match the schema of {event_type}: {errors[0]}", field=field)


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str):
    schema = json.loads(schema_text)
    return jsonschema.validators.validator_for(schema)(schema)


def _errors(validator, payload: Any) -> list[str]:
    try:
        errors = sorted(validator.iter_errors(payload), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    except Unresolvable as exc:
        raise SchemaUnusable(f"the schema has a $ref that does not resolve: {exc}") from None
    return [f"{_path(error)}: {error.message}" for error in errors]


def _path(error) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


FIELDS = {"name", "description", "schema", "sample"}


def apply(entry: EventType, data: Any, *, creating: bool) -> None:
    """Validate and apply catalog changes; a sample must satisfy the schema it sits beside."""
    from webhooks.publishing import EVENT_TYPE

    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = set(data) - FIELDS
    if unknown:
        raise ApiError(422, f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    if creating and "name" not in data:
        raise ApiError(422, "name is required", field="name")
    name = data.get("name", entry.name)
    if not isinstance(name, str) or not EVENT_TYPE.match(name):
        raise ApiError(422, "name must be an event type like 'order.created'", field="name")
    clash = find(entry.tenant_id, name)
    if clash is not None and clash.id != entry.id:
        raise ApiError(409, f"event type {name!r} exists already", field="name")
    description = checked_text(data.get("description", entry.description) or "", "description")
    schema = data.get("schema", entry.schema)
    try:
        check_schema(schema)
    except ValueError as exc:
        raise ApiError(422, str(exc), field="schema") from None
    sample = data.get("sample", entry.sample)
    if schema is not None and sample is not None:
        try:
            errors = schema_errors(schema, sample)
        except SchemaUnusable as exc:
            raise ApiError(422, str(exc), field="schema") from None
        if errors:
            raise ApiError(422, f"the sample does not match the schema: {errors[0]}", field="sample")
    entry.name, entry.description, entry.schema, entry.sample = name, description, schema, sample


def serialize(entry: EventType) -> dict:
    return {
        "id": entry.id,
        "name": entry.name,
        "description": entry.description,
        "schema": entry.schema,
        "sample": entry.sample,
        "created_at": entry.created_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
    }
