"""Every benchmark scenario still runs, at a size that takes seconds.

Benchmarks are not tests: no timing is asserted here, only that each
scenario starts its processes, drives its load, prints its figures and exits
with 0 (targets met) or 1 (a target missed), never 2 (the benchmark broke).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
WRK_SCENARIOS = {"ingest", "publish"}

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_runs_and_prints_its_figures(name, tmp_path):
    if os.environ.get("WEBHOOKS_TEST_DB") == "postgres":
        pytest.skip("runs in the SQLite pass: the benchmarks make their own SQLite and PostgreSQL databases")
    if name in WRK_SCENARIOS and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")
    command = [sys.executable, "-m", "bench", name, "--tiny", "--postgres", os.environ.get("WEBHOOKS_TEST_POSTGRES_URL", "")]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    output = finished.stdout + finished.stderr
    assert finished.returncode in (0, 1), output
    figures = [line for line in finished.stdout.splitlines() if line.strip().startswith("FIGURE ")]
    assert figures, output
    assert all(line.count("|") == 5 for line in figures), figures
    assert f"== {SCENARIOS[name].title}: {'pass' if finished.returncode == 0 else 'MISSED'}" in finished.stdout


def test_multiworker_runs_and_prints_its_table():
    """``bench.multiworker`` is run by hand (PostgreSQL only); a backlog small enough for seconds."""
    url = os.environ.get("WEBHOOKS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("needs PostgreSQL: set WEBHOOKS_TEST_POSTGRES_URL (.ci/run does)")
    if os.environ.get("WEBHOOKS_TEST_DB") == "postgres":
        pytest.skip("runs in the SQLite pass: the benchmark makes its own PostgreSQL databases")
    command = [sys.executable, "-m", "bench.multiworker", "--events", "800", "--workers", "1,2", "--threads", "2",
               "--postgres", url]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    rows = [line.split("|")[1].strip() for line in finished.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert rows == ["1", "2"], output


def test_docs_get_figures_and_command_and_keep_other_sections(tmp_path):
    """The generated block is replaced on every full run; hand-written sections stay."""
    from bench.report import Figure
    from bench.report import Result
    from bench.report import write_docs

    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Results\n\n## Multi-worker delivery (PostgreSQL)\n\nkept as written\n")
    result = Result("memory", "7. Memory", 100)
    result.figures.append(Figure("worker RSS, peak", 120.0, "MB", op="<=", bound=250))
    write_docs(docs, [result], "python -m bench")
    first = docs.read_text()
    assert "| worker RSS, peak" in first and "pass" in first and "python -m bench" in first
    assert "## Multi-worker delivery (PostgreSQL)\n\nkept as written" in first

    result.figures[0] = Figure("worker RSS, peak", 300.0, "MB", op="<=", bound=250)
    write_docs(docs, [result], "python -m bench memory")
    second = docs.read_text()
    assert "MISS" in second and "300 MB" in second and "120 MB" not in second
    assert second.count("bench:results -->") == 2
    assert "kept as written" in second
