"""The baselines every figure is divided by, measured in the same run.

- ``app``: a bare Flask POST handler (read the body, parse the JSON, answer
  202), served by ``gunicorn -c gunicorn.conf.py bench.baseline:app`` with the
  hub's own settings, so the ratio is the hub's cost over Flask's.
- ``send``: a plain ``requests`` thread pool POSTing to the loopback receiver,
  as fast as its threads allow; the hub's worker with the same number of
  threads is compared against it. ``python -m bench.baseline --url U --count N
  --threads T`` runs it in its own process and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
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
