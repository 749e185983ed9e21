"""Receivers that misbehave, on real loopback sockets: each attempt is recorded with what
went wrong, the delivery lands in the right state, the worker's thread comes back in
bounded time and memory stays bounded."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
import tracemalloc
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from webhooks.db import db
from webhooks.db import now_utc
from webhooks.models import Delivery
from webhooks.testing import Receiver
from webhooks.testing import ok

TIMEOUT = 1  # the endpoints' timeout_seconds in these tests
# The worker must be free again soon after the timeout, whatever the receiver does (a receiver
# that trickles its headers held it for an hour before the watchdog); slack for a loaded machine.
BOUND = TIMEOUT + 5


class RawServer:
    """A loopback TCP server that hands every connection to ``handle(server, conn)`` on its own thread."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.stopping = threading.Event()
        self.sent = 0  # bytes the handlers got onto the wire
        self.accepted = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RawServer:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted.set()
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            try:
                self.handle(self, conn)
            except OSError:
                pass  # the hub hung up: what the tests want

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def dribble(self, conn: socket.socket, head: bytes, piece: bytes, every: float = 0.05) -> None:
        """Send ``head``, then ``piece`` every ``every`` seconds until the hub hangs up or the test ends."""
        self.send(conn, head)
        while not self.stopping.wait(every):
            self.send(conn, piece)


def read_request(conn: socket.socket) -> None:
    """Read one request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def hang(server, conn):
    server.stopping.wait()


def trickle_headers(server, conn):
    server.dribble(conn, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")


def trickle_body(server, conn):
    server.dribble(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", b"x")


def trickle_chunks(server, conn):
    server.dribble(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n")


def flood_chunks(server, conn):
    server.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
    while not server.stopping.is_set():
        server.send(conn, chunk)


def drain_timed(drainer) -> float:
    started = time.monotonic()
    drainer.drain(timeout=BOUND + 5)
    assert drainer.worker.wait_idle(0) and drainer.worker.in_flight == 0
    return time.monotonic() - started


def only_delivery(api) -> dict:
    [listed] = api.get("/api/v1/deliveries").get_json()["data"]
    return api.get(f"/api/v1/deliveries/{listed['id']}").get_json()


def assert_retrying(app, detail: dict) -> None:
    """Failed once, waiting for its retry: an attempt was spent, none is lost."""
    assert detail["status"] == "pending" and detail["attempts"] == 1
    with app.app_context():
        assert db.session.get(Delivery, detail["id"]).next_attempt_at > now_utc()


@pytest.mark.parametrize("handle", [hang, trickle_headers, trickle_body, trickle_chunks])
def test_slow_receivers_are_cut_off_at_the_timeout(app, api, drainer, handle):
    with RawServer(handle) as server:
        api.endpoint(server.url, timeout_seconds=TIMEOUT)
        api.publish()
        elapsed = drain_timed(drainer)
        assert server.accepted.is_set()
    assert TIMEOUT * 0.9 <= elapsed < BOUND, elapsed
    detail = only_delivery(api)
    attempt = detail["attempt_log"][0]
    assert attempt["error"] == f"timeout after {TIMEOUT} s"
    assert attempt["response"] is None and detail["last_error"] == f"timeout after {TIMEOUT} s"
    assert_retrying(app, detail)


def test_refused_connection_is_recorded_and_retried(app, api, drainer):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.endpoint(f"http://127.0.0.1:{port}/hook")
    api.publish()
    assert drain_timed(drainer) < BOUND
    detail = only_delivery(api)
    error = detail["attempt_log"][0]["error"]
    assert error.startswith("connection error") and "refused" in error.lower()
    assert detail["attempt_log"][0]["response"] is None
    assert_retrying(app, detail)


def test_endless_fast_body_is_capped_in_memory_and_time(app, api, drainer):
    with RawServer(flood_chunks) as server:
        api.endpoint(server.url, timeout_seconds=TIMEOUT)
        api.publish()
        tracemalloc.start()
        try:
            elapsed = drain_timed(drainer)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert elapsed < BOUND
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while the receiver streamed {server.sent}"
    assert server.sent < 64 * 1024 * 1024, "the hub hung up instead of reading on"
    detail = only_delivery(api)
    attempt = detail["attempt_log"][0]
    assert attempt["response"]["status"] == 200 and len(attempt["response"]["body"]) == 64 * 1024
    assert detail["status"] == "succeeded", "the receiver said 200; its body is only kept, capped"


@pytest.mark.parametrize(
    "answer, error",
    [
        (Response("broken", 500), "HTTP 500"),
        (Response("", 302, {"Location": "ELSEWHERE"}), "HTTP 302"),
        (Response("", 307, {"Location": "ELSEWHERE"}), "HTTP 307"),
    ],
    ids=["500", "302", "307"],
)
def test_error_answers_are_recorded_and_retried_never_followed(app, api, drainer, answer, error):
    with Receiver() as elsewhere:
        if "Location" in answer.headers:
            answer.headers["Location"] = elsewhere.url
        with Receiver(lambda request: answer) as receiver:
            api.endpoint(receiver.url)
            api.publish()
            assert drain_timed(drainer) < BOUND
            assert len(receiver.requests) == 1
        assert elsewhere.requests == [], "redirects are never followed"
    detail = only_delivery(api)
    response = detail["attempt_log"][0]["response"]
    assert response["status"] == answer.status_code and response["body"] == answer.get_data(as_text=True)
    assert detail["last_error"] == error and detail["attempt_log"][0]["error"] is None
    assert_retrying(app, detail)


def test_429_retry_after_schedules_the_retry(app, api, drainer):
    with Receiver(lambda r: Response("slow down", 429, {"Retry-After": "7"})) as receiver:
        api.endpoint(receiver.url)
        api.publish()
        before = now_utc()
        drain_timed(drainer)
        after = now_utc()
    detail = only_delivery(api)
    assert detail["attempt_log"][0]["response"]["headers"]["Retry-After"] == "7"
    assert_retrying(app, detail)
    with app.app_context():
        retry_at = db.session.get(Delivery, detail["id"]).next_attempt_at
    assert before + timedelta(seconds=7) <= retry_at <= after + timedelta(seconds=7)


def test_410_fails_the_delivery_and_disables_the_endpoint(app, api, drainer):
    with Receiver(lambda r: Response("gone", 410)) as receiver:
        endpoint = api.endpoint(receiver.url)
        api.publish()
        drain_timed(drainer)
    detail = only_delivery(api)
    assert detail["status"] == "failed" and detail["attempts"] == 1 and detail["last_error"] == "HTTP 410"
    fetched = api.get(f"/api/v1/endpoints/{endpoint['id']}").get_json()
    assert fetched["enabled"] is False and "410" in fetched["disabled_reason"]


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for localhost that no trust store knows."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.fixture
def tls_receiver(self_signed):
    received = []

    def app(environ, start_response):
        received.append(environ["PATH_INFO"])
        return ok(None)(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=self_signed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_invalid_certificate_is_refused_by_default(app, api, drainer, tls_receiver):
    url, received = tls_receiver
    endpoint = api.endpoint(url)
    assert endpoint["verify_tls"] is True and endpoint["warnings"] == []
    api.publish()
    assert drain_timed(drainer) < BOUND
    detail = only_delivery(api)
    error = detail["attempt_log"][0]["error"]
    assert error.startswith("TLS error") and "certificate verify failed" in error
    assert received == []
    assert_retrying(app, detail)


def test_verification_off_delivers_and_warns(app, api, drainer, tls_receiver):
    url, received = tls_receiver
    endpoint = api.endpoint(url, verify_tls=False)
    assert any("verification is off" in warning for warning in endpoint["warnings"])
    api.publish()
    drain_timed(drainer)
    assert received == ["/hook"]
    detail = only_delivery(api)
    assert detail["status"] == "succeeded" and detail["attempt_log"][0]["response"]["status"] == 200
