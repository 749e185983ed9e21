"""The send path straight through urllib3: what goes on the wire, and which connections are shared."""

from __future__ import annotations

import socket
import threading

from webhooks import egress
from webhooks.testing import wait_until

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nh\xe9llo"


class RawReceiver:
    """A loopback server that keeps every request's raw bytes and counts connections."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                head, found, rest = buffer.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                    0,
                )
                if found and len(rest) >= length:
                    self.requests.append(head + found + rest[:length])
                    buffer = rest[length:]
                    conn.sendall(ANSWER)

    def close(self) -> None:
        self.server.close()


def _post(session, url, headers):
    return egress.post(session, url, headers=headers, body=b'{"a":1}', timeout=5.0, body_limit=1024, allow_private=True)


def test_the_request_carries_the_headers_requests_sent():
    receiver = RawReceiver()
    session = egress.new_session(4)
    try:
        exchange = _post(
            session,
            f"http://localhost:{receiver.port}/hook?x=1",
            {"Content-Type": "application/json", "accept": "text/x", "User-Agent": "hub/1", "webhook-id": "msg_1"},
        )
    finally:
        session.close()
        receiver.close()
    assert exchange.status == 200
    assert exchange.headers["Set-Cookie"] == "a=1, b=2"
    assert exchange.body == "h\xe9llo", "text/plain without a charset is read as ISO-8859-1"
    head = receiver.requests[0].split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head == [
        "POST /hook?x=1 HTTP/1.1",
        "User-Agent: hub/1",
        "Accept-Encoding: gzip, deflate",
        "accept: text/x",
        "Connection: keep-alive",
        "Content-Type: application/json",
        "webhook-id: msg_1",
        f"Host: localhost:{receiver.port}",
        "Content-Length: 7",
    ]


def test_a_header_with_a_line_break_is_refused_without_sending():
    receiver = RawReceiver()
    session = egress.new_session(4)
    try:
        exchange = _post(session, f"http://127.0.0.1:{receiver.port}/", {"X-Note": "a\r\nX-Injected: 1"})
    finally:
        session.close()
        receiver.close()
    assert exchange.status is None and exchange.error.startswith("request failed")
    assert receiver.requests == []


def test_connections_to_one_address_are_reused():
    receiver = RawReceiver()
    session = egress.new_session(4)
    try:
        for _ in range(3):
            assert _post(session, f"http://127.0.0.1:{receiver.port}/", {}).status == 200
        wait_until(lambda: len(receiver.requests) == 3)
        assert receiver.connections == 1
    finally:
        session.close()
        receiver.close()


def test_tls_pools_are_never_shared_between_names_or_verification():
    session = egress.new_session(4)
    try:
        pool = session.pool("https", "93.184.216.34", 443, "a.example", True)
        assert session.pool("https", "93.184.216.34", 443, "a.example", True) is pool
        assert session.pool("https", "93.184.216.34", 443, "b.example", True) is not pool
        assert session.pool("https", "93.184.216.34", 443, None, False) is not pool
        assert (pool.conn_kw["server_hostname"], pool.assert_hostname) == ("a.example", "a.example")
    finally:
        session.close()
