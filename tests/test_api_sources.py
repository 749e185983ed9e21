"""The sources API and the inbound log: create, read, update, delete, secrets shown once,
every validation error, tenant isolation, keyset pagination."""

from __future__ import annotations

import base64
import json

import pytest

from webhooks import hooks
from webhooks import providers

SECRET = "gh-secret-0123456789abcdef"


def push(client, n: int, path: str = "/hooks/acme/gh") -> int:
    body = json.dumps({"n": n}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"d-{n}",
        **providers.sign("github", SECRET, body),
    }
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 202
    return response.get_json()["id"]


def test_create_shows_secrets_once(api):
    created = api.source("gh", "github", name="Shop repo")
    [secret] = created["secrets"]
    assert len(secret) == 64 and created["url"] == "http://localhost/hooks/acme/gh"
    assert created["secret_hints"] == [secret[:4] + "…" + secret[-4:]]
    fetched = api.get(f"/api/v1/sources/{created['id']}").get_json()
    assert "secrets" not in fetched and secret not in json.dumps(fetched)
    assert secret not in json.dumps(api.get("/api/v1/sources").get_json())
    assert fetched["provider_label"] == "GitHub" and fetched["unauthenticated"] is False and fetched["warning"] is None


def test_standard_sources_get_a_whsec_secret(api):
    assert api.source("hub", "standard")["secrets"][0].startswith("whsec_")


@pytest.mark.parametrize("provider", ["stripe", "shopify", "slack"])
def test_provider_issued_secrets_must_be_given(api, provider):
    response = api.post("/api/v1/sources", json={"slug": "x", "provider": provider})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "secret"
    assert api.source("x", provider, secret="whsec_from_the_provider_dashboard")["secret_hints"]


def test_unauthenticated_preset_is_flagged(api):
    created = api.source("open", "none")
    assert created["secrets"] == [] and created["unauthenticated"] is True
    assert "anyone who knows its URL" in created["warning"]


def test_patch_delete_and_list(api, client):
    first = api.source("gh", "github", secret=SECRET)
    second = api.source("gl", "gitlab")
    assert [s["slug"] for s in api.get("/api/v1/sources").get_json()["data"]] == ["gh", "gl"]
    patched = api.patch(f"/api/v1/sources/{first['id']}", json={"enabled": False, "rate_limit_per_minute": 600, "max_attempts": 2})
    assert patched.status_code == 200
    assert (patched.get_json()["enabled"], patched.get_json()["rate_limit_per_minute"], patched.get_json()["max_attempts"]) == (False, 600, 2)
    assert api.patch(f"/api/v1/sources/{second['id']}", json={"slug": "gh"}).status_code == 409
    api.patch(f"/api/v1/sources/{first['id']}", json={"enabled": True})
    request_id = push(client, 1)
    assert api.delete(f"/api/v1/sources/{first['id']}").status_code == 204
    assert api.get(f"/api/v1/sources/{first['id']}").status_code == 404
    assert api.get(f"/api/v1/inbound/{request_id}").status_code == 404  # deleted with its source


def test_rotation_with_add_secret(api, client):
    source = api.source("gh", "github", secret="old-secret-0123456789abcdef")
    rotated = api.patch(f"/api/v1/sources/{source['id']}", json={"add_secret": SECRET}).get_json()
    assert len(rotated["secret_hints"]) == 2 and "secrets" not in rotated
    push(client, 1)  # signed with the new secret
    body = b'{"n": 2}'
    old = providers.sign("github", "old-secret-0123456789abcdef", body)
    assert client.post("/hooks/acme/gh", data=body, headers={"Content-Type": "application/json", **old}).status_code == 202
    api.patch(f"/api/v1/sources/{source['id']}", json={"secrets": [SECRET]})
    assert client.post("/hooks/acme/gh", data=body, headers={"Content-Type": "application/json", **old}).status_code == 401


def test_changing_provider_resets_its_settings(api):
    source = api.source("in", "hmac", secret="tiny", config={"header": "X-Sig", "algorithm": "sha1"})
    assert source["config"]["header"] == "X-Sig"
    changed = api.patch(f"/api/v1/sources/{source['id']}", json={"provider": "github"}).get_json()
    assert changed["provider"] == "github" and changed["config"] == {}
    refused = api.patch(f"/api/v1/sources/{source['id']}", json={"provider": "standard"})
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "secrets[0]"


def test_one_default_source_per_tenant(api, other_api):
    first = api.source("a", "github", is_default=True)
    second = api.source("b", "github", is_default=True)
    theirs = other_api.source("c", "github", is_default=True)
    assert api.get(f"/api/v1/sources/{first['id']}").get_json()["is_default"] is False
    assert api.get(f"/api/v1/sources/{second['id']}").get_json()["default_url"] == "http://localhost/hooks/acme"
    assert other_api.get(f"/api/v1/sources/{theirs['id']}").get_json()["is_default"] is True
    api.patch(f"/api/v1/sources/{first['id']}", json={"is_default": True})
    assert api.get(f"/api/v1/sources/{second['id']}").get_json()["is_default"] is False


def test_routes_are_normalised_and_returned(api):
    hooks.handler("github", "push", name="test.api_route")(lambda event: None)
    try:
        routes = [
            {"when": 'event_type == "push"', "action": "publish", "event_type": "github.{event_type}", "description": ""},
            {"action": "handler", "handler": "test.api_route"},
            {"action": "handler", "handler": "*"},
        ]
        created = api.source("gh", "github", routes=routes)
        assert created["routes"] == [
            {"when": 'event_type == "push"', "action": "publish", "event_type": "github.{event_type}"},
            {"action": "handler", "handler": "test.api_route"},
            {"action": "handler", "handler": "*"},
        ]
    finally:
        hooks.unregister("test.api_route")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"provider": "github"}, "slug"),
        ({"slug": "gh"}, "provider"),
        ({"slug": "Gh", "provider": "github"}, "slug"),
        ({"slug": "1gh", "provider": "github"}, "slug"),
        ({"slug": "gh", "provider": "githib"}, "provider"),
        ({"slug": "gh", "provider": "github", "nonsense": 1}, "nonsense"),
        ({"slug": "gh", "provider": "github", "config": {"tolerance": 5}}, "config"),
        ({"slug": "gh", "provider": "hmac", "config": {"algorithm": "md5"}}, "config"),
        ({"slug": "gh", "provider": "github", "secret": ""}, "secret"),
        ({"slug": "gh", "provider": "github", "secret": " padded "}, "secret"),
        ({"slug": "gh", "provider": "github", "secret": "a\r\nb"}, "secret"),
        ({"slug": "gh", "provider": "standard", "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"slug": "gh", "provider": "github", "secrets": ["a"] * 6}, "secrets"),
        ({"slug": "gh", "provider": "github", "secrets": ["ok", 5]}, "secrets[1]"),
        ({"slug": "gh", "provider": "github", "ip_allowlist": ["10.0.0.0/8", "not-an-ip"]}, "ip_allowlist[1]"),
        ({"slug": "gh", "provider": "github", "ip_allowlist": "10.0.0.0/8"}, "ip_allowlist"),
        ({"slug": "gh", "provider": "github", "max_body_bytes": 17 * 1024 * 1024}, "max_body_bytes"),
        ({"slug": "gh", "provider": "github", "max_body_bytes": "1024"}, "max_body_bytes"),
        ({"slug": "gh", "provider": "github", "rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"slug": "gh", "provider": "github", "max_attempts": 21}, "max_attempts"),
        ({"slug": "gh", "provider": "github", "enabled": "yes"}, "enabled"),
        ({"slug": "gh", "provider": "github", "is_default": 1}, "is_default"),
        ({"slug": "gh", "provider": "github", "routes": {"action": "publish"}}, "routes"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "forward"}]}, "routes[0].action"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "publish"}]}, "routes[0].event_type"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "publish", "event_type": "a b"}]}, "routes[0].event_type"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "publish", "event_type": "x", "when": "a ="}]}, "routes[0].when"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "publish", "event_type": "x", "template_id": 999}]}, "routes[0].template_id"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "publish", "event_type": "x", "handler": "h"}]}, "routes[0].handler"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "handler", "handler": "nobody.registered"}]}, "routes[0].handler"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "handler"}]}, "routes[0].handler"),
        ({"slug": "gh", "provider": "github", "routes": [{"action": "handler", "handler": "*", "extra": 1}]}, "routes[0].extra"),
    ],
)
def test_validation_errors_name_the_field(api, body, field):
    response = api.post("/api/v1/sources", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert response.get_json()["error"]["message"]


def test_bad_filter_says_where(api):
    response = api.post(
        "/api/v1/sources",
        json={"slug": "gh", "provider": "github", "routes": [{"action": "publish", "event_type": "x", "when": "ref = 1"}]},
    )
    assert "column" in response.get_json()["error"]["message"] and "==" in response.get_json()["error"]["message"]


def test_duplicate_slug_is_a_conflict(api, other_api):
    api.source("gh", "github")
    response = api.post("/api/v1/sources", json={"slug": "gh", "provider": "gitlab"})
    assert response.status_code == 409 and response.get_json()["error"]["field"] == "slug"
    other_api.source("gh", "github")  # slugs are per tenant


def test_template_of_another_tenant_is_refused(api, other_api):
    theirs = other_api.post("/api/v1/templates", json={"name": "t", "body": "{}"}).get_json()
    response = api.post(
        "/api/v1/sources",
        json={"slug": "gh", "provider": "github", "routes": [{"action": "publish", "event_type": "x", "template_id": theirs["id"]}]},
    )
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "routes[0].template_id"


def test_other_tenants_sources_and_requests_are_404(api, other_api, client):
    source = api.source("gh", "github", secret=SECRET)
    request_id = push(client, 1)
    for call in (
        other_api.get(f"/api/v1/sources/{source['id']}"),
        other_api.patch(f"/api/v1/sources/{source['id']}", json={"enabled": False}),
        other_api.delete(f"/api/v1/sources/{source['id']}"),
        other_api.get(f"/api/v1/inbound/{request_id}"),
        other_api.get("/api/v1/inbound", query_string={"source": "gh"}),
        other_api.get("/api/v1/inbound", query_string={"source": str(source["id"])}),
    ):
        assert call.status_code == 404
    assert other_api.get("/api/v1/inbound").get_json()["data"] == []
    assert other_api.get("/api/v1/sources").get_json()["data"] == []


def test_inbound_list_filters_and_pages_newest_first(api, client):
    source = api.source("gh", "github", secret=SECRET)
    api.source("gl", "gitlab", secret=SECRET)
    ids = [push(client, n) for n in range(5)]
    client.post("/hooks/acme/gl", json={})  # rejected: no token
    page = api.get("/api/v1/inbound", query_string={"source": "gh", "limit": 2}).get_json()
    assert [row["id"] for row in page["data"]] == ids[:-3:-1]
    second = api.get("/api/v1/inbound", query_string={"source": str(source["id"]), "limit": 2, "cursor": page["next_cursor"]}).get_json()
    assert [row["id"] for row in second["data"]] == [ids[2], ids[1]]
    last = api.get("/api/v1/inbound", query_string={"source": "gh", "limit": 2, "cursor": second["next_cursor"]}).get_json()
    assert [row["id"] for row in last["data"]] == [ids[0]] and last["next_cursor"] is None
    rejected = api.get("/api/v1/inbound", query_string={"status": "rejected"}).get_json()["data"]
    assert [(row["source"], row["reason"]) for row in rejected] == [("gl", "missing X-Gitlab-Token header")]
    assert api.get("/api/v1/inbound", query_string={"status": "nope"}).status_code == 400
    assert api.get("/api/v1/inbound", query_string={"cursor": "%%%"}).status_code == 400


def test_inbound_detail_keeps_binary_bodies(api, client):
    api.source("raw", "hmac", secret=SECRET, config={"id_header": "X-Id"})
    body = bytes(range(256))
    headers = {"Content-Type": "application/octet-stream", "X-Id": "bin-1", **providers.sign("hmac", SECRET, body)}
    response = client.post("/hooks/acme/raw", data=body, headers=headers)
    assert response.status_code == 202
    stored = api.get(f"/api/v1/inbound/{response.get_json()['id']}").get_json()
    assert stored["body_encoding"] == "base64" and base64.b64decode(stored["body"]) == body
    assert stored["delivery_id"] == "bin-1" and stored["headers"]["X-Signature"].endswith("…")
    assert stored["method"] == "POST" and stored["remote_addr"] == "127.0.0.1"
