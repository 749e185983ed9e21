"""A WSGI app for tests/test_gunicorn_worker.py, run by gunicorn in its own processes.

``POST /hold`` answers only once ``HOLD_COUNT`` requests are inside handlers
at the same time, across every worker process (each leaves a file in
``HOLD_DIR``), or after 10 s: then it says the others never came. It answers
with its process id, so the test sees which worker took which connection.
"""

import json
import os
import time
import uuid
from pathlib import Path

WAIT_SECONDS = 10.0


def app(environ, start_response):
    if environ["PATH_INFO"] != "/hold":
        return answer(start_response, {"ready": True})
    folder = Path(os.environ["HOLD_DIR"])
    (folder / uuid.uuid4().hex).touch()
    wanted = int(os.environ["HOLD_COUNT"])
    deadline = time.monotonic() + WAIT_SECONDS
    while len(list(folder.iterdir())) < wanted and time.monotonic() < deadline:
        time.sleep(0.01)
    return answer(start_response, {"pid": os.getpid(), "together": len(list(folder.iterdir())) >= wanted})


def answer(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
