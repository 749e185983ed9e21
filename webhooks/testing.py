"""Real parts on loopback for tests, benchmarks and trying the hub by hand.

:class:`Receiver` records every request (headers and raw body) and answers
with whatever the ``respond`` callable returns, so a test can make it fail,
hang, answer 410 or recover, and then wait for a condition instead of
sleeping. :class:`Process` runs a hub process (gunicorn, ``flask worker``)
the way production does, for the fault tests and the benchmarks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response


ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A child process in its own process group, its output in ``<folder>/<name>.log``.

    ``with`` it, or call :meth:`stop`: SIGTERM first (gunicorn and the worker
    finish in-flight deliveries), then SIGKILL to the whole group, so a test or
    benchmark that fails half-way leaves nothing running.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.url = ""
        self.log_path = folder / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the end of its log when the process has exited."""
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; see {self.log_path}:\n{self.tail()}")

    def wait_for_http(self, url: str, timeout: float = 60) -> None:
        """Block until ``url`` answers anything at all (a 404 is fine: the server is up)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                requests.get(url, timeout=2)
                return
            except requests.RequestException:  # refused while booting, or slow on first start
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer in {timeout} s:\n{self.tail()}") from None
                time.sleep(0.1)

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        """Block until ``text`` appears in the log (a process announcing it is ready)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r} in {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def signal(self, number: int) -> None:
        self.popen.send_signal(number)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait, then SIGKILL its group if it does not go in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
