"""Inbound verification presets: did this request really come from the provider?

A receiving endpoint names a preset (``github``, ``stripe``, ``standard``...)
and every request is checked the way that provider documents it, before
anything reads the body. Signatures are always computed over the raw body
bytes, because a parsed and re-serialised body no longer matches, and compared
with :func:`hmac.compare_digest`. An endpoint may hold several secrets at once
so that a secret can be rotated without losing deliveries: a request passes
when any of them matches.

The module is pure (no Flask, no database) so the receiving view, the settings
form and the tests share one implementation. :func:`sign` is the sender side,
used by the tests and by the curl examples shown to users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from webhooks import signing

DEFAULT_TOLERANCE = 300
MAX_TOLERANCE = 7 * 24 * 3600

#: Masked whatever the preset: they carry credentials for any endpoint.
ALWAYS_SENSITIVE = frozenset({"authorization", "proxy-authorization", "cookie"})

#: Values shorter than this are masked entirely by :func:`mask_headers`.
MASK_MIN_LENGTH = 16

_FORM = "application/x-www-form-urlencoded"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_PRINTABLE = re.compile(r"[ -~]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class VerificationError(Exception):
    """The request does not authenticate; the view answers 401.

    :attr:`reason` is short, meant for people ("signature mismatch", "missing
    X-Hub-Signature-256 header") and never contains secret material, so it
    can be shown in the UI and stored with the rejected request.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyError(ValueError):
    """An authenticated body is not what its content type says; the view answers 400."""


@dataclass(frozen=True)
class Verified:
    """What an accepted request carries.

    ``payload`` is the parsed JSON or form body, or ``None`` for other content
    types (the caller keeps the raw bytes). ``challenge`` is only set for
    Slack's ``url_verification`` request, which the view answers with the
    challenge instead of recording an event.
    """

    event_type: str | None
    delivery_id: str | None
    payload: Any
    challenge: str | None = None


class _Headers:
    """Case-insensitive view of request headers; blank values count as absent."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._values = {name.lower(): value.strip() for name, value in headers.items()}

    def get(self, name: str) -> str | None:
        return self._values.get(name.lower()) or None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise VerificationError(f"missing {name} header")
        return value


# -- signature primitives ---------------------------------------------------


def _mac(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    if isinstance(key, str):
        key = key.encode()
    return hmac.new(key, message, algorithm).digest()


def _decode(value: str, encoding: str) -> bytes | None:
    """The digest bytes of a hex or base64 signature, ``None`` if it is neither."""
    if encoding == "hex":
        if not _HEX.fullmatch(value) or len(value) % 2:
            return None
        return bytes.fromhex(value)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        return None


def _check_signatures(offered: Sequence[bytes], expected: Iterable[bytes]) -> None:
    """Pass when any expected digest equals any offered one, else refuse."""
    for digest in expected:
        if any(hmac.compare_digest(digest, candidate) for candidate in offered):
            return
    raise VerificationError("signature mismatch")


def _same_token(offered: str, secret: str) -> bool:
    """Constant-time token comparison; hashing first hides the secret's length too."""
    return hmac.compare_digest(
        hashlib.sha256(offered.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest(),
    )


def _timestamp(value: str, header: str) -> int:
    if not _TIMESTAMP.fullmatch(value):
        raise VerificationError(f"malformed {header} header")
    return int(value)


def _check_fresh(sent_at: int, now: float, tolerance: int) -> None:
    if abs(now - sent_at) > tolerance:
        raise VerificationError(f"timestamp outside the {tolerance} s tolerance")


# -- bodies -----------------------------------------------------------------


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _json(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        raise BodyError(f"{what} is not valid JSON") from None


def _parse_body(body: bytes, media_type: str) -> Any:
    """JSON and form bodies parsed; anything else is ``None`` (kept raw by the caller).

    A form field sent once maps to its string, a repeated one to the list of
    its values.
    """
    if media_type == "application/json" or media_type.endswith("+json"):
        return _json(body, "the body")
    if media_type != _FORM:
        return None
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except ValueError:
        raise BodyError("the form body is not valid UTF-8") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}


def _body_field(payload: Any, name: str) -> str | None:
    """A string field of a JSON object body, ``None`` when absent or not a string."""
    if isinstance(payload, dict) and isinstance(payload.get(name), str):
        return payload[name]
    return None


# -- configuration ----------------------------------------------------------


def _header_name(value: Any) -> str:
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name")
    return value


def _optional_header_name(value: Any) -> str | None:
    return None if value in (None, "") else _header_name(value)


def _tolerance(value: Any) -> int:
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOLERANCE:
        raise ValueError(f"must be a whole number of seconds from 1 to {MAX_TOLERANCE}")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, str) and value.lower() in options:
            return value.lower()
        raise ValueError(f"must be one of {', '.join(options)}")

    return check


def _printable(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not _PRINTABLE.fullmatch(value) or len(value) > 64:
        raise ValueError("must be at most 64 printable ASCII characters")
    return value


def _username(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if ":" in _printable(value):
        raise ValueError("must not contain ':'")
    return value


def _signed_format(value: Any) -> str:
    if isinstance(value, str) and _PRINTABLE.fullmatch(value):
        names = _PLACEHOLDER.findall(value)
        rest = _PLACEHOLDER.sub("", value)
        if (
            names.count("body") == 1
            and "timestamp" in names
            and set(names) <= {"body", "timestamp"}
            and "{" not in rest
            and "}" not in rest
        ):
            return value
    raise ValueError("must contain {body} once, {timestamp}, and no other {placeholder}")


def _signed_content(signed_format: str, timestamp: str, body: bytes) -> bytes:
    before, after = signed_format.split("{body}")
    return (
        before.replace("{timestamp}", timestamp).encode()
        + body
        + after.replace("{timestamp}", timestamp).encode()
    )


_TOLERANCE_FIELD = {"tolerance": (DEFAULT_TOLERANCE, _tolerance)}
_EVENT_FIELDS = {
    "event_header": (None, _optional_header_name),
    "id_header": (None, _optional_header_name),
}


# -- presets ----------------------------------------------------------------


class Preset:
    """How one kind of sender authenticates its webhooks.

    Subclasses set the class attributes and implement :meth:`authenticate`
    and :meth:`sign`; the other hooks have defaults. ``fields`` maps each
    setting the UI or API may change to its default and its normaliser, which
    raises :exc:`ValueError` for a bad value.
    """

    name: str
    label: str
    secret_help: str
    unauthenticated = False
    fields: dict[str, tuple[Any, Callable[[Any], Any]]] = {}
    #: Lower-cased headers that carry signatures or tokens.
    signature_headers: frozenset[str] = frozenset()

    @property
    def default_config(self) -> dict[str, Any]:
        return {name: default for name, (default, _) in self.fields.items()}

    @property
    def config_fields(self) -> list[str]:
        return list(self.fields)

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(config) - set(self.fields))
        if unknown:
            raise ValueError(f"{self.name}: unknown setting {unknown[0]!r}")
        normalised = {}
        for name, (default, normalise) in self.fields.items():
            try:
                normalised[name] = normalise(config.get(name, default))
            except ValueError as exc:
                raise ValueError(f"{self.name}: {name} {exc}") from None
        return normalised

    def sensitive_headers(self, config: dict[str, Any]) -> set[str]:
        return set(ALWAYS_SENSITIVE | self.signature_headers)

    def authenticate(
        self, headers: _Headers, body: bytes, secrets: list[str], config: dict[str, Any], now: float
    ) -> None:
        """Raise :exc:`VerificationError` unless one of ``secrets`` vouches for the request."""
        raise NotImplementedError

    def parse(self, body: bytes, media_type: str) -> Any:
        return _parse_body(body, media_type)

    def describe(
        self, headers: _Headers, payload: Any, config: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """The event type and the delivery id used to drop duplicates."""
        return None, None

    def challenge(self, payload: Any) -> str | None:
        return None

    def sign(self, secret: str, body: bytes, config: dict[str, Any], timestamp: int) -> dict[str, str]:
        """The authentication headers a genuine sender would attach."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Preset {self.name}>"


class GitHub(Preset):
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    # Form-encoded deliveries carry the JSON in a ``payload`` field; the
    # signature covers the whole raw form body.
    name = "github"
    label = "GitHub"
    secret_help = "The webhook's Secret, as entered in the repository, organisation or app webhook settings."
    signature_headers = frozenset({"x-hub-signature-256", "x-hub-signature"})

    def authenticate(self, headers, body, secrets, config, now):
        header = "X-Hub-Signature-256"
        algorithm, _, digest = headers.require(header).partition("=")
        offered = _decode(digest, "hex") if algorithm == "sha256" else None
        if offered is None:
            raise VerificationError(f"malformed {header} header")
        _check_signatures([offered], (_mac(secret, body) for secret in secrets))

    def parse(self, body, media_type):
        payload = _parse_body(body, media_type)
        if media_type != _FORM:
            return payload
        field = _body_field(payload, "payload")
        if field is None:
            raise BodyError("the form body has no payload field")
        return _json(field, "the payload field")

    def describe(self, headers, payload, config):
        return headers.get("X-GitHub-Event"), headers.get("X-GitHub-Delivery")

    def sign(self, secret, body, config, timestamp):
        return {"X-Hub-Signature-256": "sha256=" + _mac(secret, body).hex()}


class Stripe(Preset):
    # https://docs.stripe.com/webhooks#verify-manually
    # ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` over "{t}.{body}";
    # every scheme but v1 is ignored to prevent downgrade attacks. The key is
    # the whole ``whsec_...`` string, as the official libraries use it.
    name = "stripe"
    label = "Stripe"
    secret_help = "The endpoint's signing secret (whsec_...) from the Stripe Dashboard or `stripe listen`."
    fields = dict(_TOLERANCE_FIELD)
    signature_headers = frozenset({"stripe-signature"})

    def authenticate(self, headers, body, secrets, config, now):
        header = "Stripe-Signature"
        timestamp, offered = None, []
        for element in headers.require(header).split(","):
            key, _, value = element.strip().partition("=")
            if key == "t":
                timestamp = value
            elif key == "v1" and (digest := _decode(value, "hex")) is not None:
                offered.append(digest)
        if timestamp is None:
            raise VerificationError(f"malformed {header} header")
        sent_at = _timestamp(timestamp, header)
        if not offered:
            raise VerificationError(f"no v1 signature in {header} header")
        signed = timestamp.encode() + b"." + body
        _check_signatures(offered, (_mac(secret, signed) for secret in secrets))
        _check_fresh(sent_at, now, config["tolerance"])

    def describe(self, headers, payload, config):
        return _body_field(payload, "type"), _body_field(payload, "id")

    def sign(self, secret, body, config, timestamp):
        digest = _mac(secret, f"{timestamp}.".encode() + body).hex()
        return {"Stripe-Signature": f"t={timestamp},v1={digest}"}


class Shopify(Preset):
    # https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
    # Base64 HMAC-SHA256 of the raw body keyed with the app's client secret;
    # X-Shopify-Webhook-Id identifies a delivery across retries.
    name = "shopify"
    label = "Shopify"
    secret_help = (
        "The app's client secret. After rotating it, keep the old one too for an hour:"
        " Shopify may keep signing with it for that long."
    )
    signature_headers = frozenset({"x-shopify-hmac-sha256"})

    def authenticate(self, headers, body, secrets, config, now):
        header = "X-Shopify-Hmac-Sha256"
        offered = _decode(headers.require(header), "base64")
        if offered is None:
            raise VerificationError(f"malformed {header} header")
        _check_signatures([offered], (_mac(secret, body) for secret in secrets))

    def describe(self, headers, payload, config):
        return headers.get("X-Shopify-Topic"), headers.get("X-Shopify-Webhook-Id")

    def sign(self, secret, body, config, timestamp):
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret, body)).decode()}


def url_verification_challenge(payload: Any) -> str | None:
    """The challenge of Slack's ``url_verification`` request, else ``None``.

    Slack sends ``{"type": "url_verification", "challenge": "..."}`` when a
    Request URL is configured and expects the challenge back in the response
    (https://api.slack.com/events/url_verification). The request is signed
    like any other, so only call this on a verified payload.
    """
    if _body_field(payload, "type") == "url_verification":
        return _body_field(payload, "challenge")
    return None


class Slack(Preset):
    # https://api.slack.com/authentication/verifying-requests-from-slack
    # ``X-Slack-Signature: v0=<hex>`` over "v0:{X-Slack-Request-Timestamp}:{body}".
    # Events API bodies are JSON; slash commands are forms; interactivity
    # forms carry their JSON in a ``payload`` field
    # (https://api.slack.com/interactivity/handling#payloads).
    name = "slack"
    label = "Slack"
    secret_help = "The app's Signing Secret (Basic Information > App Credentials), not a bot token."
    fields = dict(_TOLERANCE_FIELD)
    signature_headers = frozenset({"x-slack-signature"})

    def authenticate(self, headers, body, secrets, config, now):
        signature = headers.require("X-Slack-Signature")
        timestamp = headers.require("X-Slack-Request-Timestamp")
        sent_at = _timestamp(timestamp, "X-Slack-Request-Timestamp")
        version, _, digest = signature.partition("=")
        offered = _decode(digest, "hex") if version == "v0" else None
        if offered is None:
            raise VerificationError("malformed X-Slack-Signature header")
        signed = b"v0:" + timestamp.encode() + b":" + body
        _check_signatures([offered], (_mac(secret, signed) for secret in secrets))
        _check_fresh(sent_at, now, config["tolerance"])

    def parse(self, body, media_type):
        payload = _parse_body(body, media_type)
        if media_type == _FORM and (field := _body_field(payload, "payload")) is not None:
            return _json(field, "the payload field")
        return payload

    def describe(self, headers, payload, config):
        event = payload.get("event") if isinstance(payload, dict) else None
        event_type = (
            _body_field(event, "type")
            or _body_field(payload, "type")
            or _body_field(payload, "command")
        )
        return event_type, _body_field(payload, "event_id")

    def challenge(self, payload):
        return url_verification_challenge(payload)

    def sign(self, secret, body, config, timestamp):
        digest = _mac(secret, f"v0:{timestamp}:".encode() + body).hex()
        return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": "v0=" + digest}


class Standard(Preset):
    # https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    # "{webhook-id}.{webhook-timestamp}.{body}" signed with HMAC-SHA256;
    # ``webhook-signature`` is a space-separated list of "v1,<base64>"
    # entries (other versions, such as asymmetric v1a, are skipped).
    name = "standard"
    label = "Standard Webhooks"
    secret_help = "The endpoint's signing secret: whsec_ followed by base64."
    fields = dict(_TOLERANCE_FIELD)
    signature_headers = frozenset({"webhook-signature"})

    def authenticate(self, headers, body, secrets, config, now):
        msg_id = headers.require("webhook-id")
        timestamp = headers.require("webhook-timestamp")
        signature = headers.require("webhook-signature")
        if not msg_id.isascii():
            raise VerificationError("malformed webhook-id header")
        sent_at = _timestamp(timestamp, "webhook-timestamp")
        offered = []
        for entry in signature.split():
            version, _, value = entry.partition(",")
            if version == "v1" and (digest := _decode(value, "base64")) is not None:
                offered.append(digest)
        if not offered:
            raise VerificationError("no v1 signature in webhook-signature header")
        keys = [key for key in map(_standard_key, secrets) if key]
        if not keys:
            raise VerificationError("no usable secret configured")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        _check_signatures(offered, (_mac(key, signed) for key in keys))
        _check_fresh(sent_at, now, config["tolerance"])

    def describe(self, headers, payload, config):
        return _body_field(payload, "type"), headers.get("webhook-id")

    def sign(self, secret, body, config, timestamp):
        if not _standard_key(secret):
            raise ValueError("a Standard Webhooks secret is whsec_ followed by base64")
        return signing.headers([secret], "msg_" + uuid.uuid4().hex, timestamp, body)


def _standard_key(secret: str) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret (as our outbound side signs), ``None`` if it has none."""
    try:
        return signing.secret_key(secret)
    except signing.SignatureError:
        return None


class GitLab(Preset):
    # https://docs.gitlab.com/user/project/integrations/webhooks/
    # The secret token is sent verbatim in X-Gitlab-Token. Idempotency-Key
    # (GitLab 17.4+) "remains consistent across webhook retries", so it is
    # preferred to X-Gitlab-Event-UUID for dropping duplicates.
    name = "gitlab"
    label = "GitLab"
    secret_help = "The webhook's Secret token."
    signature_headers = frozenset({"x-gitlab-token"})

    def authenticate(self, headers, body, secrets, config, now):
        token = headers.require("X-Gitlab-Token")
        if not any(_same_token(token, secret) for secret in secrets):
            raise VerificationError("token mismatch")

    def describe(self, headers, payload, config):
        delivery_id = headers.get("Idempotency-Key") or headers.get("X-Gitlab-Event-UUID")
        return headers.get("X-Gitlab-Event"), delivery_id

    def sign(self, secret, body, config, timestamp):
        return {"X-Gitlab-Token": secret}


class _GenericEvents:
    """Event type and delivery id read from the headers the user configured."""

    def describe(self, headers, payload, config):
        event_header, id_header = config["event_header"], config["id_header"]
        return (
            headers.get(event_header) if event_header else None,
            headers.get(id_header) if id_header else None,
        )


class GenericHmac(_GenericEvents, Preset):
    # Any sender that signs with HMAC. With a timestamp header set, the signed
    # content is ``signed_format`` with {timestamp} and {body} filled in, and
    # stale timestamps are refused.
    name = "hmac"
    label = "Generic HMAC signature"
    secret_help = "The shared HMAC key, used as its UTF-8 bytes."
    fields = {
        "header": ("X-Signature", _header_name),
        "algorithm": ("sha256", _choice("sha1", "sha256", "sha512")),
        "encoding": ("hex", _choice("hex", "base64")),
        "prefix": ("", _printable),
        "timestamp_header": (None, _optional_header_name),
        "signed_format": ("{timestamp}.{body}", _signed_format),
        **_TOLERANCE_FIELD,
        **_EVENT_FIELDS,
    }

    def sensitive_headers(self, config):
        return set(ALWAYS_SENSITIVE) | {config["header"].lower()}

    def authenticate(self, headers, body, secrets, config, now):
        header, prefix = config["header"], config["prefix"]
        value = headers.require(header)
        offered = _decode(value[len(prefix):], config["encoding"]) if value.startswith(prefix) else None
        if offered is None:
            raise VerificationError(f"malformed {header} header")
        signed, sent_at = body, None
        if timestamp_header := config["timestamp_header"]:
            timestamp = headers.require(timestamp_header)
            sent_at = _timestamp(timestamp, timestamp_header)
            signed = _signed_content(config["signed_format"], timestamp, body)
        _check_signatures([offered], (_mac(secret, signed, config["algorithm"]) for secret in secrets))
        if sent_at is not None:
            _check_fresh(sent_at, now, config["tolerance"])

    def sign(self, secret, body, config, timestamp):
        result = {}
        signed = body
        if config["timestamp_header"]:
            result[config["timestamp_header"]] = str(timestamp)
            signed = _signed_content(config["signed_format"], str(timestamp), body)
        digest = _mac(secret, signed, config["algorithm"])
        encoded = digest.hex() if config["encoding"] == "hex" else base64.b64encode(digest).decode()
        result[config["header"]] = config["prefix"] + encoded
        return result


class Token(_GenericEvents, Preset):
    # A shared secret sent as is: ``Authorization: Bearer <secret>`` (RFC 6750),
    # a named header holding the raw token, or HTTP Basic (RFC 7617) with the
    # secret as password and, if configured, a fixed username.
    name = "token"
    label = "Shared token"
    secret_help = "The token the sender puts in the Authorization or configured header."
    fields = {
        "scheme": ("bearer", _choice("bearer", "header", "basic")),
        "header": ("X-Webhook-Token", _header_name),
        "username": (None, _username),
        **_EVENT_FIELDS,
    }

    def sensitive_headers(self, config):
        return set(ALWAYS_SENSITIVE) | {config["header"].lower()}

    def authenticate(self, headers, body, secrets, config, now):
        scheme, username_ok = config["scheme"], True
        if scheme == "header":
            offered = headers.require(config["header"])
        else:
            kind, _, credentials = headers.require("Authorization").partition(" ")
            if kind.lower() != scheme:
                raise VerificationError(f"expected {scheme.title()} credentials in Authorization header")
            offered = credentials.strip()
            if scheme == "basic":
                username, offered = _basic_credentials(offered)
                if config["username"] is not None:
                    username_ok = _same_token(username, config["username"])
        if not (any(_same_token(offered, secret) for secret in secrets) and username_ok):
            raise VerificationError("token mismatch")

    def sign(self, secret, body, config, timestamp):
        if config["scheme"] == "header":
            return {config["header"]: secret}
        if config["scheme"] == "bearer":
            return {"Authorization": f"Bearer {secret}"}
        pair = f"{config['username'] or 'webhook'}:{secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def _basic_credentials(credentials: str) -> tuple[str, str]:
    decoded = _decode(credentials, "base64") or b""
    try:
        username, colon, password = decoded.decode().partition(":")
    except UnicodeDecodeError:
        colon = ""
    if not colon:
        raise VerificationError("malformed Authorization header")
    return username, password


class Unauthenticated(_GenericEvents, Preset):
    # Anyone who knows the URL can post; the UI warns about it.
    name = "none"
    label = "None (unauthenticated)"
    secret_help = "No secret: anyone who knows the URL can send events."
    unauthenticated = True
    fields = dict(_EVENT_FIELDS)

    def sign(self, secret, body, config, timestamp):
        return {}


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        GitHub(),
        GitLab(),
        Stripe(),
        Shopify(),
        Slack(),
        Standard(),
        GenericHmac(),
        Token(),
        Unauthenticated(),
    )
}


# -- public API -------------------------------------------------------------


def verify(
    preset: str,
    *,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    content_type: str | None = None,
    config: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> Verified:
    """Authenticate a received request, then parse its body.

    The signature or token is checked first, on the raw ``body`` bytes; only
    then is the body parsed according to ``content_type`` (the request's
    ``Content-Type`` header when not given): JSON and form bodies become
    Python objects, anything else gives a ``None`` payload. Header names are
    matched case-insensitively, and the request passes when any of
    ``secrets`` matches, so old and new secrets can overlap during rotation.

    :param preset: A key of :data:`PRESETS`; an unknown name raises
        :exc:`KeyError`.
    :param config: The endpoint's settings; missing ones take their
        defaults. Invalid settings raise :exc:`ValueError`.
    :param now: Unix time to check timestamps against, for tests.
    :raise VerificationError: The request does not authenticate (401).
    :raise BodyError: It authenticates but the body is malformed (400).
    """
    chosen = PRESETS[preset]
    normalised = chosen.validate_config(config or {})
    request_headers = _Headers(headers)
    if not chosen.unauthenticated:
        usable = [secret for secret in secrets if secret]
        if not usable:
            raise VerificationError("no secret configured")
        chosen.authenticate(
            request_headers, body, usable, normalised, time.time() if now is None else now
        )
    if content_type is None:
        content_type = request_headers.get("Content-Type")
    payload = chosen.parse(body, _media_type(content_type))
    event_type, delivery_id = chosen.describe(request_headers, payload, normalised)
    return Verified(event_type, delivery_id, payload, chosen.challenge(payload))


def validate_config(preset: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's settings with defaults filled in and values normalised.

    Raises :exc:`ValueError` naming the preset and the setting for an unknown
    setting or a bad value (an unknown algorithm, an invalid header name...).
    """
    return PRESETS[preset].validate_config(config)


def sensitive_headers(preset: str, config: Mapping[str, Any] | None) -> set[str]:
    """Lower-cased names of headers to mask before a rejected request is stored.

    Always ``Authorization``, ``Proxy-Authorization`` and ``Cookie``, plus
    the headers the preset reads signatures or tokens from.
    """
    chosen = PRESETS[preset]
    return chosen.sensitive_headers(chosen.validate_config(config or {}))


def mask_headers(headers: Mapping[str, str], sensitive: set[str]) -> dict[str, str]:
    """A copy of ``headers`` that is safe to store.

    Values of ``sensitive`` headers (matched case-insensitively) keep their
    first four characters followed by an ellipsis, enough to tell two values
    apart; values shorter than :data:`MASK_MIN_LENGTH` become ``***``.
    """
    sensitive = {name.lower() for name in sensitive}
    return {
        name: _mask(value) if name.lower() in sensitive else value for name, value in headers.items()
    }


def _mask(value: str) -> str:
    return value[:4] + "…" if len(value) >= MASK_MIN_LENGTH else "***"


def sign(
    preset: str,
    secret: str,
    body: bytes | str,
    *,
    headers_config: Mapping[str, Any] | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The sender side: the authentication headers a genuine provider attaches.

    For tests and for the curl examples shown to users; receiving code calls
    :func:`verify`. ``headers_config`` is the endpoint's preset settings
    (which header, algorithm... for ``hmac`` and ``token``). ``timestamp``
    defaults to now for presets that sign one. The ``standard`` preset makes
    up a fresh ``webhook-id``; ``none`` returns no headers.

    >>> sign("github", "It's a Secret to Everybody", b"Hello, World!")
    {'X-Hub-Signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'}
    """
    chosen = PRESETS[preset]
    data = body.encode() if isinstance(body, str) else body
    stamp = int(time.time() if timestamp is None else timestamp)
    return chosen.sign(secret, data, chosen.validate_config(headers_config or {}), stamp)
