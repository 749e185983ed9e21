"""The scenarios of issue 7, each a function ``run(options) -> Result``.

Sizes: ``size`` scales the work (events, deliveries, history rows);
``seconds`` bounds the time-boxed loads (wrk runs, the fairness window,
memory sampling). Each scenario has a default size for ``python -m bench``
and a tiny one for the smoke test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.report import Result


@dataclass(frozen=True)
class Options:
    size: int
    seconds: float
    postgres_url: str | None
    threads: int


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    size_help: str
    size: int
    tiny: int
    seconds: float
    tiny_seconds: float
    module: str

    def run(self, options: Options) -> Result:
        import importlib

        function: Callable[[Options], Result] = importlib.import_module(f"bench.scenarios.{self.module}").run
        return function(options)


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("ingest", "1. Ingest", "seconds of wrk load on each side", 10, 1, 0, 0, "ingest"),
        Scenario("publish", "2. Publish", "events in each bulk run", 20_000, 2_000, 10, 1, "publish"),
        Scenario("delivery", "3. Delivery throughput", "deliveries per run", 20_000, 200, 0, 0, "delivery"),
        Scenario("inflight", "4. Many in flight", "deliveries in flight at once", 1_000, 40, 0, 0, "inflight"),
        Scenario("fairness", "5. Fairness", "deliveries pending on the hanging endpoint", 2_000, 50, 20, 3, "fairness"),
        Scenario("history", "6. History", "historical deliveries (and attempts)", 1_000_000, 2_000, 0, 0, "history"),
        Scenario("memory", "7. Memory", "due deliveries in the backlog", 100_000, 2_000, 30, 3, "memory"),
    )
}
