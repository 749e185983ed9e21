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
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.connectionpool import HTTPSConnectionPool

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
    """Puts a connection's socket under the running :class:`Watchdog`."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        Watchdog.attach(sock)  # before the TLS handshake, which a receiver can trickle too
        return sock

    def request(self, *args, **kwargs) -> None:
        Watchdog.attach(self.sock)  # a pooled connection, reused
        super().request(*args, **kwargs)


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


class PinnedAdapter(HTTPAdapter):
    """Connects to the address in the URL but speaks TLS to the name in ``Host``.

    urllib3 keys its pools on ``server_hostname`` and ``assert_hostname`` too,
    so pooled connections are never shared between two names on one address.
    Its connections answer to the exchange's :class:`Watchdog`.
    """

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            name = request.headers.get("Host", "").rsplit(":", 1)[0].strip("[]")
            if name and verify:
                pool_kwargs["server_hostname"] = name
                pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def new_session(pool_size: int) -> requests.Session:
    """A session whose pools fit the delivery concurrency."""
    session = requests.Session()
    session.trust_env = False  # proxies from the environment would bypass the address check
    adapter = PinnedAdapter(pool_connections=64, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def post(
    session: requests.Session,
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
        pinned_url, host_header = _pin(url, allow_private=allow_private)
        with watchdog:
            response = _send(session, pinned_url, {**headers, "Host": host_header}, body, timeout, verify_tls)
            with response:
                exchange.status = response.status_code
                exchange.headers = dict(response.headers)
                raw, exchange.truncated = _read_capped(response, body_limit, started + timeout)
                if watchdog.fired:
                    raise TimeoutError("the watchdog cut the body short")
                exchange.body = raw.decode(response.encoding or "utf-8", errors="replace")
    except EgressError as exc:
        exchange.error = str(exc)
    except requests.exceptions.SSLError as exc:
        exchange.error = f"TLS error: {_reason(exc)}"
    except requests.exceptions.ConnectTimeout:
        exchange.error = f"connect timeout after {min(timeout, 10.0):g} s"
    except (requests.exceptions.ReadTimeout, TimeoutError):
        exchange.error = f"timeout after {timeout:g} s"
    except requests.exceptions.ConnectionError as exc:
        exchange.error = f"connection error: {_reason(exc)}"
    except requests.exceptions.RequestException as exc:
        exchange.error = f"request failed: {_reason(exc)}"
    except urllib3.exceptions.HTTPError as exc:  # raised while reading the body ourselves
        exchange.error = f"connection error: {_reason(exc)}"
    if watchdog.fired and exchange.error:
        exchange.status, exchange.headers, exchange.body = None, {}, ""
        exchange.error = f"timeout after {timeout:g} s"
    exchange.duration_ms = int((time.monotonic() - started) * 1000)
    return exchange


def _send(
    session: requests.Session, url: str, headers: dict[str, str], body: bytes, timeout: float, verify: bool
) -> requests.Response:
    """POST through the session's adapter, skipping what ``Session.request`` adds around it.

    Merging settings, cookies and hooks and looking for a redirect to follow
    cost more CPU than the adapter's own work, and none of it applies: no
    redirects are followed, and cookies one receiver sets have no business
    in a request to another. The session's default headers are kept.
    """
    request = requests.Request("POST", url, headers={**session.headers, **headers}, data=body).prepare()
    return session.get_adapter(url).send(
        request, stream=True, timeout=(min(timeout, 10.0), timeout), verify=verify, proxies={}
    )


def _pin(url: str, *, allow_private: bool) -> tuple[str, str]:
    """Rewrite the URL to the checked address; return it with the original Host header."""
    parts = _split(url)
    port = parts.port or _default_port(parts.scheme)
    address = resolve(parts.hostname, port, allow_private=allow_private)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header


def _read_capped(response: requests.Response, limit: int, deadline: float) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes before ``deadline``; a trickling body stops at the deadline."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise TimeoutError("response body not finished before the timeout")
        chunk = response.raw.read1(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


def _split(url: str):
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
    """The innermost message of a requests/urllib3 exception chain, without the noise."""
    inner = exc
    while inner.args and isinstance(inner.args[0], Exception):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    text = str(reason or inner)
    return text.split(": ", 1)[-1] if "Connection refused" in text else text
