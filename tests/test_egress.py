"""SSRF checks, pinned connections, no redirects, capped and time-bounded bodies."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from werkzeug.wrappers import Response

from webhooks import egress
from webhooks.testing import Receiver


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
    ],
)
def test_private_and_metadata_targets_are_refused(url):
    with pytest.raises(egress.EgressError, match="private or reserved"):
        egress.check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "gopher://x/", "http://x:99999/"])
def test_bad_urls_are_refused(url):
    with pytest.raises(egress.EgressError):
        egress.check_url(url, allow_private=True)


def test_public_literal_address_is_allowed():
    egress.check_url("https://93.184.216.34/hook", allow_private=False)


def test_unresolvable_host_is_refused():
    with pytest.raises(egress.EgressError, match="cannot resolve"):
        egress.check_url("http://no-such-host.invalid/", allow_private=True)


def test_send_time_check_refuses_loopback_without_sending():
    with Receiver() as receiver:
        exchange = _post(receiver.url, allow_private=False)
        assert exchange.status is None
        assert "private or reserved" in exchange.error
        assert receiver.requests == []


def test_host_header_is_kept_when_pinned():
    with Receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        exchange = _post(url)
        assert exchange.status == 200
        assert receiver.requests[0].headers["Host"] == f"localhost:{url.split(':')[2].split('/')[0]}"


def test_redirects_are_not_followed():
    with Receiver(lambda r: Response("", 302, {"Location": "http://127.0.0.1:1/else"})) as receiver:
        exchange = _post(receiver.url)
        assert exchange.status == 302
        assert len(receiver.requests) == 1


def test_large_response_is_truncated_at_the_cap():
    with Receiver(lambda r: Response("x" * 500_000)) as receiver:
        exchange = _post(receiver.url, body_limit=1000)
        assert exchange.status == 200
        assert exchange.truncated
        assert len(exchange.body) == 1000


def test_connection_refused_is_an_error_not_an_exception():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exchange = _post(f"http://127.0.0.1:{port}/")
    assert exchange.status is None
    assert "connection" in exchange.error.lower()


def test_endless_trickling_body_stops_at_the_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"x")
            except OSError:
                break
            stop.wait(0.05)
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    exchange = _post(f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=1.0)
    elapsed = time.monotonic() - started
    stop.set()
    server.close()
    assert exchange.error and "timeout" in exchange.error
    assert elapsed < 5  # bounded by the deadline plus one read timeout, not by the 100 MB body


def _post(url, *, allow_private=True, body_limit=65536, timeout=5.0):
    session = egress.new_session(4)
    try:
        return egress.post(
            session,
            url,
            headers={"Content-Type": "application/json"},
            body=b"{}",
            timeout=timeout,
            body_limit=body_limit,
            allow_private=allow_private,
        )
    finally:
        session.close()
