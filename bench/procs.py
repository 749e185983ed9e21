"""Real processes and fresh databases for the benchmarks.

The hub runs exactly as in production: ``gunicorn -c gunicorn.conf.py
wsgi:app`` for the web side and ``flask --app app worker`` for deliveries,
configured through environment variables. Every process started here is
stopped by the context manager that started it (SIGTERM, then SIGKILL to its
own process group), so a benchmark that fails half-way leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine
from sqlalchemy import text

from webhooks.testing import Process
from webhooks.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SECRET_KEY = "bench-secret-key"
ENCRYPTION_KEY = Fernet.generate_key().decode()


def say(message: str) -> None:
    """A progress line: long runs show what they are doing as they go."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def hub_env(database_url: str, **settings) -> dict[str, str]:
    """The environment of a hub process: its database, keys and ``WEBHOOKS_*`` settings."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEBHOOKS_SECRET_KEY": SECRET_KEY,
        "WEBHOOKS_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "on",
        "GRACEFUL_TIMEOUT": "10",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ACCESS_LOG", None)
    env.update({f"WEBHOOKS_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def hub_config(database_url: str) -> dict:
    """``create_app`` settings for setting a database up from this process."""
    return {
        "SQLALCHEMY_DATABASE_URI": driver_url(database_url),
        "SECRET_KEY": SECRET_KEY,
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "ALLOW_PRIVATE_TARGETS": True,
        "SCHEDULER": False,
    }


def driver_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def gunicorn(name: str, app: str, env: dict[str, str], log_dir: Path, *, workers: int = 2) -> Process:
    """Start gunicorn with the project's config file on a free port; ``process.url`` is its base.

    Without ``--no-control-socket`` every gunicorn on the machine would share one
    control socket path, and benchmarks run beside other people's servers.
    """
    port = free_port()
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    process = Process(name, [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--no-control-socket", app], env, log_dir)
    process.url = f"http://127.0.0.1:{port}"
    process.wait_for_http(process.url + "/")
    return process


def worker(name: str, env: dict[str, str], log_dir: Path) -> Process:
    """Start ``flask --app app worker`` (the delivery sweeper alone)."""
    return workers([name], env, log_dir)[0]


def workers(names: list[str], env: dict[str, str], log_dir: Path) -> list[Process]:
    """Start several workers at once, so that they begin sweeping within moments of each other."""
    started = [Process(name, [str(BIN / "flask"), "--app", "app", "worker"], env, log_dir) for name in names]
    try:
        for process in started:
            process.wait_for_log("sweeping every", timeout=60)
    except BaseException:
        for process in started:
            process.stop()
        raise
    return started


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder for databases and logs, removed afterwards
    unless ``WEBHOOKS_BENCH_KEEP=1`` (then its path is printed, to read the logs)."""
    if os.environ.get("WEBHOOKS_BENCH_KEEP") == "1":
        folder = Path(tempfile.mkdtemp(prefix="webhooks-bench-"))
        say(f"keeping logs and databases in {folder}")
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as folder:
        yield Path(folder)


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    """A fresh SQLite file URL."""
    yield f"sqlite:///{folder / f'hub-{uuid.uuid4().hex[:8]}.sqlite'}"


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on ``server_url``'s server, dropped afterwards."""
    admin = create_engine(driver_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"webhooks_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def database(kind: str, folder: Path, postgres_url: str) -> Iterator[str]:
    """A fresh database of ``kind`` (``sqlite`` or ``postgres``)."""
    manager = sqlite_database(folder) if kind == "sqlite" else postgres_database(postgres_url)
    with manager as url:
        yield url
