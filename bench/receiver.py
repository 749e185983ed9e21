"""A fast loopback receiver for the delivery benchmarks, in its own process.

The werkzeug ``Receiver`` in ``webhooks.testing`` spends a thread per request,
which is fine for tests and wrong for a thousand requests that each wait a
second. This one is plain asyncio streams: one process, one thread, any
number of open connections, HTTP/1.1 keep-alive. It runs in a separate
process so that it never takes the GIL from the hub it measures.

The path chooses the answer (any segments before these only label the
counters, as in ``/hub/e1/delay/50``):

- ``.../delay/<ms>``: 200 after ``ms`` milliseconds;
- ``.../hang/<seconds>``: 200 after ``seconds`` (longer than the endpoint's
  timeout, so the hub gives up first);
- anything else: 200 at once.

``GET /stats`` returns, per path, how many requests arrived, the first and
last arrival (``time.time()``), the most requests open at once, and the lags
``arrival - data.sent_at`` of bodies that carry a ``sent_at`` timestamp.

Run it with ``python -m bench.receiver``; it prints ``listening <port>`` and
exits on SIGTERM, on end of its ``--lifetime`` or when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from dataclasses import field

import requests

MAX_HANG = 120.0


@dataclass
class PathStats:
    """What arrived at one path."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0
    open: int = 0
    max_open: int = 0
    lags: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "max_open": self.max_open,
            "lags": self.lags,
        }


class Server:
    """Answers requests after the delay their path asks for, and counts them."""

    def __init__(self) -> None:
        self.paths: dict[str, PathStats] = {}
        self.open = 0
        self.max_open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: requests one after another until the client closes it."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                status, answer = await self.answer(method, path, body)
                writer.write(
                    f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n".encode() + answer
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client gave up (a timeout on /hang): nothing to answer
        except asyncio.CancelledError:
            return  # shutting down with requests still waiting
        finally:
            writer.close()

    async def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method == "GET" and path == "/stats":
            stats = {name: item.as_dict() for name, item in self.paths.items()}
            return 200, json.dumps({"paths": stats, "max_open": self.max_open}).encode()
        arrived = time.time()
        stats = self.paths.setdefault(path, PathStats())
        stats.count += 1
        stats.first = stats.first or arrived
        stats.last = arrived
        if b'"sent_at"' in body:
            try:
                stats.lags.append(arrived - float(json.loads(body)["data"]["sent_at"]))
            except (ValueError, KeyError, TypeError):
                pass
        self.open += 1
        stats.open += 1
        self.max_open = max(self.max_open, self.open)
        stats.max_open = max(stats.max_open, stats.open)
        try:
            await asyncio.sleep(wait_for(path))
        finally:
            self.open -= 1
            stats.open -= 1
        return 200, b'{"ok":true}'


def wait_for(path: str) -> float:
    """Seconds to wait before answering a request to ``path``."""
    parts = path.split("?")[0].strip("/").split("/")
    for word, scale in (("delay", 1000), ("hang", 1)):
        if word in parts:
            try:
                return min(float(parts[parts.index(word) + 1]) / scale, MAX_HANG)
            except (IndexError, ValueError):
                return 0.0
    return 0.0


async def serve(port: int, lifetime: float) -> None:
    server = Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=4096, limit=1 << 20)
    print(f"listening {listener.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    parent = os.getppid()
    deadline = time.monotonic() + lifetime
    while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    listener.close()


class ReceiverProcess:
    """``with ReceiverProcess() as r:`` runs the receiver in a child process on ``r.base``."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.lifetime = lifetime
        self.process: subprocess.Popen | None = None
        self.base = ""

    def __enter__(self) -> ReceiverProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--lifetime", str(self.lifetime)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.process.kill()
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def url(self, path: str) -> str:
        return self.base + path

    def stats(self) -> dict:
        """The counters of every path (see the module's docstring)."""
        return requests.get(self.base + "/stats", timeout=30).json()

    def path_stats(self, path: str) -> dict:
        """The counters of one path, zero when nothing arrived there yet."""
        return self.stats()["paths"].get(path, PathStats().as_dict())

    @property
    def pid(self) -> int:
        return self.process.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=3600, help="exit after this many seconds")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.lifetime))


if __name__ == "__main__":
    main()
