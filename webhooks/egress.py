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
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import requests
from requests.adapters import HTTPAdapter

ALLOWED_SCHEMES = ("http", "https")


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


class PinnedAdapter(HTTPAdapter):
    """Connects to the address in the URL but speaks TLS to the name in ``Host``.

    urllib3 keys its pools on ``server_hostname`` and ``assert_hostname`` too,
    so pooled connections are never shared between two names on one address.
    """

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
    """POST ``body`` to ``url`` and record the exchange; never raises for network trouble."""
    started = time.monotonic()
    exchange = Exchange()
    try:
        pinned_url, host_header = _pin(url, allow_private=allow_private)
        response = session.post(
            pinned_url,
            data=body,
            headers={**headers, "Host": host_header},
            timeout=(min(timeout, 10.0), timeout),
            allow_redirects=False,
            stream=True,
            verify=verify_tls,
        )
        with response:
            exchange.status = response.status_code
            exchange.headers = dict(response.headers)
            raw, exchange.truncated = _read_capped(response, body_limit, started + timeout)
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
    exchange.duration_ms = int((time.monotonic() - started) * 1000)
    return exchange


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
