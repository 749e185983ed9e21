"""A gunicorn thread worker that accepts a connection only while it has a thread free.

gunicorn's ``gthread`` worker accepts every connection it can (up to
``worker_connections``, 1,000) whether or not its threads are busy, and
the worker whose main thread wakes first takes them. With clients that keep
their connections open (a reverse proxy's upstream pool, a provider sending
bursts, wrk in the benchmarks) one process often ended up with all of them
while the others idled: Python runs one process on one core at a time, so
two workers on two cores served at the speed of one. Measured with 16
keep-alive connections on 2 workers (issue 7's ingest): in most runs one
worker had 98 % of the CPU and the machine was 43 % idle.

Here a worker stops listening once as many connections are in its thread
pool as it has threads, and listens again when one comes back; a busy
worker leaves new connections in the kernel's queue for one that has a
thread free. Known upstream: https://github.com/benoitc/gunicorn/issues/3433.
Connections a worker already holds (keep-alive) still queue for its threads
as before.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    """``gthread`` with accepting gated on a free thread; see the module doc."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_pool = 0  # connections handed to the thread pool and not finished; main thread only

    def enqueue_req(self, conn) -> None:
        self.in_pool += 1
        super().enqueue_req(conn)
        self._listen_if_free()

    def finish_request(self, conn, fs) -> None:
        self.in_pool -= 1
        super().finish_request(conn, fs)
        self._listen_if_free()

    def set_accept_enabled(self, enabled: bool) -> None:
        """The run loop's own check (``worker_connections``), and a free thread."""
        super().set_accept_enabled(enabled and self.in_pool < self.cfg.threads)

    def _listen_if_free(self) -> None:
        self.set_accept_enabled(self.alive and self.nr_conns < self.worker_connections)
