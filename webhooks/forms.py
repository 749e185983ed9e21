"""WTForms for the dashboard: CSRF on every form, one form per editor.

Forms turn what a person typed into the API-shaped dicts that the rule
modules (``endpoints``, ``catalog``, ``payload_templates``) validate; they do
not repeat those rules. A rule module's ``ApiError`` names a field, and
:func:`show_api_error` puts its message beside that field.

CSRF uses WTForms' ``SessionCSRF``: a random seed in the (signed) session
cookie and an HMAC of it in each form. htmx requests send the same token in
an ``X-CSRF-Token`` header; ``webhooks.views.auth`` checks one or the other
on every request that changes something.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from datetime import timezone

from flask import current_app
from flask import session
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField
from wtforms import Field
from wtforms import FloatField
from wtforms import Form
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import SelectField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.csrf.session import SessionCSRF
from wtforms.fields import DateTimeLocalField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import InputRequired
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import Regexp
from wtforms.validators import ValidationError
from wtforms.widgets import TextArea

from webhooks.errors import ApiError
from webhooks.models import DELIVERY_STATUSES
from webhooks.models import TENANT_SLUG

CSRF_LIFETIME = timedelta(hours=12)


class _SessionCSRF(SessionCSRF):
    """WTForms' session CSRF, except that a session without a seed (a new
    browser, an expired cookie) fails validation instead of raising ``KeyError``."""

    def validate_csrf_token(self, form, field):
        if "csrf" not in self.session:
            raise ValidationError("CSRF token missing: reload the page and try again.")
        super().validate_csrf_token(form, field)


class BaseForm(Form):
    """A form with a CSRF token bound to the session; the secret is read per request."""

    class Meta:
        csrf = True
        csrf_class = _SessionCSRF
        csrf_time_limit = CSRF_LIFETIME

        @property
        def csrf_secret(self) -> bytes:
            return current_app.config["SECRET_KEY"].encode()

        @property
        def csrf_context(self):
            return session


class QueryForm(Form):
    """A GET form (filters): nothing changes, so no CSRF token."""


def csrf_token() -> str:
    """A fresh token for this session, for hidden fields and the ``X-CSRF-Token`` header."""
    return BaseForm().csrf_token.current_token


def csrf_valid(token: str | None) -> bool:
    """True when ``token`` was issued for this session and has not expired."""
    return BaseForm(MultiDict({"csrf_token": token or ""})).validate()


def show_api_error(form: Form, error: ApiError, aliases: dict[str, str] | None = None) -> None:
    """Put a rule module's error beside the field it names, or above the form.

    A path such as ``routes[2].when`` or ``ip_allowlist[0]`` lands beside
    the field of its first part; ``aliases`` maps names the form spells
    differently.
    """
    name = error.field or ""
    base = re.split(r"[\[.]", name, maxsplit=1)[0]
    aliases = aliases or {}
    name = aliases.get(name) or aliases.get(base) or (name if isinstance(getattr(form, name, None), Field) else base)
    field = getattr(form, name, None) if name else None
    if isinstance(field, Field):
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)


def options(pairs) -> list[SelectChoice]:
    """Select options from ``(value, label)`` pairs (WTForms 3.3 deprecates plain tuples)."""
    return [SelectChoice(value, label) for value, label in pairs]


def valid_except(form: Form, *names: str) -> bool:
    """Validate ``form`` but ignore errors in ``names``: fields that only feed a
    preview (a half-typed test payload) must not block saving."""
    form.validate()
    return not set(form.errors) - set(names)


def utc(value):
    """A ``datetime-local`` value (no zone) read as UTC, the zone the dashboard shows."""
    return value.replace(tzinfo=timezone.utc) if value is not None else None


class JSONField(TextAreaField):
    """A textarea holding JSON; empty means None, invalid JSON is an error beside it."""

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        if not text:
            self.data = None
            return
        try:
            self.data = json.loads(text)
        except ValueError as exc:
            self.data = None
            raise ValueError(f"not valid JSON: {exc}") from None

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else json.dumps(self.data, indent=2, ensure_ascii=False)


class ListField(Field):
    """Every value submitted under one name, in page order (rule rows that can be reordered)."""

    widget = TextArea()

    def process_formdata(self, valuelist):
        self.data = [value.strip() for value in valuelist if value.strip()]

    def process_data(self, value):
        self.data = list(value or [])


class LoginForm(BaseForm):
    """Username and password; CSRF-protected too, so no other site can log anyone in."""

    username = StringField("Username", [DataRequired(), Length(max=100)])
    password = PasswordField("Password", [DataRequired()])


class PasswordForm(BaseForm):
    """A new password for the logged-in user, who proves it is them with the current one."""

    current_password = PasswordField("Current password", [DataRequired()], render_kw={"autocomplete": "current-password"})
    new_password = PasswordField(
        "New password",
        [DataRequired(), Length(min=8, max=200, message="Use 8 to 200 characters.")],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "New password again",
        [DataRequired(), EqualTo("new_password", message="The two new passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )


AUTH_TYPES = [("", "None"), ("header", "API key header"), ("basic", "Basic"), ("bearer", "Bearer token"), ("oauth2", "OAuth 2.0 client credentials")]
# Form field -> key in the endpoint's auth settings, per auth type; secrets are password fields.
AUTH_FIELDS = {
    "header": {"auth_header_name": "name", "auth_header_value": "value"},
    "basic": {"auth_username": "username", "auth_password": "password"},
    "bearer": {"auth_token": "token"},
    "oauth2": {
        "auth_token_url": "token_url",
        "auth_client_id": "client_id",
        "auth_client_secret": "client_secret",
        "auth_scope": "scope",
        "auth_audience": "audience",
    },
}
SECRET_AUTH_KEYS = {"value", "password", "token", "client_secret"}
# Endpoint settings that map one to one onto a form field.
POLICY_FIELDS = (
    "timeout_seconds",
    "max_attempts",
    "backoff_seconds",
    "ordered",
    "batch_size",
    "batch_window_seconds",
    "circuit_threshold",
    "circuit_cooldown_seconds",
    "disable_after_hours",
    "verify_tls",
)


class EndpointForm(BaseForm):
    """An endpoint's settings; ``to_data`` gives what :func:`webhooks.endpoints.apply` takes."""

    url = StringField("URL", [DataRequired(message="the URL is required")], render_kw={"placeholder": "https://example.com/webhooks", "inputmode": "url"})
    description = TextAreaField("Description", render_kw={"rows": 2})
    event_types = StringField("Event types", description="Comma-separated; wildcards like order.* work; empty means every type.")
    headers = TextAreaField("Custom headers", description="One per line: Name: value", render_kw={"rows": 3})
    template_id = SelectField("Payload template", coerce=int, choices=options([(0, "Default envelope")]))
    timeout_seconds = FloatField("Timeout (seconds)", [InputRequired()], default=15.0)
    max_attempts = IntegerField("Max attempts", [InputRequired()], default=6)
    backoff_seconds = FloatField("Backoff base (seconds)", [InputRequired()], default=30.0, description="Waits grow ×4 per attempt, ±20 % jitter.")
    rate_limit = IntegerField("Rate limit", [Optional()], description="Requests per period; empty for no limit.")
    rate_period = SelectField("per", choices=options([("second", "second"), ("minute", "minute")]), default="second")
    ordered = BooleanField("Ordered delivery", description="One delivery at a time, oldest first.")
    batch_size = IntegerField("Batch size", [InputRequired()], default=1, description="Events per request, sent as a JSON array; 1 means no batching.")
    batch_window_seconds = FloatField("Batch window (seconds)", [InputRequired()], default=0.0, description="How long the oldest event may wait for a batch to fill.")
    circuit_threshold = IntegerField("Circuit breaker threshold", [InputRequired()], default=5, description="Consecutive failures that pause deliveries.")
    circuit_cooldown_seconds = FloatField("Circuit cooldown (seconds)", [InputRequired()], default=60.0)
    disable_after_hours = FloatField("Disable after failing for (hours)", [InputRequired()], default=72.0)
    verify_tls = BooleanField("Verify TLS certificates", default=True)
    auth_type = SelectField("Receiver authentication", choices=options(AUTH_TYPES), default="")
    auth_header_name = StringField("Header name")
    auth_header_value = PasswordField("Header value")
    auth_username = StringField("Username")
    auth_password = PasswordField("Password")
    auth_token = PasswordField("Token")
    auth_token_url = StringField("Token URL")
    auth_client_id = StringField("Client id")
    auth_client_secret = PasswordField("Client secret")
    auth_scope = StringField("Scope")
    auth_audience = StringField("Audience")

    # ``ApiError.field`` values that name no field of this form.
    API_FIELDS = {"auth": "auth_type"}

    def validate_headers(self, field):
        self.parsed_headers = {}
        for number, line in enumerate(field.data.splitlines(), 1):
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise ValidationError(f"line {number}: write 'Name: value'")
            self.parsed_headers[name.strip()] = value.strip()

    def fill(self, endpoint) -> None:
        """Show an endpoint's settings (never its credentials)."""
        self.url.data = endpoint.url
        self.description.data = endpoint.description
        self.event_types.data = ", ".join(endpoint.event_types or [])
        self.headers.data = "\n".join(f"{name}: {value}" for name, value in (endpoint.headers or {}).items())
        self.template_id.data = endpoint.template_id or 0
        for name in POLICY_FIELDS + ("rate_period",):
            getattr(self, name).data = getattr(endpoint, name)
        self.rate_limit.data = endpoint.rate_limit
        auth = endpoint.auth or {}
        self.auth_type.data = auth.get("type", "")
        for field_name, key in AUTH_FIELDS.get(auth.get("type"), {}).items():
            if key not in SECRET_AUTH_KEYS:
                getattr(self, field_name).data = auth.get(key, "")

    def to_data(self, current_auth: dict | None = None) -> dict:
        """The API-shaped settings; ``current_auth`` supplies credentials left blank on an edit."""
        data = {
            "url": self.url.data.strip(),
            "description": self.description.data or "",
            "event_types": [part.strip() for part in (self.event_types.data or "").split(",") if part.strip()],
            "headers": getattr(self, "parsed_headers", {}),
            "template_id": self.template_id.data or None,
            "rate_limit": None if self.rate_limit.data is None else {"max": self.rate_limit.data, "per": self.rate_period.data},
            "auth": self.auth_settings(current_auth),
        }
        for name in POLICY_FIELDS:
            data[name] = getattr(self, name).data
        return data

    def auth_settings(self, current: dict | None) -> dict | None:
        kind = self.auth_type.data
        if not kind:
            return None
        settings = {"type": kind}
        for field_name, key in AUTH_FIELDS[kind].items():
            value = (getattr(self, field_name).data or "").strip()
            if not value and key in SECRET_AUTH_KEYS and current and current.get("type") == kind:
                value = current.get(key, "")  # left blank on an edit: keep the stored credential
            if value:
                settings[key] = value
        return settings


class FilterForm(BaseForm):
    """The rule rows of an endpoint's filter, and the payload they are tried on."""

    match = SelectField("Match", choices=options([("all", "all rules (AND)"), ("any", "any rule (OR)")]), default="all")
    rule = ListField("Rules")
    event_type = SelectField("Event type", choices=options([("", "—")]), default="", description="Loads its catalog sample below.")
    payload = JSONField("Payload to preview with", render_kw={"rows": 10, "spellcheck": "false"})


class TemplateForm(BaseForm):
    """A payload template, and the payload its preview renders with."""

    name = StringField("Name", [DataRequired(), Length(max=200)])
    description = StringField("Description")
    event_type = StringField("Event type", description="Its catalog sample is what the template is checked against.")
    body = TextAreaField("Template", [DataRequired()], render_kw={"rows": 16, "spellcheck": "false"})
    payload = JSONField("Payload to preview with", render_kw={"rows": 10, "spellcheck": "false"})


class EventTypeForm(BaseForm):
    """A catalog entry; schema and sample are JSON."""

    name = StringField("Name", [DataRequired(), Length(max=200)], render_kw={"placeholder": "order.created"})
    description = TextAreaField("Description", render_kw={"rows": 2})
    schema = JSONField("JSON Schema", description="Optional; events of this type must validate.", render_kw={"rows": 10, "spellcheck": "false"})
    sample = JSONField("Sample payload", description="Used by template and filter previews.", render_kw={"rows": 10, "spellcheck": "false"})


class HistoryForm(QueryForm):
    """The delivery history's filters (GET)."""

    status = SelectField("Status", choices=options([("", "any")] + [(s, s) for s in DELIVERY_STATUSES]), default="")
    endpoint_id = SelectField("Endpoint", coerce=int, choices=options([(0, "any")]), default=0)
    event_type = StringField("Event type")
    event = StringField("Event id", description="Number or msg_… id")
    since = DateTimeLocalField("From (UTC)", [Optional()])
    until = DateTimeLocalField("To (UTC)", [Optional()])


class InboundLogForm(QueryForm):
    """The inbound request log's filters (GET); choices are the tenant's."""

    source = SelectField("Source", coerce=int, default=0)
    status = SelectField("Status", default="")


class ReplayForm(QueryForm):
    """Which failed deliveries to send again: an endpoint and a time range."""

    # Asked first by GET (how many?); the POST that replays is CSRF-checked by the blueprint guard.
    endpoint_id = SelectField("Endpoint", coerce=int, choices=[])
    since = DateTimeLocalField("From (UTC)", [Optional()])
    until = DateTimeLocalField("To (UTC)", [Optional()])


class TenantForm(BaseForm):
    """A new tenant."""

    # The same rule as ``flask tenants create``.
    slug = StringField("Slug", [DataRequired(), Regexp(f"^{TENANT_SLUG}$", message="1-64 lowercase letters, digits and dashes")])
    name = StringField("Name", [Length(max=200)])


class ApiKeyForm(BaseForm):
    """A new API key of the current tenant."""

    name = StringField("Name", [DataRequired(), Length(max=200)], default="default")


class UserForm(BaseForm):
    """A new dashboard user."""

    username = StringField("Username", [DataRequired(), Length(max=100)])
    password = PasswordField("Password", [DataRequired()], description="At least 8 characters.")
    is_admin = BooleanField("Admin of every tenant")


class SourceForm(BaseForm):
    """A source's settings; ``to_data`` gives what :func:`webhooks.sources.apply` takes."""

    slug = StringField("Slug", [DataRequired()], description="Part of the hook URL: lowercase letters, digits, dashes.")
    name = StringField("Name")
    provider = SelectField("Provider preset", default="github")
    secret = PasswordField("Secret", description="As the provider shows it. Left blank: the hub generates one where the provider lets you choose (GitHub, GitLab, HMAC, token, Standard Webhooks).")
    config = JSONField("Preset settings (JSON)", description="Optional; blank keeps the preset's defaults.", render_kw={"rows": 4, "spellcheck": "false"})
    ip_allowlist = TextAreaField("IP allowlist", description="One address or CIDR range per line; empty allows any address.", render_kw={"rows": 3})
    max_body_bytes = IntegerField("Largest body (bytes)", [InputRequired()], default=10 * 1024 * 1024)
    rate_limit_per_minute = IntegerField("Rate limit (requests per minute)", [Optional()])
    max_attempts = IntegerField("Processing attempts", [InputRequired()], default=5)
    enabled = BooleanField("Enabled", default=True)
    is_default = BooleanField("Default source of the tenant", description="Also reachable at /hooks/<tenant>.")
    routes = JSONField("Routes (JSON)", description='What to do with each request, in order: [{"when": "headers[\'x-github-event\'] == \'push\'", "action": "publish", "event_type": "github.{event_type}"}]. Empty: nothing is done with requests.', render_kw={"rows": 6, "spellcheck": "false"})

    # ``ApiError.field`` values that name no field of this form.
    API_FIELDS = {"secrets": "secret", "add_secret": "secret"}

    def fill(self, source) -> None:
        """Show a source's settings (never its secrets)."""
        for name in ("slug", "name", "provider", "config", "max_body_bytes", "rate_limit_per_minute", "max_attempts", "enabled", "is_default", "routes"):
            getattr(self, name).data = getattr(source, name)
        self.ip_allowlist.data = "\n".join(source.ip_allowlist or [])

    def to_data(self, source=None) -> dict:
        """The API-shaped settings; on an edit, a blank secret and unchanged settings are left out."""
        data = {
            "slug": (self.slug.data or "").strip(),
            "name": self.name.data or "",
            "provider": self.provider.data,
            "ip_allowlist": [line.strip() for line in (self.ip_allowlist.data or "").splitlines() if line.strip()],
            "max_body_bytes": self.max_body_bytes.data,
            "rate_limit_per_minute": self.rate_limit_per_minute.data,
            "max_attempts": self.max_attempts.data,
            "enabled": self.enabled.data,
            "is_default": self.is_default.data,
            "routes": self.routes.data or [],
        }
        if self.secret.data:
            data["secret"] = self.secret.data.strip()
        # A provider change resets the settings unless new ones are given.
        unchanged = source is not None and self.config.data == source.config
        if self.config.data is not None and not unchanged:
            data["config"] = self.config.data
        return data


class SecretForm(BaseForm):
    """A secret to put in front of a source's others."""

    secret = PasswordField("New secret", description="Blank: the hub generates one (where the provider lets you choose).")
