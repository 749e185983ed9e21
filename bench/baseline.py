"""The baselines every figure is divided by, measured in the same run.

- ``app``: a bare Flask POST handler (read the body, parse the JSON, answer
  202), served by ``gunicorn -c gunicorn.conf.py bench.baseline:app`` with the
  hub's own settings, so the ratio is the hub's cost over Flask's.
- ``durable``: the same handler storing each body with a plain ``sqlite3``
  INSERT and COMMIT (WAL, ``synchronous=NORMAL``, SQLite's own busy timeout),
  as a straightforward durable handler would; reported beside the ingest
  ratio, without a target, to show what storing a request costs by itself.
- ``send``: a plain ``requests`` thread pool POSTing to the loopback receiver,
  as fast as its threads allow; the hub's worker with the same number of
  threads is compared against it. ``python -m bench.baseline --url U --count N
  --threads T`` runs it in its own process and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask
from flask import request
from requests.adapters import HTTPAdapter

app = Flask(__name__)


@app.post("/<path:anything>")
def accept(anything: str):
    json.loads(request.get_data() or b"null")
    return {"accepted": True}, 202


durable = Flask("durable")
_connections = threading.local()


@durable.post("/<path:anything>")
def store(anything: str):
    body = request.get_data()
    json.loads(body or b"null")
    with _connection() as connection:  # commits
        request_id = connection.execute("INSERT INTO requests (body) VALUES (?)", (body,)).lastrowid
    return {"id": request_id}, 202


def _connection() -> sqlite3.Connection:
    """This thread's connection to ``BENCH_DURABLE_DB``, tuned as the hub tunes its own."""
    connection = getattr(_connections, "connection", None)
    if connection is None:
        connection = sqlite3.connect(os.environ["BENCH_DURABLE_DB"], timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        _connections.connection = connection
    return connection


def send(url: str, count: int, threads: int, body: bytes) -> dict:
    """POST ``body`` to ``url`` ``count`` times from ``threads`` threads; return wall and CPU time."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=threads, max_retries=0)
    session.mount("http://", adapter)
    remaining = iter(range(count))
    lock = threading.Lock()
    ok = 0

    def loop() -> None:
        nonlocal ok
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            with lock:
                ok += 200 <= response.status_code < 300

    started, cpu = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(loop) for _ in range(threads)]:
            future.result()
    return {"seconds": time.monotonic() - started, "cpu_seconds": time.process_time() - cpu, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description="requests thread-pool baseline")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--body-bytes", type=int, default=200)
    args = parser.parse_args()
    body = json.dumps({"id": "msg_baseline", "type": "order.created", "data": {"pad": "x" * args.body_bytes}})
    print(json.dumps(send(args.url, args.count, args.threads, body.encode())), flush=True)


if __name__ == "__main__":
    main()
