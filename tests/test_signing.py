"""Standard Webhooks signing: the specification's vector and the official package."""

from __future__ import annotations

import base64
import time
from datetime import datetime
from datetime import timezone

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks import signing

# From the Standard Webhooks specification's examples.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_specification_vector():
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_generated_secret_shape():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 24
    assert signing.generate_secret() != secret


def test_official_package_verifies_our_headers():
    secret = signing.generate_secret()
    body = b'{"id":"msg_1","type":"order.created","data":{"total":12.5}}'
    now = int(time.time())
    headers = signing.headers([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"id": "msg_1", "type": "order.created", "data": {"total": 12.5}}


def test_official_package_verifies_during_rotation_with_either_secret():
    old, new = signing.generate_secret(), signing.generate_secret()
    body = b'{"a":1}'
    headers = signing.headers([new, old], "msg_2", int(time.time()), body)
    assert len(headers["webhook-signature"].split()) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, headers)


def test_official_package_rejects_tampered_body():
    secret = signing.generate_secret()
    headers = signing.headers([secret], "msg_3", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


def test_we_verify_what_the_official_package_signs():
    secret = signing.generate_secret()
    at = datetime.now(timezone.utc)
    signature = Webhook(secret).sign("msg_4", at, '{"x":true}')
    signing.verify([secret], "msg_4", str(int(at.timestamp())), signature, b'{"x":true}', now=time.time())


@pytest.mark.parametrize(
    "msg_id, timestamp, signature, reason",
    [
        (None, "1", "v1,x", "missing"),
        ("m", "abc", "v1,x", "not an integer"),
        ("m", str(SPEC_TIMESTAMP - 301), SPEC_SIGNATURE, "tolerance"),
        ("m", str(SPEC_TIMESTAMP), "v2,abc", "no v1"),
        (SPEC_ID, str(SPEC_TIMESTAMP), "v1,AAAA", "mismatch"),
    ],
)
def test_verify_failures_say_why(msg_id, timestamp, signature, reason):
    with pytest.raises(signing.SignatureError, match=reason):
        signing.verify([SPEC_SECRET], msg_id, timestamp, signature, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_accepts_spec_vector_among_several_entries():
    signature = "v1,bm90LXRoaXMtb25l " + SPEC_SIGNATURE
    signing.verify([SPEC_SECRET], SPEC_ID, str(SPEC_TIMESTAMP), signature, SPEC_BODY, now=SPEC_TIMESTAMP + 10)


@pytest.mark.parametrize("secret", ["short", "whsec_AAAA", "whsec_!!notbase64!!", "not base64 at all"])
def test_weak_or_broken_secrets_are_refused(secret):
    with pytest.raises(signing.SignatureError):
        signing.validate_secret(secret)


def test_non_ascii_signature_is_a_mismatch_not_a_crash():
    with pytest.raises(signing.SignatureError, match="mismatch"):
        signing.verify([SPEC_SECRET], SPEC_ID, str(SPEC_TIMESTAMP), "v1,é", SPEC_BODY, now=SPEC_TIMESTAMP)


def test_unprefixed_secret_means_the_same_key_as_the_reference_library():
    unprefixed = SPEC_SECRET[len("whsec_"):]
    assert signing.sign(unprefixed, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
