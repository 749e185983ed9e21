"""HTTP out, safely: the only way the hub talks to a receiver.

A receiver URL is attacker-chosen input. Before every request the host is
resolved once, every address is checked (no loopback, private, link-local,
multicast or reserved ranges, which covers cloud metadata at 169.254.169.254),
and the connection goes to that checked address while TLS still verifies the
original hostname. Resolving twice, once to check and once to connect, would
let DNS rebinding swap in an internal address between the two.

Redirects are never followed (a 3xx is a failed attempt), the response body is
read only up to a cap, and the whole exchange is bounded by the endpoint's
timeout, so an endless or trickling response cannot hold a worker or its memory.
Socket timeouts alone would not do that: they bound each read, and a receiver
that sends its status line or headers one byte at a time never lets a read
time out. A watchdog therefore shuts the socket down when the time is up.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import requests
import urllib3
from urllib3._collections import RecentlyUsedContainer
from urllib3.connection import HTTPConnection
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import ReadTimeoutError

ALLOWED_SCHEMES = ("http", "https")
# Headers the hub sets itself; an endpoint's custom or auth header may not replace them.
RESERVED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host"}
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


class EgressError(ValueError):
    """The URL may not be called: bad scheme, unresolvable or a forbidden address."""


@dataclass
class Exchange:
    """What happened on the wire; ``error`` is set when no HTTP answer came back."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    duration_ms: int = 0
    error: str | None = None
    truncated: bool = False


def is_forbidden(address: str) -> bool:
    """True for any address a webhook must not reach when private targets are off."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> None:
    """Validate a receiver URL when it is saved; raises :class:`EgressError`.

    The same check runs again at send time, since DNS may change meanwhile.
    """
    parts = _split(url)
    resolve(parts.hostname, parts.port or _default_port(parts.scheme), allow_private=allow_private)


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` may not go out as a configured header, or None if it may.

    Control characters are refused in values: CR and LF would smuggle in
    headers of their own, and NUL cannot even be stored everywhere.
    """
    if not HEADER_NAME.fullmatch(name):
        return f"header {name!r} is not a valid HTTP header name"
    if name.lower() in RESERVED_HEADERS:
        return f"header {name!r} is set by the hub and cannot be overridden"
    if any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in value):
        return f"header {name!r} has control characters in its value"
    return None


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve ``host`` once and return the address to connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EgressError(f"cannot resolve {host}: {exc}") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        forbidden = [a for a in addresses if is_forbidden(a)]
        if forbidden:
            raise EgressError(f"{host} resolves to a private or reserved address ({forbidden[0]}); refused")
    return addresses[0]


class Watchdog:
    """Shuts down the socket of the current exchange once ``seconds`` have passed.

    The connection classes below attach their socket to the watchdog of the
    thread they run in; shutting it down makes the blocked read return at once.
    Every watchdog of the process is timed by one :class:`Alarms` thread: a
    timer thread per attempt would double the threads of a worker with a
    thousand requests in flight, and starting one costs more than the rest of
    the watchdog.
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.seconds = seconds
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._alarm: list | None = None

    def __enter__(self) -> Watchdog:
        Watchdog._current.active = self
        self._alarm = ALARMS.add(time.monotonic() + self.seconds, self._fire)
        return self

    def __exit__(self, *exc) -> None:
        ALARMS.cancel(self._alarm)
        Watchdog._current.active = None
        with self._lock:
            self._sock = None

    @classmethod
    def attach(cls, sock: socket.socket | None) -> None:
        """Put ``sock`` under this thread's watchdog, if one is running."""
        watchdog = getattr(cls._current, "active", None)
        if watchdog is None or sock is None:
            return
        with watchdog._lock:
            watchdog._sock = sock
            fired = watchdog.fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)


class Alarms:
    """One thread that calls each added function when its time (``time.monotonic()``) comes.

    Cancelled alarms stay in the heap until they come up (cheaper than removing
    them), unless more than half of it is cancelled, when it is rebuilt. The
    thread starts on first use in each process, so a fork gets its own.
    """

    def __init__(self) -> None:
        self._heap: list[list] = []  # [when, sequence, function or None when cancelled]
        self._cancelled = 0
        self._sequence = itertools.count()
        self._changed = threading.Condition()
        self._pid: int | None = None

    def add(self, when: float, function: Callable[[], None]) -> list:
        """Call ``function`` at ``when``, from the alarm thread; returns a handle for :meth:`cancel`."""
        alarm = [when, next(self._sequence), function]
        with self._changed:
            if self._pid != os.getpid():
                self._heap, self._cancelled, self._pid = [], 0, os.getpid()
                threading.Thread(target=self._run, name="egress-watchdog", daemon=True).start()
            heapq.heappush(self._heap, alarm)
            if self._heap[0] is alarm:
                self._changed.notify()
        return alarm

    def cancel(self, alarm: list | None) -> None:
        """Forget ``alarm`` unless it already went off."""
        with self._changed:
            if alarm is None or alarm[2] is None:
                return
            alarm[2] = None
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            with self._changed:
                function = self._next_due()
            if function is not None:
                function()

    def _next_due(self) -> Callable[[], None] | None:
        """Wait (holding the condition) for the earliest alarm to come due; None to look again."""
        while self._heap and self._heap[0][2] is None:
            heapq.heappop(self._heap)
            self._cancelled -= 1
        if not self._heap:
            self._changed.wait()
            return None
        wait = self._heap[0][0] - time.monotonic()
        if wait > 0:
            self._changed.wait(wait)
            return None
        alarm = heapq.heappop(self._heap)
        function, alarm[2] = alarm[2], None
        return function


ALARMS = Alarms()


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, even for a TLS socket: SSLSocket.shutdown
    # would tear down its TLS state under the thread that is reading from it.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watched:
    """Puts a connection's socket under the running :class:`Watchdog`; sends each request in one piece.

    urllib3 sends the head of a request and its body with a send call each:
    two system calls, and two wake-ups of the receiver, where one will do.
    """

    _unsent: list[bytes] | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        Watchdog.attach(sock)  # before the TLS handshake, which a receiver can trickle too
        return sock

    def request(self, *args, **kwargs) -> None:
        Watchdog.attach(self.sock)  # a pooled connection, reused
        self._unsent = []
        try:
            super().request(*args, **kwargs)
        finally:
            unsent, self._unsent = self._unsent, None
        super().send(b"".join(unsent))  # connects first if the connection is new

    def send(self, data) -> None:
        if self._unsent is not None and isinstance(data, bytes):
            self._unsent.append(data)
            return
        if self._unsent:  # anything but bytes goes out as it comes, after what came before it
            unsent, self._unsent = b"".join(self._unsent), []
            super().send(unsent)
        super().send(data)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _validate_conn(self, conn) -> None:
        # urllib3 warns on every unverified request; here that is an endpoint's
        # deliberate verify_tls=false, which the API and dashboard already flag.
        if conn.is_closed:
            conn.connect()


# What requests sends on its own; kept so that receivers see the same requests
# as when the hub posted through requests.
DEFAULT_HEADERS = {name.lower(): (name, value) for name, value in requests.utils.default_headers().items()}
# Pools kept per process, one per (scheme, address, port, TLS name, verification).
POOLS = 64


class Session:
    """The connection pools of one process, keyed on the checked address and the TLS name.

    A pool serves one (scheme, address, port) and, for HTTPS, one name to
    verify the certificate against and to send as SNI, so pooled connections
    are never shared between two names on one address, nor between verifying
    and non-verifying endpoints. The least recently used pool is closed when
    there are more than ``POOLS``.
    """

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self._pools: RecentlyUsedContainer = RecentlyUsedContainer(POOLS, dispose_func=lambda pool: pool.close())
        self._lock = threading.Lock()

    def pool(self, scheme: str, host: str, port: int, tls_name: str | None, verify: bool) -> HTTPConnectionPool:
        """The pool for one pinned address (``host`` is the address literal, bracketed for IPv6)."""
        key = (scheme, host, port, tls_name, verify)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = self._new_pool(scheme, host, port, tls_name, verify)
            return pool

    def _new_pool(self, scheme: str, host: str, port: int, tls_name: str | None, verify: bool) -> HTTPConnectionPool:
        if scheme == "http":
            return _HTTPPool(host, port, maxsize=self.pool_size, block=False, retries=False)
        if not verify:
            return _HTTPSPool(host, port, maxsize=self.pool_size, block=False, retries=False, cert_reqs="CERT_NONE")
        return _HTTPSPool(
            host,
            port,
            maxsize=self.pool_size,
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=requests.utils.DEFAULT_CA_BUNDLE_PATH,  # the CA bundle requests verified against
            server_hostname=tls_name,
            assert_hostname=tls_name,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            self._pools.clear()


def new_session(pool_size: int) -> Session:
    """Pools that fit the delivery concurrency.

    Never reads proxy settings from the environment: a proxy would connect
    to the receiver itself and bypass the address check.
    """
    return Session(pool_size)


def post(
    session: Session,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    body_limit: int,
    allow_private: bool,
    verify_tls: bool = True,
) -> Exchange:
    """POST ``body`` to ``url`` and record the exchange; never raises for network trouble.

    The whole exchange, from connecting to the last byte of the body, takes
    at most ``timeout`` seconds (plus the time to notice).
    """
    started = time.monotonic()
    exchange = Exchange()
    watchdog = Watchdog(timeout)
    try:
        parts, address = _pin(url, allow_private=allow_private)
        with watchdog:
            response = _send(session, parts, address, headers, body, timeout, verify_tls)
            try:
                exchange.status = response.status
                exchange.headers = dict(response.headers)
                raw, exchange.truncated = _read_capped(response, body_limit, started + timeout)
            finally:
                response.close()  # a connection left mid-body is closed, not pooled
                response.release_conn()
            if watchdog.fired:
                raise TimeoutError("the watchdog cut the body short")
            encoding = requests.utils.get_encoding_from_headers(response.headers)
            exchange.body = raw.decode(encoding or "utf-8", errors="replace")
    except EgressError as exc:
        exchange.error = str(exc)
    except urllib3.exceptions.SSLError as exc:
        exchange.error = f"TLS error: {_reason(exc)}"
    except NewConnectionError as exc:  # a subclass of ConnectTimeoutError, for a refused connection too
        exchange.error = f"connection error: {_reason(exc)}"
    except ConnectTimeoutError:
        exchange.error = f"connect timeout after {min(timeout, 10.0):g} s"
    except (ReadTimeoutError, TimeoutError):
        exchange.error = f"timeout after {timeout:g} s"
    except _ReadError as exc:
        exchange.error = f"connection error: {_reason(exc.__cause__)}"
    except (requests.exceptions.InvalidHeader, ValueError) as exc:  # InvalidHeader is an OSError too
        exchange.error = f"request failed: {_reason(exc)}"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        exchange.error = f"connection error: {_reason(exc)}"
    if watchdog.fired and exchange.error:
        exchange.status, exchange.headers, exchange.body = None, {}, ""
        exchange.error = f"timeout after {timeout:g} s"
    exchange.duration_ms = int((time.monotonic() - started) * 1000)
    return exchange


class _ReadError(Exception):
    """The response body broke off (its cause says how); unlike the same error before the answer, not a timeout."""


def _send(
    session: Session, parts, address: str, headers: dict[str, str], body: bytes, timeout: float, verify: bool
) -> urllib3.HTTPResponse:
    """POST straight through a urllib3 pool, without requests around it.

    requests' session and adapter cost more CPU than the exchange itself
    (preparing the request, merging settings, wrapping the response); what
    of it mattered is here: its default headers, its header checks, its
    request target and its CA bundle. No retries, no redirects.
    """
    literal = f"[{address}]" if ":" in address else address
    host_header = parts.netloc.rpartition("@")[2]
    tls_name = host_header.rsplit(":", 1)[0].strip("[]") if parts.scheme == "https" and verify else None
    pool = session.pool(parts.scheme, literal, parts.port or _default_port(parts.scheme), tls_name or None, verify)
    return pool.urlopen(
        "POST",
        _target(parts.scheme, parts.path, parts.query),
        body=body or None,
        headers=_request_headers(headers, host_header, len(body)),
        retries=False,
        redirect=False,
        assert_same_host=False,
        timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
        preload_content=False,
        decode_content=False,
    )


def _request_headers(headers: dict[str, str], host: str, length: int) -> dict[str, str]:
    """requests' default headers, then ``headers``, ``Host`` and ``Content-Length``; names case-insensitive.

    A later name replaces an earlier one in its place, whatever its case,
    and each header is checked as requests did (no CR or LF, no leading space).
    """
    merged = dict(DEFAULT_HEADERS)
    for name, value in headers.items():
        requests.utils.check_header_validity((name, value))
        merged[name.lower()] = (name, value)
    merged["host"] = ("Host", host)
    merged["content-length"] = ("Content-Length", str(length))
    return dict(merged.values())


@functools.lru_cache(maxsize=4096)
def _target(scheme: str, path: str, query: str) -> str:
    """The request target (path and query) as requests quoted and normalised it."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(urlunsplit((scheme, "receiver", path or "/", query, "")), None)
    return prepared.path_url


def _pin(url: str, *, allow_private: bool) -> tuple:
    """The parts of ``url`` and the checked address to connect to instead of its host."""
    parts = _split(url)
    return parts, resolve(parts.hostname, parts.port or _default_port(parts.scheme), allow_private=allow_private)


def _read_capped(response: urllib3.HTTPResponse, limit: int, deadline: float) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes before ``deadline``; a trickling body stops at the deadline."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise TimeoutError("response body not finished before the timeout")
        try:
            chunk = response.read1(min(65536, limit + 1 - size))
        except urllib3.exceptions.HTTPError as exc:
            raise _ReadError() from exc
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


@functools.lru_cache(maxsize=4096)
def _split(url: str):
    """The parts of a receiver URL, checked; cached, since the same few URLs are sent to over and over."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise EgressError(f"invalid URL: {exc}") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise EgressError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise EgressError("the URL has no host")
    return parts


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _reason(exc: Exception) -> str:
    """The message of a urllib3 exception, without the noise (what requests showed as its reason)."""
    text = str(exc)
    return text.split(": ", 1)[-1] if "Connection refused" in text else text
