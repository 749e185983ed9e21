"""Inbound verification presets: providers' published examples, rotation,
replay windows, body parsing, and a fuzz check that nothing but
VerificationError/BodyError ever escapes."""

import base64
import hashlib
import hmac
import itertools
import json
import time
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks import providers
from webhooks.providers import (
    PRESETS,
    BodyError,
    VerificationError,
    Verified,
    mask_headers,
    sensitive_headers,
    sign,
    validate_config,
    verify,
)

NOW = 1_700_000_000
BODY = b'{"type":"invoice.paid","id":"evt_1","data":{"amount":42}}'
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# (preset, config, header carrying the credential, signs a timestamp, covers the body)
CASES = [
    ("github", {}, "X-Hub-Signature-256", False, True),
    ("gitlab", {}, "X-Gitlab-Token", False, False),
    ("stripe", {}, "Stripe-Signature", True, True),
    ("shopify", {}, "X-Shopify-Hmac-Sha256", False, True),
    ("slack", {}, "X-Slack-Signature", True, True),
    ("standard", {}, "webhook-signature", True, True),
    ("hmac", {}, "X-Signature", False, True),
    ("hmac", {"timestamp_header": "X-Timestamp"}, "X-Signature", True, True),
    ("token", {}, "Authorization", False, False),
    ("token", {"scheme": "header"}, "X-Webhook-Token", False, False),
    ("token", {"scheme": "basic", "username": "hub"}, "Authorization", False, False),
]
CASE_IDS = [f"{name}-{'-'.join(map(str, config.values())) or 'default'}" for name, config, *_ in CASES]


def secrets_for(preset):
    """An (old, new) secret pair in the format the preset expects."""
    if preset == "standard":
        return "whsec_" + base64.b64encode(b"o" * 24).decode(), "whsec_" + base64.b64encode(b"n" * 24).decode()
    return "old-secret-0123456789", "new-secret-9876543210"


def deliver(preset, secret, config=None, body=BODY, timestamp=NOW, **extra):
    """Headers of a genuine delivery, plus a JSON content type and any extras."""
    headers = sign(preset, secret, body, headers_config=config, timestamp=timestamp)
    return {"Content-Type": JSON, **headers, **extra}


def check(preset, secrets, headers, config=None, body=BODY, now=NOW, **kwargs):
    return verify(preset, secrets=secrets, headers=headers, body=body, config=config, now=now, **kwargs)


def reason(preset, secrets, headers, **kwargs):
    with pytest.raises(VerificationError) as info:
        check(preset, secrets, headers, **kwargs)
    return info.value.reason


def without(headers, name):
    return {key: value for key, value in headers.items() if key.lower() != name.lower()}


# -- every preset -----------------------------------------------------------


@pytest.mark.parametrize(("preset", "config", "header", "timed", "covers_body"), CASES, ids=CASE_IDS)
class TestEveryPreset:
    def test_valid(self, preset, config, header, timed, covers_body):
        _, new = secrets_for(preset)
        result = check(preset, [new], deliver(preset, new, config), config=config)
        assert isinstance(result, Verified)
        assert result.payload == json.loads(BODY)
        assert result.challenge is None

    def test_tampered_body(self, preset, config, header, timed, covers_body):
        _, new = secrets_for(preset)
        headers = deliver(preset, new, config)
        tampered = BODY.replace(b"42", b"43")
        if covers_body:
            assert reason(preset, [new], headers, config=config, body=tampered) == "signature mismatch"
        else:  # a shared token vouches for the sender, not for the body
            assert check(preset, [new], headers, config=config, body=tampered).payload["data"]["amount"] == 43

    def test_wrong_secret(self, preset, config, header, timed, covers_body):
        old, new = secrets_for(preset)
        expected = "signature mismatch" if covers_body else "token mismatch"
        assert reason(preset, [new], deliver(preset, old, config), config=config) == expected

    def test_rotation(self, preset, config, header, timed, covers_body):
        old, new = secrets_for(preset)
        for signer in (old, new):
            check(preset, [old, new], deliver(preset, signer, config), config=config)
        with pytest.raises(VerificationError):
            check(preset, [new], deliver(preset, old, config), config=config)

    def test_missing_header(self, preset, config, header, timed, covers_body):
        _, new = secrets_for(preset)
        headers = without(deliver(preset, new, config), header)
        assert reason(preset, [new], headers, config=config) == f"missing {header} header"

    def test_header_names_are_case_insensitive(self, preset, config, header, timed, covers_body):
        _, new = secrets_for(preset)
        headers = deliver(preset, new, config)
        for fold in (str.lower, str.upper):
            check(preset, [new], {fold(key): value for key, value in headers.items()}, config=config)

    def test_no_secret_configured(self, preset, config, header, timed, covers_body):
        _, new = secrets_for(preset)
        for secrets in ([], [""]):
            assert reason(preset, secrets, deliver(preset, new, config), config=config) == "no secret configured"

    def test_reasons_never_contain_secrets(self, preset, config, header, timed, covers_body):
        old, new = secrets_for(preset)
        attempts = [
            deliver(preset, old, config),
            without(deliver(preset, new, config), header),
            {**deliver(preset, new, config), header: "garbage"},
        ]
        for headers in attempts:
            with pytest.raises(VerificationError) as info:
                check(preset, [new], headers, config=config)
            assert new not in info.value.reason and old not in info.value.reason
            assert new not in str(info.value)


TIMED_CASES = [(preset, config) for preset, config, _, timed, _ in CASES if timed]


@pytest.mark.parametrize(("preset", "config"), TIMED_CASES, ids=[case[0] for case in TIMED_CASES])
def test_stale_or_future_timestamp(preset, config):
    _, new = secrets_for(preset)
    for skew in (301, -301):
        headers = deliver(preset, new, config, timestamp=NOW - skew)
        assert reason(preset, [new], headers, config=config) == "timestamp outside the 300 s tolerance"
    for skew in (300, -300):
        check(preset, [new], deliver(preset, new, config, timestamp=NOW - skew), config=config)


@pytest.mark.parametrize(("preset", "config"), TIMED_CASES, ids=[case[0] for case in TIMED_CASES])
def test_configurable_tolerance(preset, config):
    _, new = secrets_for(preset)
    config = {**config, "tolerance": 3600}
    check(preset, [new], deliver(preset, new, config, timestamp=NOW - 3000), config=config)
    headers = deliver(preset, new, config, timestamp=NOW - 3601)
    assert reason(preset, [new], headers, config=config) == "timestamp outside the 3600 s tolerance"


# -- published examples -----------------------------------------------------


def test_github_published_example():
    # docs.github.com, "Validating webhook deliveries" > "Testing the webhook payload validation".
    secret = "It's a Secret to Everybody"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign("github", secret, b"Hello, World!") == {"X-Hub-Signature-256": expected}
    result = check("github", [secret], {"X-Hub-Signature-256": expected}, body=b"Hello, World!")
    assert result.payload is None  # no JSON or form content type: the caller keeps the raw bytes
    tampered = reason("github", [secret], {"X-Hub-Signature-256": expected}, body=b"Hello, World?")
    assert tampered == "signature mismatch"


SLACK_EXAMPLE_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


def test_slack_published_example():
    # api.slack.com/authentication/verifying-requests-from-slack, the worked example.
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    headers = {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        "Content-Type": FORM,
    }
    assert sign("slack", secret, SLACK_EXAMPLE_BODY, timestamp=1531420618) == {
        "X-Slack-Request-Timestamp": headers["X-Slack-Request-Timestamp"],
        "X-Slack-Signature": headers["X-Slack-Signature"],
    }
    result = check("slack", [secret], headers, body=SLACK_EXAMPLE_BODY, now=1531420618 + 10)
    assert result.event_type == "/webhook-collect"  # a slash command
    assert result.payload["user_name"] == "roadrunner"
    assert result.payload["text"] == ""
    stale = reason("slack", [secret], headers, body=SLACK_EXAMPLE_BODY, now=1531420618 + 301)
    assert stale == "timestamp outside the 300 s tolerance"


# standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_TIMESTAMP = 1614265330
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def standard_headers(signature=STANDARD_SIGNATURE):
    return {
        "webhook-id": STANDARD_ID,
        "webhook-timestamp": str(STANDARD_TIMESTAMP),
        "webhook-signature": signature,
        "content-type": JSON,
    }


def test_standard_published_vector():
    result = check("standard", [STANDARD_SECRET], standard_headers(), body=STANDARD_BODY, now=STANDARD_TIMESTAMP)
    assert result.payload == {"test": 2432232314}
    assert result.delivery_id == STANDARD_ID


def test_standard_published_vector_without_prefix():
    secret = STANDARD_SECRET.removeprefix("whsec_")
    check("standard", [secret], standard_headers(), body=STANDARD_BODY, now=STANDARD_TIMESTAMP)


def test_standard_published_invalid_signature():
    headers = standard_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")
    assert reason("standard", [STANDARD_SECRET], headers, body=STANDARD_BODY, now=STANDARD_TIMESTAMP) == (
        "signature mismatch"
    )


def test_standard_published_multi_signature_header():
    junk = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    value = f"v1,{junk} v2,{junk} {STANDARD_SIGNATURE} v1,{junk}"
    check("standard", [STANDARD_SECRET], standard_headers(value), body=STANDARD_BODY, now=STANDARD_TIMESTAMP)


def test_standard_ignores_other_signature_versions():
    value = STANDARD_SIGNATURE.replace("v1,", "v1a,")
    result = reason("standard", [STANDARD_SECRET], standard_headers(value), body=STANDARD_BODY, now=STANDARD_TIMESTAMP)
    assert result == "no v1 signature in webhook-signature header"


@pytest.mark.parametrize("secret", [STANDARD_SECRET, STANDARD_SECRET.removeprefix("whsec_")])
def test_standard_accepts_what_the_reference_library_signs(secret):
    sent_at = datetime.now(tz=timezone.utc)
    signature = Webhook(secret).sign(msg_id="msg_1", timestamp=sent_at, data=BODY.decode())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    }
    result = verify("standard", secrets=[secret], headers=headers, body=BODY, content_type=JSON)
    assert result.event_type == "invoice.paid"


@pytest.mark.parametrize("secret", [STANDARD_SECRET, STANDARD_SECRET.removeprefix("whsec_")])
def test_reference_library_accepts_what_standard_signs(secret):
    headers = sign("standard", secret, BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)


def test_standard_undecodable_secret_is_skipped():
    headers = deliver("standard", STANDARD_SECRET)
    check("standard", ["whsec_a", STANDARD_SECRET], headers)
    assert reason("standard", ["whsec_a"], headers) == "no usable secret configured"


# -- GitHub -----------------------------------------------------------------


def test_github_form_encoded_payload():
    event = {"zen": "Design for failure.", "hook_id": 1}
    body = urlencode({"payload": json.dumps(event)}).encode()
    headers = {
        **sign("github", "s3cret", body),
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "Content-Type": FORM,
    }
    result = check("github", ["s3cret"], headers, body=body)
    assert result == Verified("ping", "72d3162e-cc78-11e3-81ab-4c9367dc0958", event, None)


def test_github_form_without_payload_field():
    body = b"action=opened"
    headers = {**sign("github", "s3cret", body), "Content-Type": FORM}
    with pytest.raises(BodyError, match="no payload field"):
        check("github", ["s3cret"], headers, body=body)


def test_github_form_payload_not_json():
    body = b"payload=%7Bnope"
    headers = {**sign("github", "s3cret", body), "Content-Type": FORM}
    with pytest.raises(BodyError, match="payload field is not valid JSON"):
        check("github", ["s3cret"], headers, body=body)


def test_github_event_and_delivery_headers():
    headers = deliver("github", "s3cret", **{"x-github-event": "push", "X-GITHUB-DELIVERY": "d-1"})
    result = check("github", ["s3cret"], headers)
    assert (result.event_type, result.delivery_id) == ("push", "d-1")


@pytest.mark.parametrize("value", ["sha1=" + "0" * 40, "sha256=zz", "sha256=abc", "757107ea"])
def test_github_malformed_signature(value):
    assert reason("github", ["s3cret"], {"X-Hub-Signature-256": value}) == "malformed X-Hub-Signature-256 header"


def test_github_uppercase_hex_accepted():
    value = sign("github", "s3cret", BODY)["X-Hub-Signature-256"]
    check("github", ["s3cret"], {"X-Hub-Signature-256": "sha256=" + value[7:].upper()})


# -- Stripe -----------------------------------------------------------------


def stripe_v1(secret, timestamp=NOW, body=BODY):
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_stripe_several_v1_signatures():
    # While an endpoint secret is rolled, Stripe signs once per active secret.
    header = f"t={NOW},v1={'0' * 64},v1={stripe_v1('whsec_new')},v0={stripe_v1('whsec_new')}"
    result = check("stripe", ["whsec_new"], {"Stripe-Signature": header, "Content-Type": JSON})
    assert (result.event_type, result.delivery_id) == ("invoice.paid", "evt_1")
    both = f"t={NOW},v1={stripe_v1('whsec_old')},v1={stripe_v1('whsec_new')}"
    check("stripe", ["whsec_old"], {"Stripe-Signature": both})
    check("stripe", ["whsec_new"], {"Stripe-Signature": both})


def test_stripe_ignores_other_schemes():
    header = f"t={NOW},v0={stripe_v1('whsec_new')}"
    result = reason("stripe", ["whsec_new"], {"Stripe-Signature": header})
    assert result == "no v1 signature in Stripe-Signature header"


@pytest.mark.parametrize("header", [f"v1={'0' * 64}", f"t=soon,v1={'0' * 64}", "garbage"])
def test_stripe_malformed_header(header):
    assert reason("stripe", ["whsec_new"], {"Stripe-Signature": header}) == "malformed Stripe-Signature header"


def test_stripe_signature_binds_the_timestamp():
    header = f"t={NOW + 1},v1={stripe_v1('whsec_new', NOW)}"
    assert reason("stripe", ["whsec_new"], {"Stripe-Signature": header}) == "signature mismatch"


def test_stripe_sign_matches_the_documented_scheme():
    expected = {"Stripe-Signature": f"t={NOW},v1={stripe_v1('whsec_new')}"}
    assert sign("stripe", "whsec_new", BODY, timestamp=NOW) == expected


# -- Shopify, GitLab --------------------------------------------------------


def test_shopify_topic_and_webhook_id():
    expected = base64.b64encode(hmac.new(b"shpss", BODY, hashlib.sha256).digest()).decode()
    assert sign("shopify", "shpss", BODY) == {"X-Shopify-Hmac-Sha256": expected}
    headers = {
        "X-Shopify-Hmac-SHA256": expected,
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    }
    result = check("shopify", ["shpss"], headers, content_type=JSON)
    assert (result.event_type, result.delivery_id) == ("orders/create", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")


@pytest.mark.parametrize("value", ["not base64!", "abc", "w6é="])
def test_shopify_malformed_signature(value):
    assert reason("shopify", ["shpss"], {"X-Shopify-Hmac-Sha256": value}) == "malformed X-Shopify-Hmac-Sha256 header"


def test_shopify_hex_signature_does_not_match():
    # Hex digits are valid base64, so a hex digest decodes, to the wrong bytes.
    value = hmac.new(b"shpss", BODY, hashlib.sha256).hexdigest()
    assert reason("shopify", ["shpss"], {"X-Shopify-Hmac-Sha256": value}) == "signature mismatch"


def test_gitlab_event_and_dedupe_headers():
    headers = {"X-Gitlab-Token": "glt", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "uuid-1"}
    result = check("gitlab", ["glt"], headers, content_type=JSON)
    assert (result.event_type, result.delivery_id) == ("Push Hook", "uuid-1")
    # Idempotency-Key stays the same across retries, so it wins when present.
    result = check("gitlab", ["glt"], {**headers, "Idempotency-Key": "idem-1"}, content_type=JSON)
    assert result.delivery_id == "idem-1"
    assert check("gitlab", ["glt"], {"X-Gitlab-Token": "glt"}).delivery_id is None


# -- Slack ------------------------------------------------------------------


def test_slack_url_verification_challenge():
    # The example request of api.slack.com/events/url_verification.
    body = json.dumps(
        {
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()
    result = check("slack", ["sss"], deliver("slack", "sss", body=body), body=body)
    assert result.challenge == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert result.event_type == "url_verification"
    # The handshake is signed like any other request: no signature, no challenge.
    unsigned = {"Content-Type": JSON}
    assert reason("slack", ["sss"], unsigned, body=body) == "missing X-Slack-Signature header"


def test_slack_url_verification_helper():
    assert providers.url_verification_challenge({"type": "url_verification", "challenge": "c"}) == "c"
    assert providers.url_verification_challenge({"type": "event_callback", "challenge": "c"}) is None
    assert providers.url_verification_challenge({"type": "url_verification", "challenge": 3}) is None
    assert providers.url_verification_challenge([]) is None


def test_slack_event_callback_type_and_id():
    body = json.dumps({"type": "event_callback", "event_id": "Ev08MFMKH6", "event": {"type": "app_mention"}}).encode()
    result = check("slack", ["sss"], deliver("slack", "sss", body=body), body=body)
    assert (result.event_type, result.delivery_id, result.challenge) == ("app_mention", "Ev08MFMKH6", None)


def test_slack_interactivity_payload_field():
    body = urlencode({"payload": json.dumps({"type": "block_actions", "actions": []})}).encode()
    headers = {**deliver("slack", "sss", body=body), "Content-Type": FORM}
    result = check("slack", ["sss"], headers, body=body)
    assert result.event_type == "block_actions"
    assert result.payload["actions"] == []


@pytest.mark.parametrize("value", ["v1=" + "0" * 64, "v0=xyz", "0" * 64])
def test_slack_malformed_signature(value):
    headers = {"X-Slack-Signature": value, "X-Slack-Request-Timestamp": str(NOW)}
    assert reason("slack", ["sss"], headers) == "malformed X-Slack-Signature header"


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", "١٢٣", "9" * 40])
def test_slack_malformed_timestamp(value):
    headers = {"X-Slack-Signature": "v0=" + "0" * 64, "X-Slack-Request-Timestamp": value}
    assert reason("slack", ["sss"], headers) == "malformed X-Slack-Request-Timestamp header"


# -- bodies -----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["github", "stripe", "standard", "slack", "shopify", "gitlab"])
def test_bad_json_is_a_body_error(preset):
    old, _ = secrets_for(preset)
    body = b'{"type": "invoice.paid",'
    with pytest.raises(BodyError, match="not valid JSON"):
        check(preset, [old], deliver(preset, old, body=body), body=body)


def test_signature_is_checked_before_the_body_is_parsed():
    body = b"{not json"
    headers = deliver("github", "other", body=body)
    assert reason("github", ["s3cret"], headers, body=body) == "signature mismatch"


@pytest.mark.parametrize("body", [b"[" * 100_000, b"\xff\xfe{", b'{"n": 1' + b"0" * 5000 + b"}"])
def test_pathological_json_is_a_body_error(body):
    with pytest.raises(BodyError):
        check("none", [], {"Content-Type": JSON}, body=body)


def test_generic_form_body_becomes_a_dict():
    body = b"a=1&b=&a=2&c=%C3%A9"
    result = check("none", [], {"Content-Type": FORM + "; charset=utf-8"}, body=body)
    assert result.payload == {"a": ["1", "2"], "b": "", "c": "é"}


def test_form_body_that_is_not_utf8():
    with pytest.raises(BodyError, match="not valid UTF-8"):
        check("none", [], {"Content-Type": FORM}, body=b"a=%ff")


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("application/json; charset=utf-8", {"type": "invoice.paid"}),
        ("APPLICATION/JSON", {"type": "invoice.paid"}),
        ("application/cloudevents+json", {"type": "invoice.paid"}),
        ("text/plain", None),
        ("", None),
    ],
)
def test_content_types(content_type, payload):
    body = b'{"type": "invoice.paid"}'
    result = check("none", [], {}, body=body, content_type=content_type)
    assert result.payload == payload


def test_content_type_falls_back_to_the_header():
    assert check("none", [], {"content-type": JSON}, body=b"[1]").payload == [1]
    assert check("none", [], {"content-type": JSON}, body=b"[1]", content_type="text/plain").payload is None


def test_type_from_non_object_json_is_none():
    secret = "whsec_new"
    body = b"[1, 2]"
    result = check("stripe", [secret], deliver("stripe", secret, body=body), body=body)
    assert (result.event_type, result.delivery_id, result.payload) == (None, None, [1, 2])


# -- generic HMAC -----------------------------------------------------------

HMAC_COMBINATIONS = list(
    itertools.product(["sha1", "sha256", "sha512"], ["hex", "base64"], ["", "sha256="], [None, "X-Timestamp"])
)


@pytest.mark.parametrize(("algorithm", "encoding", "prefix", "timestamp_header"), HMAC_COMBINATIONS)
def test_hmac_combinations(algorithm, encoding, prefix, timestamp_header):
    config = {"algorithm": algorithm, "encoding": encoding, "prefix": prefix, "timestamp_header": timestamp_header}
    signed = f"{NOW}.".encode() + BODY if timestamp_header else BODY
    digest = hmac.new(b"k3y", signed, algorithm).digest()
    value = prefix + (digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())
    headers = {"X-Signature": value}
    if timestamp_header:
        headers[timestamp_header] = str(NOW)
    assert sign("hmac", "k3y", BODY, headers_config=config, timestamp=NOW) == headers
    check("hmac", ["k3y"], headers, config=config)
    assert reason("hmac", ["k3y"], headers, config=config, body=BODY + b"\n") == "signature mismatch"
    assert reason("hmac", ["other"], headers, config=config) == "signature mismatch"
    if timestamp_header:
        stale = reason("hmac", ["k3y"], headers, config=config, now=NOW + 301)
        assert stale == "timestamp outside the 300 s tolerance"
        missing = reason("hmac", ["k3y"], without(headers, timestamp_header), config=config)
        assert missing == "missing X-Timestamp header"


def test_hmac_custom_header_format_and_event_headers():
    config = {
        "header": "X-Hook-Signature",
        "timestamp_header": "X-Hook-Time",
        "signed_format": "v1:{timestamp}:{body}:{timestamp}",
        "event_header": "X-Hook-Event",
        "id_header": "X-Hook-Id",
    }
    digest = hmac.new(b"k3y", f"v1:{NOW}:".encode() + BODY + f":{NOW}".encode(), hashlib.sha256).hexdigest()
    headers = {"x-hook-signature": digest, "x-hook-time": str(NOW), "x-hook-event": "order.paid", "x-hook-id": "42"}
    result = check("hmac", ["k3y"], headers, config=config)
    assert (result.event_type, result.delivery_id) == ("order.paid", "42")
    bare = without(without(headers, "x-hook-event"), "x-hook-id")
    assert check("hmac", ["k3y"], bare, config=config).event_type is None


def test_hmac_prefix_must_be_present():
    config = {"prefix": "sha256="}
    value = sign("hmac", "k3y", BODY)["X-Signature"]
    assert reason("hmac", ["k3y"], {"X-Signature": value}, config=config) == "malformed X-Signature header"


# -- token and none ---------------------------------------------------------


def test_token_bearer():
    assert sign("token", "tok-123", BODY) == {"Authorization": "Bearer tok-123"}
    check("token", ["tok-123"], {"authorization": "bearer tok-123"})
    assert reason("token", ["tok-123"], {"Authorization": "Bearer tok-124"}) == "token mismatch"
    expected = "expected Bearer credentials in Authorization header"
    assert reason("token", ["tok-123"], {"Authorization": "tok-123"}) == expected
    basic = sign("token", "tok-123", BODY, headers_config={"scheme": "basic"})
    assert reason("token", ["tok-123"], basic) == expected


def test_token_named_header():
    config = {"scheme": "header", "header": "X-Api-Key"}
    assert sign("token", "tok-123", BODY, headers_config=config) == {"X-Api-Key": "tok-123"}
    check("token", ["tok-123"], {"x-api-key": "tok-123"}, config=config)
    bearer = {"Authorization": "Bearer tok-123"}
    assert reason("token", ["tok-123"], bearer, config=config) == "missing X-Api-Key header"


def basic(userid_password):
    return {"Authorization": "Basic " + base64.b64encode(userid_password.encode()).decode()}


def test_token_basic_any_username():
    config = {"scheme": "basic"}
    check("token", ["tok-123"], basic("anyone:tok-123"), config=config)
    check("token", ["tok-123"], basic(":tok-123"), config=config)
    check("token", ["pass:with:colons"], basic("user:pass:with:colons"), config=config)
    assert reason("token", ["tok-123"], basic("anyone:nope"), config=config) == "token mismatch"


def test_token_basic_fixed_username():
    config = {"scheme": "basic", "username": "hub"}
    assert sign("token", "tok-123", BODY, headers_config=config) == basic("hub:tok-123")
    assert reason("token", ["tok-123"], basic("other:tok-123"), config=config) == "token mismatch"


@pytest.mark.parametrize(
    "credentials",
    ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b"\xff:x").decode()],
)
def test_token_basic_malformed(credentials):
    config = {"scheme": "basic"}
    result = reason("token", ["tok-123"], {"Authorization": credentials}, config=config)
    assert result == "malformed Authorization header"


def test_none_accepts_anything_and_is_flagged():
    assert PRESETS["none"].unauthenticated
    assert [name for name, preset in PRESETS.items() if preset.unauthenticated] == ["none"]
    config = {"event_header": "X-Event", "id_header": "X-Id"}
    result = check("none", [], {"x-event": "thing.happened", "X-ID": "7", "Content-Type": JSON}, config=config)
    assert result == Verified("thing.happened", "7", json.loads(BODY), None)
    assert sign("none", "whatever", BODY) == {}


# -- configuration, presets, masking ----------------------------------------


def test_preset_metadata():
    assert list(PRESETS) == ["github", "gitlab", "stripe", "shopify", "slack", "standard", "hmac", "token", "none"]
    for name, preset in PRESETS.items():
        assert preset.name == name
        assert preset.label and preset.secret_help
        assert preset.config_fields == list(preset.default_config)
        assert validate_config(name, {}) == preset.default_config
        assert validate_config(name, preset.default_config) == preset.default_config


def test_validate_config_normalises():
    config = validate_config(
        "hmac", {"algorithm": "SHA512", "encoding": "Base64", "tolerance": "600", "timestamp_header": ""}
    )
    assert config["algorithm"] == "sha512"
    assert config["encoding"] == "base64"
    assert config["tolerance"] == 600
    assert config["timestamp_header"] is None
    assert validate_config("token", {"username": ""})["username"] is None


@pytest.mark.parametrize(
    ("preset", "config", "message"),
    [
        ("hmac", {"algorithm": "md5"}, "hmac: algorithm must be one of sha1, sha256, sha512"),
        ("hmac", {"encoding": "base32"}, "hmac: encoding must be one of hex, base64"),
        ("hmac", {"header": "X Signature"}, "hmac: header must be an HTTP header name"),
        ("hmac", {"header": ""}, "hmac: header must be an HTTP header name"),
        ("hmac", {"prefix": "sha256=\n"}, "hmac: prefix must be at most 64 printable ASCII characters"),
        ("hmac", {"signed_format": "{body}"}, "hmac: signed_format must contain {body} once"),
        ("hmac", {"signed_format": "{timestamp}.{body}.{body}"}, "hmac: signed_format must contain {body} once"),
        ("hmac", {"signed_format": "{id}.{timestamp}.{body}"}, "hmac: signed_format must contain {body} once"),
        ("hmac", {"signed_format": "{timestamp}}.{body}"}, "hmac: signed_format must contain {body} once"),
        ("stripe", {"tolerance": 0}, "stripe: tolerance must be a whole number of seconds"),
        ("slack", {"tolerance": True}, "slack: tolerance must be a whole number of seconds"),
        ("standard", {"tolerance": "5m"}, "standard: tolerance must be a whole number of seconds"),
        ("token", {"scheme": "digest"}, "token: scheme must be one of bearer, header, basic"),
        ("token", {"username": "a:b"}, "token: username must not contain ':'"),
        ("github", {"secret_header": "X"}, "github: unknown setting 'secret_header'"),
    ],
)
def test_validate_config_rejects(preset, config, message):
    with pytest.raises(ValueError) as info:
        validate_config(preset, config)
    assert str(info.value).startswith(message)


def test_verify_rejects_bad_config():
    with pytest.raises(ValueError, match="algorithm"):
        check("hmac", ["k3y"], {}, config={"algorithm": "md5"})


def test_unknown_preset():
    with pytest.raises(KeyError):
        check("bitbucket", ["x"], {})


def test_sensitive_headers():
    always = {"authorization", "proxy-authorization", "cookie"}
    assert sensitive_headers("github", None) == always | {"x-hub-signature-256", "x-hub-signature"}
    assert "x-hook-signature" in sensitive_headers("hmac", {"header": "X-Hook-Signature"})
    assert "x-api-key" in sensitive_headers("token", {"scheme": "header", "header": "X-Api-Key"})
    assert sensitive_headers("none", {}) == always
    for name in PRESETS:
        assert all(header == header.lower() for header in sensitive_headers(name, {}))


def test_mask_headers():
    headers = {
        "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a",
        "authorization": "Bearer tiny",
        "Cookie": "",
        "X-GitHub-Event": "push",
    }
    masked = mask_headers(headers, sensitive_headers("github", {}))
    assert masked == {
        "X-Hub-Signature-256": "sha2…",
        "authorization": "***",
        "Cookie": "***",
        "X-GitHub-Event": "push",
    }
    assert headers["authorization"] == "Bearer tiny"  # a copy, not in place
    assert mask_headers({"X-Token": "t" * 20}, {"X-TOKEN"}) == {"X-Token": "tttt…"}


def test_sign_accepts_text_and_defaults_to_now():
    headers = sign("slack", "sss", BODY.decode())
    assert abs(int(headers["X-Slack-Request-Timestamp"]) - time.time()) < 5
    verify("slack", secrets=["sss"], headers=headers, body=BODY)


def test_sign_standard_refuses_an_undecodable_secret():
    with pytest.raises(ValueError):
        sign("standard", "whsec_a", BODY)


# -- fuzz -------------------------------------------------------------------

KNOWN_HEADERS = sorted(
    {header for _, _, header, *_ in CASES}
    | {"X-Slack-Request-Timestamp", "webhook-id", "webhook-timestamp", "X-Timestamp", "Content-Type"}
)
FUZZ_CASES = [(preset, config) for preset, config, *_ in CASES] + [("none", {})]
CONTENT_TYPES = [None, JSON, FORM, "text/plain", "application/vnd.api+json; charset=utf-8"]
header_values = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["sha256=", "v0=", "v1,", "t=1700000000,v1=", "Bearer ", "Basic "]),
        st.text(max_size=80),
    ),
)
header_names = st.one_of(st.sampled_from(KNOWN_HEADERS), st.text(max_size=20))
header_dicts = st.dictionaries(header_names, header_values, max_size=8)


@settings(deadline=None, max_examples=300)
@given(
    case=st.sampled_from(FUZZ_CASES),
    body=st.binary(max_size=256),
    headers=header_dicts,
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_random_requests_only_raise_verification_or_body_errors(case, body, headers, content_type):
    preset, config = case
    try:
        check(preset, list(secrets_for(preset)), headers, config=config, body=body, content_type=content_type)
    except (VerificationError, BodyError):
        pass


@settings(deadline=None, max_examples=200)
@given(case=st.sampled_from(FUZZ_CASES), body=st.binary(max_size=256), content_type=st.sampled_from(CONTENT_TYPES))
def test_fuzz_signed_random_bodies_verify_or_fail_to_parse(case, body, content_type):
    preset, config = case
    _, new = secrets_for(preset)
    headers = sign(preset, new, body, headers_config=config, timestamp=NOW)
    try:
        result = check(preset, [new], headers, config=config, body=body, content_type=content_type)
    except BodyError:
        assert content_type not in (None, "text/plain")
    else:
        assert isinstance(result, Verified)


@settings(deadline=None, max_examples=300)
@given(case=st.sampled_from(FUZZ_CASES), data=st.data())
def test_fuzz_corrupted_genuine_headers_only_raise_verification_errors(case, data):
    preset, config = case
    _, new = secrets_for(preset)
    headers = {}
    for name, value in sign(preset, new, BODY, headers_config=config, timestamp=NOW).items():
        change = data.draw(st.sampled_from(["keep", "drop", "replace", "append"]))
        if change == "replace":
            headers[name] = data.draw(header_values)
        elif change == "append":
            headers[name] = value + data.draw(st.text(max_size=10))
        elif change == "keep":
            headers[name] = value
    try:
        result = check(preset, [new], headers, config=config, content_type=JSON)
    except VerificationError:
        pass
    else:
        assert result.payload == json.loads(BODY)
