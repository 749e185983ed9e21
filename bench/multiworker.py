"""Multi-worker delivery on PostgreSQL: 1, 2 and 4 ``flask --app app worker`` processes in one run.

    .venv/bin/python -m bench.multiworker [--events 10000] [--workers 1,2,4] [--threads 8] [--write]

Each round gets a fresh database holding a backlog of ``--events`` due
deliveries over 10 endpoints of one loopback receiver (``bench.receiver``, in
its own process, answering at once), published through the bulk API before
any worker runs. The workers then start together; the rate counts what
arrives from the moment every worker sweeps until the database shows every
delivery succeeded, so a slow start does not count against more workers.
``--write`` puts the table into docs/benchmarks.md under "Multi-worker delivery
(PostgreSQL)", leaving the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

from bench import clients
from bench.procs import DEFAULT_POSTGRES
from bench.procs import ROOT
from bench.procs import gunicorn
from bench.procs import hub_env
from bench.procs import postgres_database
from bench.procs import say
from bench.procs import scratch
from bench.procs import worker
from bench.receiver import ReceiverProcess
from bench.site import Site

ENDPOINTS = 10
HEADING = "## Multi-worker delivery (PostgreSQL)"
DOCS = ROOT / "docs" / "benchmarks.md"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trip(receiver: ReceiverProcess, folder: Path, server: str, events: int, processes: int, threads: int) -> dict:
    """One round: a backlog of ``events`` deliveries, ``processes`` workers; returns the figures."""
    label = f"mw{processes}-{time.monotonic_ns()}"

    def arrived() -> int:
        return sum(item["count"] for path, item in receiver.stats()["paths"].items() if path.startswith(f"/{label}/"))

    with postgres_database(server) as url, Site(url) as site:
        tenant_id, key = site.tenant("bench")
        for number in range(ENDPOINTS):
            site.endpoint(tenant_id, receiver.url(f"/{label}/e{number}"), event_types=[f"t{number}.*"])
        with gunicorn("web", "wsgi:app", hub_env(url, scheduler="off"), folder, workers=1) as web:
            backlog = (clients.order_event(n, type=f"t{n % ENDPOINTS}.created") for n in range(events))
            clients.publish_bulk(web.url, key, backlog)
        env = hub_env(url, delivery_concurrency=threads, sweep_interval=0.2)
        say(f"{processes} worker(s) x {threads} threads: {events:,} deliveries due")
        workers = []
        try:
            workers = [worker(f"{label}-w{n}", env, folder) for n in range(processes)]
            started, before = time.monotonic(), arrived()
            cpu_before = sum(cpu_seconds(process.pid) for process in workers)
            clients.wait_for(lambda: site.count_deliveries("succeeded") == events, timeout=events / 5 + 120, every=0.2,
                             progress=lambda: f"{arrived():,} of {events:,} delivered", what="every delivery recorded")
            elapsed = time.monotonic() - started
            cpu = sum(cpu_seconds(process.pid) for process in workers) - cpu_before
        finally:
            for process in workers:
                process.stop()
        received, attempts = arrived(), site.scalar("SELECT count(*) FROM attempts")
    if received != events or attempts != events:
        raise RuntimeError(f"{received} requests received, {attempts} attempts recorded, for {events} deliveries")
    measured = events - before
    if measured <= 0:
        raise RuntimeError(f"{processes} worker(s) delivered all {events:,} while starting up: nothing left to time; "
                           "give a larger --events")
    return {
        "processes": processes,
        "rate": measured / elapsed,
        "measured": measured,
        "seconds": elapsed,
        "cpu_ms": cpu * 1000 / measured,
    }


def table(rows: list[dict]) -> str:
    one = rows[0]["rate"] if rows and rows[0]["processes"] == 1 else None
    lines = [
        "| worker processes | deliveries/s | vs 1 worker | deliveries timed | seconds | worker CPU per delivery |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = f"{row['rate'] / one:.2f}x" if one else "-"
        lines.append(
            f"| {row['processes']} | {row['rate']:,.0f} | {ratio} | {row['measured']:,} | {row['seconds']:.1f} "
            f"| {row['cpu_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace (or append) the section under HEADING in docs/benchmarks.md."""
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    section = f"{HEADING}\n\n{text.strip()}\n\n"
    pattern = re.escape(HEADING) + r"\n.*?(?=^## |\Z)"
    if re.search(pattern, current, flags=re.S | re.M):
        updated = re.sub(pattern, lambda _: section, current, flags=re.S | re.M)
    else:
        updated = current.rstrip() + "\n\n" + section
    DOCS.write_text(updated.rstrip() + "\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.multiworker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000, help="due deliveries per round")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, one round each")
    parser.add_argument("--threads", type=int, default=8, help="WEBHOOKS_DELIVERY_CONCURRENCY of each worker")
    parser.add_argument("--postgres", default=os.environ.get("WEBHOOKS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--write", action="store_true", help=f"write the table into {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    rows = []
    with ReceiverProcess() as receiver, scratch() as folder:
        for processes in (int(n) for n in args.workers.split(",")):
            rows.append(round_trip(receiver, folder, args.postgres, args.events, processes, args.threads))
            say(f"{processes} worker(s): {rows[-1]['rate']:,.0f} deliveries/s")
    command = ".venv/bin/python -m bench.multiworker " + shlex.join(argv)
    text = "\n\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command.strip()}` on {os.cpu_count()} cores; "
            f"load average before the run {load[0]:.1f}, after {os.getloadavg()[0]:.1f}.",
            table(rows),
            f"Each round: a fresh PostgreSQL database, {args.events:,} deliveries due over {ENDPOINTS} endpoints of "
            f"a receiver that answers at once, {args.threads} delivery threads per `flask --app app worker`, sweep "
            "every 0.2 s; timed from the moment every worker sweeps to the last delivery recorded as succeeded. "
            "Every round checks that each delivery was received once and recorded with one attempt. "
            "Outcomes are committed in groups, so one worker keeps nearly a core busy on its own; the second core is "
            "shared by PostgreSQL, the receiver and the other workers, so each process added gives less. "
            "\"Worker CPU per delivery\" is what a delivery costs the worker; add processes until the hosts' CPUs "
            "are busy.",
        ]
    )
    print("\n" + text)
    if args.write:
        write_section(text)
        say(f"wrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
