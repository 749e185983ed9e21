"""Drive ``wrk`` (Debian package ``wrk``) with a Lua script that POSTs a fixed body.

wrk keeps 16 connections busy from two threads, far cheaper than any Python
client, so the server is what gets measured. Loads are compared in alternating rounds. The script counts the 2xx
answers and the requests it sent, and prints one ``BENCH {json}`` line that
:func:`run` parses. A header can be made unique per request (a provider's
delivery id), so de-duplication does not swallow the load.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCRIPT = """
local threads = {}
local body = [==[%(body)s]==]
local path = [==[%(path)s]==]
local headers = %(headers)s
local unique = %(unique)s
local fixed = nil

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  sent = 0
  if unique == nil then fixed = wrk.format("POST", path, headers, body) end
end

function request()
  sent = sent + 1
  if fixed ~= nil then return fixed end
  headers[unique] = "bench-%(nonce)s-" .. tid .. "-" .. sent
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 end
end

function done(summary, latency, requests)
  local total_ok, total_sent = 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_sent = total_sent + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %%d, "duration_us": %%d, "ok": %%d, "sent": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"errors": %%d}\\n',
    summary.requests, summary.duration, total_ok, total_sent,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    ok: int
    sent: int
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rate(self) -> float:
        """Requests answered per second (any status)."""
        return self.requests / self.seconds

    @property
    def cut_off(self) -> int:
        """Requests sent but not answered when wrk stopped (at most one per connection)."""
        return self.sent - self.requests


def alternate(runs: dict[str, Callable[[float], Load]], *, seconds: float, rounds: int = 3) -> dict[str, list[Load]]:
    """Run each load in turn, ``rounds`` times, splitting ``seconds`` between the rounds.

    A busy moment of the shared machine then hits every side about alike,
    and :func:`best` of each side is what it does when the machine lets it.
    """
    loads: dict[str, list[Load]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run_once in runs.items():
            loads[name].append(run_once(max(1.0, seconds / rounds)))
    return loads


def best(loads: list[Load]) -> Load:
    """The round with the highest rate."""
    return max(loads, key=lambda load: load.rate)


def available() -> bool:
    """True when the ``wrk`` binary is on the PATH."""
    return shutil.which("wrk") is not None


def lua_table(headers: dict[str, str]) -> str:
    """Headers as a Lua table literal."""
    return "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()) + "}"


def run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    seconds: float,
    folder: Path,
    connections: int = 16,
    threads: int = 2,
    unique_header: str | None = None,
) -> Load:
    """POST ``body`` to ``url`` for ``seconds`` with ``connections`` open connections."""
    if not available():
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    base, _, path = url.partition("//")[2].partition("/")
    script = folder / "post.lua"
    script.write_text(
        SCRIPT
        % {
            "body": body.decode(),
            "path": "/" + path,
            "headers": lua_table(headers),
            "unique": json.dumps(unique_header) if unique_header else "nil",
            "nonce": secrets.token_hex(6),  # unique across runs too, or a provider's dedupe would answer 200
        }
    )
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{base}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((line for line in result.stdout.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
    data = json.loads(line[len("BENCH "):])
    return Load(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        ok=data["ok"],
        sent=data["sent"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
    )
