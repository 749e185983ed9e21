"""Source rules shared by the API and the dashboard: validation, secrets, routes, URLs.

A source is where one provider posts: ``/hooks/<tenant>/<source>``, or
``/hooks/<tenant>`` for the tenant's default source. Validation raises
:class:`~webhooks.errors.ApiError` naming the field, which the API returns as
422 and the dashboard shows beside the field.

Secrets are shown in full only in the answer that created the source (the
API adds them itself); :func:`serialize` gives hints, enough to tell which
secret is which.
"""

from __future__ import annotations

import ipaddress
import re
import secrets as _secrets
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask import has_request_context
from flask import url_for
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from webhooks import filters
from webhooks import hooks
from webhooks import providers
from webhooks import signing
from webhooks.db import db
from webhooks.errors import ApiError
from webhooks.errors import checked_text
from webhooks.models import PayloadTemplate
from webhooks.models import Source
from webhooks.models import Tenant
from webhooks.publishing import EVENT_TYPE

# A leading letter keeps slugs apart from ids, so ``?source=`` can take either.
SLUG = re.compile(r"[a-z][a-z0-9-]{0,63}")
MAX_SECRETS = 5
MAX_SECRET_LENGTH = 1000
MAX_ROUTES = 50
MAX_ALLOWLIST = 100
# Bodies are kept whole in the database; the app refuses anything larger anyway.
MAX_BODY_LIMIT = 16 * 1024 * 1024
MIN_BODY_LIMIT = 1024
#: Routes may forward the provider's type: ``"github.{event_type}"``.
EVENT_TYPE_PLACEHOLDER = "{event_type}"
ROUTE_FIELDS = {"when", "action", "event_type", "template_id", "handler", "description"}
# Presets whose secret the user makes up and pastes into the provider, so the
# hub can offer one; the others (Stripe, Shopify, Slack) issue their own.
GENERATED_SECRETS = {"github", "gitlab", "hmac", "token", "standard"}
#: Seconds a process keeps what it read for a hook URL (see :func:`lookup`).
CACHE_SECONDS = 2.0
CACHE_ENTRIES = 10_000
UNAUTHENTICATED_WARNING = (
    "This source accepts unauthenticated requests: anyone who knows its URL can send events."
    " Choose a signature preset if the provider supports one, or at least an IP allowlist."
)


def create(tenant: Tenant, data: Any) -> Source:
    """A new source from API-shaped ``data``; ``slug`` and ``provider`` are required.

    Without a secret, one is generated for presets where the user chooses it
    (GitHub, GitLab, generic HMAC, token, Standard Webhooks); Stripe, Shopify
    and Slack issue their own, so it must be given.
    """
    source = Source(tenant_id=tenant.id, tenant=tenant, config={}, secrets=[], ip_allowlist=[], routes=[])
    apply(source, data, creating=True)
    if not source.secrets and not _preset(source).unauthenticated:
        if source.provider not in GENERATED_SECRETS:
            label = _preset(source).label
            raise ApiError(422, f"secret is required for {label}: {_preset(source).secret_help}", field="secret")
        source.secrets = [generate_secret(source.provider)]
    db.session.add(source)
    _commit(source)
    return source


def apply(source: Source, data: Any, *, creating: bool = False) -> None:
    """Validate and apply changes; only the keys present in ``data`` change.

    Changing ``provider`` without sending ``config`` resets the settings to
    the new preset's defaults, since settings of one preset mean nothing to
    another. ``secret`` replaces every secret with one, ``secrets`` sets the
    whole list (first one first), and ``add_secret`` puts a new one in front
    of the others: the way to rotate without losing deliveries.
    """
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = sorted(set(data) - set(SETTERS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}", field=unknown[0])
    if creating:
        for required in ("slug", "provider"):
            if required not in data:
                raise ApiError(422, f"{required} is required", field=required)
    # Provider first: the config and secrets are checked against it.
    for name in SETTERS:
        if name in data:
            SETTERS[name](source, data[name])
    if "provider" in data and "config" not in data:
        source.config = providers.validate_config(source.provider, {})
    if "provider" in data and not {"secret", "secrets"} & set(data):
        for index, secret in enumerate(source.secrets or []):
            _checked_secret(source, secret, f"secrets[{index}]")
    if not creating and not source.secrets and not _preset(source).unauthenticated:
        # Create refuses this too: a signed source without a secret would refuse every request.
        raise ApiError(422, f"a {_preset(source).label} source needs at least one secret", field="secrets")


def delete(source: Source) -> None:
    """Delete a source with every request it received."""
    db.session.delete(source)
    db.session.commit()
    forget()


def save(source: Source) -> None:
    """Commit changes made by :func:`apply`; a slug taken meanwhile is a 409."""
    _commit(source)


@dataclass(frozen=True)
class HookSource:
    """What receiving needs of a source, read once and kept for :data:`CACHE_SECONDS`.

    Plain values (secrets decrypted, allowlist parsed, masked header names
    worked out), so a request served from the cache touches neither the
    database nor the cipher before storing itself. Never mutate one: every
    thread of the process shares it.
    """

    id: int
    tenant_id: int
    provider: str
    enabled: bool
    secrets: tuple[str, ...]
    config: dict
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_body_bytes: int
    rate_limit_per_minute: int | None
    sensitive_headers: frozenset[str]


def lookup(tenant_slug: str, source_slug: str | None) -> HookSource | None:
    """The source a hook URL names (without ``source_slug``, the tenant's default), or None.

    Answers come from a per-process cache for up to :data:`CACHE_SECONDS`,
    unknown URLs included, so a flood of posts costs no query each. Changes
    made through :func:`create`, :func:`save` and :func:`delete` clear this
    process's cache at once; other processes (gunicorn workers, ``flask
    worker``) see them once their cached answer expires.
    """
    cache = _hook_cache()
    key = (tenant_slug, source_slug)
    cached = cache.get(key)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    found = _read_hook_source(tenant_slug, source_slug)
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()  # posts to made-up URLs must not grow the cache without bound
    cache[key] = (now + CACHE_SECONDS, found)
    return found


def forget() -> None:
    """Drop this process's cached hook sources, after a change to any source."""
    _hook_cache().clear()


def _hook_cache() -> dict:
    # One cache per app: tests (and tools) run several apps on different databases in one process.
    return current_app.extensions.setdefault("sources.hooks", {})


def _read_hook_source(tenant_slug: str, source_slug: str | None) -> HookSource | None:
    query = select(Source).join(Tenant, Source.tenant_id == Tenant.id).where(Tenant.slug == tenant_slug)
    if source_slug is None:
        query = query.where(Source.is_default.is_(True))
    else:
        query = query.where(Source.slug == source_slug)
    source = db.session.scalar(query.limit(1))
    if source is None:
        return None
    return HookSource(
        id=source.id,
        tenant_id=source.tenant_id,
        provider=source.provider,
        enabled=source.enabled,
        secrets=tuple(source.secrets or ()),
        config=dict(source.config or {}),
        networks=tuple(ipaddress.ip_network(network) for network in source.ip_allowlist or ()),
        max_body_bytes=source.max_body_bytes,
        rate_limit_per_minute=source.rate_limit_per_minute,
        sensitive_headers=frozenset(providers.sensitive_headers(source.provider, source.config or {})),
    )


def by_reference(tenant_id: int, reference: str) -> Source | None:
    """The tenant's source by id (digits) or slug (which always starts with a letter)."""
    if reference.isdigit():
        source = db.session.get(Source, int(reference))
        return source if source is not None and source.tenant_id == tenant_id else None
    return db.session.scalar(select(Source).where(Source.tenant_id == tenant_id, Source.slug == reference))


def hook_url(source: Source, *, default: bool = False) -> str:
    """The full URL the provider posts to; ``default=True`` gives the ``/hooks/<tenant>`` form.

    Built from the current request's host, as the provider sees the hub;
    outside a request (CLI, worker) it is the path alone unless
    ``SERVER_NAME`` is configured.
    """
    values = {"tenant": source.tenant.slug}
    if not default:
        values["source"] = source.slug
    if has_request_context() or current_app.config.get("SERVER_NAME"):
        return url_for("hooks.receive", _external=True, **values)
    return "/hooks/" + "/".join(values.values())


def generate_secret(provider: str) -> str:
    """A new secret in the form the preset expects: ``whsec_...`` for Standard Webhooks, else hex."""
    if provider == "standard":
        return signing.generate_secret()
    return _secrets.token_hex(32)


def secret_hint(secret: str) -> str:
    """Enough of a secret to tell two apart, never enough to use one."""
    if len(secret) >= 32:
        return secret[:4] + "…" + secret[-4:]
    if len(secret) >= 16:
        return "…" + secret[-4:]
    return "***"


def serialize(source: Source) -> dict:
    """The JSON shape of a source, secrets as hints; the dashboard shows the same fields."""
    preset = _preset(source)
    return {
        "id": source.id,
        "slug": source.slug,
        "name": source.name,
        "provider": source.provider,
        "provider_label": preset.label,
        "url": hook_url(source),
        "default_url": hook_url(source, default=True) if source.is_default else None,
        "enabled": source.enabled,
        "is_default": source.is_default,
        "unauthenticated": preset.unauthenticated,
        "warning": UNAUTHENTICATED_WARNING if preset.unauthenticated else None,
        "config": providers.validate_config(source.provider, source.config or {}),
        "secret_hints": [secret_hint(secret) for secret in source.secrets or []],
        "ip_allowlist": source.ip_allowlist or [],
        "max_body_bytes": source.max_body_bytes,
        "rate_limit_per_minute": source.rate_limit_per_minute,
        "max_attempts": source.max_attempts,
        "routes": source.routes or [],
        "created_at": source.created_at.isoformat() if source.created_at else None,
        "updated_at": source.updated_at.isoformat() if source.updated_at else None,
    }


# -- field rules ----------------------------------------------------------------


def _preset(source: Source) -> providers.Preset:
    return providers.PRESETS[source.provider]


def _commit(source: Source) -> None:
    """Commit one source: its slug unique in the tenant, and at most one default per tenant."""
    # No autoflush: a new source would otherwise be inserted by this query and find itself.
    with db.session.no_autoflush:
        clash = db.session.scalar(
            select(Source.id).where(
                Source.tenant_id == source.tenant_id, Source.slug == source.slug, Source.id != (source.id or -1)
            )
        )
    if clash is not None:
        db.session.rollback()
        raise ApiError(409, f"a source with slug {source.slug!r} exists already", field="slug")
    try:
        if source.is_default:
            db.session.flush()  # gives a new source its id, so the update below can spare it
            others = update(Source).where(
                Source.tenant_id == source.tenant_id, Source.is_default.is_(True), Source.id != source.id
            )
            db.session.execute(others.values(is_default=False).execution_options(synchronize_session=False))
        db.session.commit()
        forget()
    except IntegrityError:
        # Another request took the slug between the check and the commit.
        db.session.rollback()
        raise ApiError(409, f"a source with slug {source.slug!r} exists already", field="slug") from None


def _set_slug(source: Source, value: Any) -> None:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise ApiError(
            422, "slug must be 1 to 64 lowercase letters, digits and dashes, starting with a letter", field="slug"
        )
    source.slug = value


def _set_name(source: Source, value: Any) -> None:
    source.name = checked_text(value, "name", max_length=200).strip()


def _set_provider(source: Source, value: Any) -> None:
    if not isinstance(value, str) or value not in providers.PRESETS:
        raise ApiError(422, f"provider must be one of {', '.join(providers.PRESETS)}", field="provider")
    source.provider = value


def _set_config(source: Source, value: Any) -> None:
    if not isinstance(value, dict):
        raise ApiError(422, "config must be an object of preset settings", field="config")
    try:
        source.config = providers.validate_config(source.provider, value)
    except ValueError as exc:
        raise ApiError(422, str(exc), field="config") from None


def _checked_secret(source: Source, value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_SECRET_LENGTH:
        raise ApiError(422, f"{field} must be a string of 1 to {MAX_SECRET_LENGTH} characters", field=field)
    # Header values are trimmed and cannot carry control characters, so such a secret could never match.
    if value != value.strip() or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ApiError(422, f"{field} must not contain control characters or surrounding spaces", field=field)
    if source.provider == "standard":
        try:
            signing.validate_secret(value)
        except signing.SignatureError as exc:
            raise ApiError(422, str(exc), field=field) from None
    return value


def _set_secret(source: Source, value: Any) -> None:
    source.secrets = [_checked_secret(source, value, "secret")]


def _set_secrets(source: Source, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_SECRETS:
        raise ApiError(422, f"secrets must be a list of at most {MAX_SECRETS} secrets", field="secrets")
    checked = [_checked_secret(source, item, f"secrets[{index}]") for index, item in enumerate(value)]
    source.secrets = list(dict.fromkeys(checked))


def _add_secret(source: Source, value: Any) -> None:
    secret = _checked_secret(source, value, "add_secret")
    kept = [item for item in source.secrets or [] if item != secret]
    if len(kept) >= MAX_SECRETS:
        raise ApiError(
            422, f"a source holds at most {MAX_SECRETS} secrets; drop old ones with 'secrets'", field="add_secret"
        )
    # A new list, not an in-place change: the encrypted column only notices assignment.
    source.secrets = [secret, *kept]


def _set_ip_allowlist(source: Source, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_ALLOWLIST:
        raise ApiError(
            422, f"ip_allowlist must be a list of at most {MAX_ALLOWLIST} addresses or CIDR ranges", field="ip_allowlist"
        )
    networks = []
    for index, item in enumerate(value):
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except (AttributeError, ValueError):
            raise ApiError(
                422, f"{item!r} is not an IP address or CIDR range such as 192.0.2.0/24", field=f"ip_allowlist[{index}]"
            ) from None
    source.ip_allowlist = list(dict.fromkeys(networks))


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(422, f"{field} must be a whole number from {low} to {high}", field=field)
    return value


def _set_max_body_bytes(source: Source, value: Any) -> None:
    source.max_body_bytes = _integer(value, "max_body_bytes", MIN_BODY_LIMIT, MAX_BODY_LIMIT)


def _set_rate_limit(source: Source, value: Any) -> None:
    source.rate_limit_per_minute = None if value is None else _integer(value, "rate_limit_per_minute", 1, 1_000_000)


def _set_max_attempts(source: Source, value: Any) -> None:
    source.max_attempts = _integer(value, "max_attempts", 1, 20)


def _flag(name: str):
    def setter(source: Source, value: Any) -> None:
        if not isinstance(value, bool):
            raise ApiError(422, f"{name} must be true or false", field=name)
        setattr(source, name, value)

    return setter


def _set_routes(source: Source, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_ROUTES:
        raise ApiError(422, f"routes must be a list of at most {MAX_ROUTES} routes", field="routes")
    source.routes = [_checked_route(source, route, f"routes[{index}]") for index, route in enumerate(value)]


def _checked_route(source: Source, route: Any, where: str) -> dict:
    """One route, normalised: ``{when?, action: "publish", event_type, template_id?}`` or ``{when?, action: "handler", handler}``."""
    if not isinstance(route, dict):
        raise ApiError(422, "a route must be an object with an action", field=where)
    unknown = sorted(set(route) - ROUTE_FIELDS)
    if unknown:
        raise ApiError(422, f"unknown route field {unknown[0]!r}", field=f"{where}.{unknown[0]}")
    checked: dict[str, Any] = {}
    if route.get("when") not in (None, ""):
        try:
            filters.parse(route["when"])
        except filters.FilterSyntaxError as exc:
            raise ApiError(422, f"when: {exc}", field=f"{where}.when") from None
        checked["when"] = route["when"]
    if route.get("description") not in (None, ""):
        checked["description"] = checked_text(route["description"], f"{where}.description", max_length=500)
    action = route.get("action")
    checked["action"] = action
    if action == "publish":
        checked.update(_checked_publish(source, route, where))
    elif action == "handler":
        checked["handler"] = _checked_handler_name(route.get("handler"), where)
    else:
        raise ApiError(422, "action must be 'publish' or 'handler'", field=f"{where}.action")
    return checked


def _checked_publish(source: Source, route: dict, where: str) -> dict:
    if "handler" in route:
        raise ApiError(422, "a publish route has no handler", field=f"{where}.handler")
    event_type = route.get("event_type")
    sample = event_type.replace(EVENT_TYPE_PLACEHOLDER, "x") if isinstance(event_type, str) else None
    if sample is None or not EVENT_TYPE.match(sample):
        raise ApiError(
            422,
            "event_type must be a name like 'github.push' (letters, digits, _ . : -); "
            "'{event_type}' stands for the provider's type",
            field=f"{where}.event_type",
        )
    checked = {"event_type": event_type}
    template_id = route.get("template_id")
    if template_id is not None:
        # No autoflush: a slug changed in the same request must meet its clash check, not the unique index here.
        with db.session.no_autoflush:
            valid = isinstance(template_id, int) and not isinstance(template_id, bool)
            template = db.session.get(PayloadTemplate, template_id) if valid else None
        if template is None or template.tenant_id != source.tenant_id:
            raise ApiError(422, "template_id does not name one of your templates", field=f"{where}.template_id")
        checked["template_id"] = template_id
    return checked


def _checked_handler_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ApiError(422, "handler must name a registered handler, or '*' for all", field=f"{where}.handler")
    if name != hooks.EVERY_HANDLER and hooks.get(name) is None:
        known = ", ".join(hooks.names()) or "none; list modules in WEBHOOKS_HANDLERS"
        raise ApiError(422, f"no handler named {name!r} is registered (registered: {known})", field=f"{where}.handler")
    return name


SETTERS = {
    "slug": _set_slug,
    "name": _set_name,
    "provider": _set_provider,
    "config": _set_config,
    "secret": _set_secret,
    "secrets": _set_secrets,
    "add_secret": _add_secret,
    "ip_allowlist": _set_ip_allowlist,
    "max_body_bytes": _set_max_body_bytes,
    "rate_limit_per_minute": _set_rate_limit,
    "max_attempts": _set_max_attempts,
    "enabled": _flag("enabled"),
    "is_default": _flag("is_default"),
    "routes": _set_routes,
}
