"""Figures, their targets, the printed table and ``docs/benchmarks.md``.

A figure is a value, usually divided by a baseline measured in the same run,
checked against a target. The generated part of ``docs/benchmarks.md`` sits
between two markers; everything outside them (findings, and the section
"Multi-worker delivery (PostgreSQL)" that others write) is kept as it is.
"""

from __future__ import annotations

import operator
import os
import platform
import re
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

BEGIN = "<!-- bench:results -->"
END = "<!-- /bench:results -->"
COMPARE = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


@dataclass(frozen=True)
class Figure:
    """One measured figure.

    With a ``baseline`` the target applies to ``value / baseline``; without
    one, to the value itself. ``bound=None`` means reported, no target.
    """

    label: str
    value: float
    unit: str = ""
    baseline: float | None = None
    op: str = ">="
    bound: float | None = None
    baseline_label: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / baseline``, or None without a baseline."""
        if self.baseline is None:
            return None
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def checked(self) -> float:
        """What the target is checked against: the ratio if there is a baseline, else the value."""
        return self.ratio if self.baseline is not None else self.value

    @property
    def passed(self) -> bool | None:
        """True or False against the target; None when there is none."""
        if self.bound is None:
            return None
        return COMPARE[self.op](self.checked, self.bound)

    @property
    def target(self) -> str:
        """The target as people read it, such as ``ratio >= 0.5``."""
        if self.bound is None:
            return ""
        what = "ratio" if self.baseline is not None else "value"
        unit = "" if self.baseline is not None else f" {self.unit}".rstrip()
        return f"{what} {self.op} {fmt(self.bound)}{unit}"

    @property
    def verdict(self) -> str:
        """``pass``, ``MISS`` or ``info`` (no target)."""
        return {True: "pass", False: "MISS", None: "info"}[self.passed]

    def cells(self) -> list[str]:
        """One table row: figure, value, baseline, ratio, target, result."""
        baseline = "" if self.baseline is None else f"{fmt(self.baseline)} {self.unit}".rstrip()
        if self.baseline_label:
            baseline += f" ({self.baseline_label})"
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        return [self.label, f"{fmt(self.value)} {self.unit}".rstrip(), baseline, ratio, self.target, self.verdict]


@dataclass
class Result:
    """A scenario's figures plus the notes worth keeping (plans, settings)."""

    scenario: str
    title: str
    size: int
    seconds: float | None = None
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def passed(self) -> bool:
        """True when no figure missed its target."""
        return all(figure.passed is not False for figure in self.figures)

    def add(self, figure: Figure) -> Figure:
        """Keep a figure and print it at once, so a long run shows results as it goes."""
        self.figures.append(figure)
        print(f"  FIGURE {' | '.join(figure.cells())}", flush=True)
        return figure

    def note(self, text: str) -> None:
        """Keep a remark (settings, a query plan) for the docs, and print it."""
        self.notes.append(text)
        print("  " + text.replace("\n", "\n  "), flush=True)


def fmt(value: float) -> str:
    """A number as people read it: thousands separated, three significant digits when small."""
    if value in (float("inf"), float("-inf")):
        return "never" if value > 0 else "-inf"
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


HEADER = ["figure", "value", "baseline (same run)", "ratio", "target", "result"]


def table(rows: list[list[str]]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def result_table(result: Result) -> str:
    """Every figure of one scenario."""
    return table([HEADER] + [figure.cells() for figure in result.figures])


def summary_table(results: list[Result]) -> str:
    """The figures that have a target, of every scenario run."""
    rows = [["scenario", "size", "figure", "value", "ratio", "target", "result"]]
    for result in results:
        for figure in result.figures:
            if figure.bound is None:
                continue
            cells = figure.cells()
            rows.append([result.scenario, f"{result.size:,}", cells[0], cells[1], cells[3], cells[4], cells[5]])
    return table(rows)


def machine_note() -> str:
    """What the figures were measured on, how busy it was, and why only the ratios compare across runs."""
    one, five, _ = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {_memory_gb():.0f} GB RAM, Python {platform.python_version()}, {platform.system()}; "
        f"load average at the end {one:.1f} (1 min), {five:.1f} (5 min), the benchmark's own processes included. "
        "Absolute numbers move with whatever else runs: compare the ratios, each against a baseline measured in the "
        "same run"
    )


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def markdown(results: list[Result], command: str) -> str:
    """The generated block of ``docs/benchmarks.md``."""
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {machine_note()}.",
        "",
        "### Summary",
        "",
        summary_table(results),
        "",
    ]
    for result in results:
        seconds = f", {result.seconds:g} s of load" if result.seconds else ""
        lines += [
            f"### {result.title}",
            "",
            f"Size {result.size:,}{seconds}; took {result.elapsed:.0f} s. "
            f"Alone: `.venv/bin/python -m bench {result.scenario} --size {result.size}"
            + (f" --seconds {result.seconds:g}`." if result.seconds else "`."),
            "",
            result_table(result),
            "",
        ]
        for note in result.notes:
            lines += ["```", note, "```", ""] if "\n" in note else [f"- {note}", ""]
    lines.append(END)
    return "\n".join(lines)


def write_docs(path: Path, results: list[Result], command: str) -> None:
    """Replace the generated block of ``path``, keeping every hand-written section."""
    block = markdown(results, command)
    if path.exists():
        current = path.read_text()
        if BEGIN in current and END in current:
            updated = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, current, flags=re.S)
            path.write_text(updated)
            return
        path.write_text(current.rstrip() + "\n\n## Results\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Benchmarks\n\n## Results\n\n" + block + "\n")
