"""The inbound request log shows new requests without a reload: a hidden sentinel row polls
for requests received since the page was drawn, under the same filters."""

from __future__ import annotations

import re

from test_views_inbound import post_hook

from webhooks import providers

SECRET = "live-secret-0123456789"


def request_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="request-(\d+)"', html)]


def sentinel(html: str) -> str:
    return re.search(r'<tr id="newer-requests"[^>]*hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")


def test_new_requests_appear_above_the_log(app, client, editor, api):
    api.source("gh", "github", secret=SECRET)
    assert post_hook(client, SECRET, {"n": 1}, delivery="d-1").status_code == 202
    page = editor.get("/t/acme/inbound/requests?status=ignored")
    assert request_ids(page.text) == [1]
    poll = sentinel(page.text)
    assert "after=1" in poll and "status=ignored" in poll
    assert request_ids(editor.get(poll, htmx=True).text) == []
    post_hook(client, SECRET, {"n": 2}, delivery="d-2")
    post_hook(client, "wrong-secret", {"n": 3}, delivery="d-3")  # rejected: filtered out
    fresh = editor.get(poll, htmx=True)
    assert fresh.status_code == 200
    assert request_ids(fresh.text) == [2]
    assert "after=2" in sentinel(fresh.text)


def test_an_empty_log_polls_from_the_start_and_older_pages_do_not_poll(client, editor, api):
    api.source("gh", "github", secret=SECRET)
    empty = editor.get("/t/acme/inbound/requests")
    poll = sentinel(empty.text)
    assert "after=0" in poll
    for n in range(60):
        post_hook(client, SECRET, {"n": n}, delivery=f"d-{n}")
    assert request_ids(editor.get(poll, htmx=True).text)[:3] == [60, 59, 58]
    first = editor.get("/t/acme/inbound/requests")
    older = re.search(r'href="\?([^"]*before=\d+[^"]*)">Older', first.text).group(1).replace("&amp;", "&")
    assert 'id="newer-requests"' not in editor.get("/t/acme/inbound/requests?" + older).text


def test_the_feed_is_the_tenants_own(client, editor, api, other_api):
    api.source("gh", "github", secret=SECRET)
    other_api.source("gh", "github", secret=SECRET)
    poll = sentinel(editor.get("/t/acme/inbound/requests").text)
    body = b'{"n": 1}'
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "g-1"}
    answer = client.post("/hooks/globex/gh", data=body, headers={**headers, **providers.sign("github", SECRET, body)})
    assert answer.status_code == 202
    assert request_ids(editor.get(poll, htmx=True).text) == []
