"""The gunicorn worker class of gunicorn.conf.py takes a connection only while it has a thread free."""

from __future__ import annotations

import http.client
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from webhooks.testing import Process
from webhooks.testing import free_port

BIN = Path(sys.executable).parent
WORKERS, THREADS = 2, 2


@pytest.fixture
def held(tmp_path):
    """gunicorn with the project's settings, 2 workers x 2 threads, serving tests/held_app.py."""
    port = free_port()
    hold = tmp_path / "hold"
    hold.mkdir()
    env = {
        "PATH": str(BIN),
        "PORT": str(port),
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_THREADS": str(THREADS),
        "HOLD_DIR": str(hold),
        "HOLD_COUNT": str(WORKERS * THREADS),
    }
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--no-control-socket", "--pythonpath", "tests", "held_app:app"]
    with Process("gunicorn", command, env, tmp_path) as process:
        process.wait_for_http(f"http://127.0.0.1:{port}/ready")
        yield port


def hold(port: int, requests_on_connection: int = 1) -> list[dict]:
    """POST ``/hold`` on one keep-alive connection, one request after another."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        answers = []
        for _ in range(requests_on_connection):
            connection.request("POST", "/hold", body=b"{}", headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Connection") != "close"
            answers.append(json.loads(response.read()))
        return answers
    finally:
        connection.close()


def hold_together(port: int, connections: int, requests_on_each: int = 1) -> list[dict]:
    """Open ``connections`` at once, each sending its requests one after another; every answer."""
    with ThreadPoolExecutor(connections) as pool:
        return [answer for answers in pool.map(lambda _: hold(port, requests_on_each), range(connections)) for answer in answers]


def test_connections_arriving_together_are_spread_over_the_workers_with_free_threads(held):
    """As many connections as there are threads in all: each worker takes as many as it has threads.

    A worker that accepted more than it has threads would leave a request
    waiting for a thread while another worker's threads idle; here every
    request waits for all the others to be inside a handler, so that would
    end in the handlers' 10 s wait running out.
    """
    answers = hold_together(held, WORKERS * THREADS)
    assert all(answer["together"] for answer in answers), answers
    assert sorted(Counter(answer["pid"] for answer in answers).values()) == [THREADS] * WORKERS


def test_connections_beyond_the_threads_wait_their_turn_and_are_all_served(held):
    """More connections than threads, each sending several requests: none is lost or left waiting.

    A worker that stopped listening and never started again (its count of
    busy threads gone wrong) would leave the later connections unanswered.
    """
    connections = WORKERS * THREADS * 3
    answers = hold_together(held, connections, 3)
    assert len(answers) == connections * 3 and all(answer["together"] for answer in answers)
    assert len({answer["pid"] for answer in answers}) == WORKERS
    for _ in range(connections):  # one at a time, after the burst: each is still accepted
        assert hold(held)[0]["together"]
