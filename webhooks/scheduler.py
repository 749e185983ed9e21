"""APScheduler wiring: timers only; what they run lives in ``worker`` and friends.

Each process keeps its own in-memory jobs (APScheduler cannot share a job
store between processes) and the claims make concurrent sweeps safe. Start it
after gunicorn forks (no ``--preload``): threads do not survive a fork.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable

import click
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy.exc import OperationalError

from webhooks.db import db
from webhooks.worker import Worker

log = logging.getLogger("webhooks.scheduler")

# Periodic jobs other modules add: (name, seconds, function taking the app).
PERIODIC: list[tuple[str, float, Callable[[Flask], None]]] = []


def periodic(name: str, seconds: float):
    """Register ``function(app)`` to run every ``seconds`` in every scheduler."""

    def register(function):
        PERIODIC.append((name, seconds, function))
        return function

    return register


def worker(app: Flask) -> Worker:
    """This process's delivery worker, created on first use."""
    if "webhooks.worker" not in app.extensions:
        app.extensions["webhooks.worker"] = Worker(app)
    return app.extensions["webhooks.worker"]


def init_app(app: Flask) -> None:
    """Start the scheduler unless it is switched off, the app is under test, or a
    CLI command other than ``flask run`` loaded it (``flask worker`` starts it itself;
    ``flask tenants create`` should not deliver anything)."""
    command = click.get_current_context(silent=True)
    if command is not None and command.info_name != "run":
        return
    if app.config["SCHEDULER"] and not app.testing:
        start(app)


def start(app: Flask, *, sweep: bool = True) -> BackgroundScheduler:
    """Start sweeping in background threads; stopped at interpreter exit or by :func:`stop`.

    ``sweep=False`` starts only the periodic jobs, for a caller that runs
    the sweeps itself (``flask worker`` runs them back to back).
    """
    if "webhooks.scheduler" in app.extensions:
        return app.extensions["webhooks.scheduler"]
    # APScheduler logs every run at INFO: once a second per process is noise, not news.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
    interval = app.config["SWEEP_INTERVAL"]
    # A sweep that used the whole interval would still run at the next tick, which
    # APScheduler then skips (max_instances=1): workers would claim every other second.
    if sweep:
        timed = lambda: worker(app).sweep(budget=interval * 0.9)  # noqa: E731
        scheduler.add_job(_in_context(app, timed), "interval", seconds=interval, id="sweep")
    from webhooks import retention  # noqa: F401  (registers its periodic job; it imports this module)

    for name, seconds, function in PERIODIC:
        scheduler.add_job(_in_context(app, lambda f=function: f(app)), "interval", seconds=seconds, id=name)
    scheduler.start()
    app.extensions["webhooks.scheduler"] = scheduler
    atexit.register(stop, app)
    log.info("scheduler started: sweep every %ss, %s delivery threads", interval, worker(app).concurrency)
    return scheduler


def stop(app: Flask, timeout: float = 30.0) -> None:
    """Stop timers, then the worker: no new claims, in-flight attempts finish."""
    scheduler = app.extensions.pop("webhooks.scheduler", None)
    if scheduler is not None:
        scheduler.shutdown(wait=True)
    active = app.extensions.pop("webhooks.worker", None)
    if active is not None:
        active.stop(timeout)


def _in_context(app: Flask, job: Callable[[], object]) -> Callable[[], None]:
    """Run a job inside an app context and never let it kill the timer thread.

    A database that is down makes sweeps fail; they log and the next tick tries
    again, which is how the hub rides out a PostgreSQL restart.
    """

    def run() -> None:
        with app.app_context():
            try:
                job()
            except OperationalError as exc:
                # Every tick of every process fails alike during an outage: one line each, no traceback.
                reason = str(exc.orig or exc).strip().splitlines()[0]
                log.error("scheduled job failed, database unavailable (%s); it runs again on the next tick", reason)
                db.session.rollback()
            except Exception:
                log.exception("scheduled job failed; it runs again on the next tick")
                db.session.rollback()
            finally:
                db.session.remove()

    return run
