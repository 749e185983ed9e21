"""A real HTTP receiver on loopback, for tests, benchmarks and trying the hub by hand.

It records every request (headers and raw body) and answers with whatever the
``respond`` callable returns, so a test can make it fail, hang, answer 410 or
recover, and then wait for a condition instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


def ok(request: Request) -> Response:
    return Response("ok", 200)


class Receiver:
    """``with Receiver() as r:`` serves on ``r.url`` until the block ends."""

    def __init__(self, respond: Callable[[Request], Response] = ok, *, host: str = "127.0.0.1") -> None:
        self.respond = respond
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        self._server = make_server(host, 0, self._app, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}/hook"
        # A short poll interval makes shutdown quick; the default (0.5 s) adds up over the suite.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ, start_response):
        request = Request(environ)
        received = Received(request.method, request.path, dict(request.headers), request.get_data(), time.time())
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        return self.respond(request)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``count`` requests arrived; raise ``TimeoutError`` otherwise."""
        end = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"received {len(self.requests)} of {count} requests in {timeout}s")
                self._changed.wait(remaining)
            return list(self.requests)


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02):
    """Poll ``condition`` until it returns something truthy; return that, or raise ``TimeoutError``."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
