"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every worker process runs its own scheduler (unless WEBHOOKS_SCHEDULER=off);
no ``preload_app``, because the scheduler's threads must start after the fork.
"""

import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "webhooks.gunicorn_worker.BalancedThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Long enough for in-flight deliveries (their timeout is at most 60 s) to finish on SIGTERM.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "75"))
timeout = 120
accesslog = os.environ.get("ACCESS_LOG")  # "-" for stdout; off by default, attempts are logged anyway


def post_worker_init(worker):
    """The app's own objects live as long as the worker: keep the collector's full passes off them.

    A worker holds about 126,000 objects once the app is loaded; a full
    collection walked them all every few bulk requests (70 ms each).
    """
    import gc

    gc.collect()
    gc.freeze()


def worker_int(worker):
    _stop_scheduler(worker)


def worker_exit(server, worker):
    """On SIGTERM: stop claiming, let in-flight deliveries finish, release the rest."""
    _stop_scheduler(worker)


def _stop_scheduler(worker):
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from webhooks import scheduler

        scheduler.stop(app, timeout=graceful_timeout - 5)
