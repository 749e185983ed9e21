"""Real processes on loopback: ``flask --app app worker`` and gunicorn subprocesses
sharing one fresh PostgreSQL database, a counting receiver, and a TCP proxy that
can cut the hub off from the database.

Each test gets its own database (``fresh_postgres_url``), so the shared server
is never restarted and other suites running against it are not disturbed.
A plain module, not a conftest.py (that name is taken by ``tests/conftest.py``
in the import path): test modules import the fixtures they use.
"""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ENCRYPTION_KEY
from conftest import Api
from conftest import make_app
from conftest import make_tenant

from webhooks.testing import Process
from webhooks.testing import free_port

BIN = Path(sys.executable).parent


class Hub:
    """One database, the processes sweeping it, and an in-process app to publish and inspect."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.app = make_app(database_url, folder)
        self.processes: list[Process] = []

    def env(self, database_url: str | None = None, **settings) -> dict:
        env = {
            **os.environ,
            "DATABASE_URL": database_url or self.database_url,
            "WEBHOOKS_SECRET_KEY": "test-secret",
            "WEBHOOKS_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "on",
            "WEBHOOKS_SWEEP_INTERVAL": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"WEBHOOKS_{name.upper()}": str(value) for name, value in settings.items()})
        return env

    def api(self, slug: str = "acme") -> Api:
        tenant_id, key = make_tenant(self.app, slug)
        return Api(self.app.test_client(), key, tenant_id)

    def worker(self, name: str, *, database_url: str | None = None, **settings) -> Process:
        """``flask --app app worker``, started and sweeping."""
        return self.workers([name], database_url=database_url, **settings)[0]

    def workers(self, names: list[str], *, database_url: str | None = None, **settings) -> list[Process]:
        """Several ``flask --app app worker`` processes, started together (startup is slow on 2 cores)."""
        command = [str(BIN / "flask"), "--app", "app", "worker"]
        started = [self._start(name, command, self.env(database_url, **settings)) for name in names]
        for process in started:
            process.wait_for_log("sweeping every", timeout=60)
        return started

    def gunicorn(self, name: str, *, workers: int = 1, database_url: str | None = None, **settings) -> Process:
        """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, answering."""
        port = free_port()
        env = {**self.env(database_url, **settings), "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
        env["GRACEFUL_TIMEOUT"] = env.get("GRACEFUL_TIMEOUT", "30")
        # No control socket: its default path is shared by every gunicorn on the host.
        command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--no-control-socket", "wsgi:app"]
        process = self._start(name, command, env)
        process.url = f"http://127.0.0.1:{port}"
        process.wait_for_http(process.url + "/healthz")
        return process

    def _start(self, name: str, command: list[str], env: dict) -> Process:
        process = Process(name, command, env, self.folder)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        with self.app.app_context():
            from webhooks.db import db

            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def hub(fresh_postgres_url, tmp_path):
    hub = Hub(fresh_postgres_url, tmp_path)
    yield hub
    hub.stop()


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed worker's connection breaks mid-answer: expected here, not news


class CountingReceiver:
    """A fast threaded HTTP receiver that counts every request per ``webhook-id``.

    ``delay`` holds each answer that many seconds (a slow receiver, so that
    deliveries are in flight when a test strikes); ``gate``, while cleared,
    holds every answer until it is set.
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.ids: Counter[str] = Counter()
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the hub's session expects

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrived(self.headers.get("webhook-id", ""))
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver.gate.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def arrived(self, webhook_id: str) -> None:
        with self._changed:
            self.ids[webhook_id] += 1
            self._changed.notify_all()

    def total(self) -> int:
        with self._changed:
            return sum(self.ids.values())

    def wait_for_ids(self, wanted: set[str], timeout: float) -> None:
        """Block until every id in ``wanted`` arrived at least once."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= self.ids.keys():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = len(wanted - self.ids.keys())
                    raise TimeoutError(f"{missing} of {len(wanted)} webhook-ids never arrived in {timeout} s")
                self._changed.wait(min(remaining, 1))

    def close(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def counting_receiver():
    receiver = CountingReceiver()
    yield receiver
    receiver.close()


class TcpProxy:
    """127.0.0.1:<port> forwarded to PostgreSQL; ``cut()`` makes the database unreachable.

    Cutting closes every forwarded connection (as a server restart does) and
    closes new ones at once until ``restore()``.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for sock in (source, sink):
                    self._sockets.discard(sock)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()
