"""Benchmarks: each ``bench_<name>.py`` module measures something against a physical
baseline measured in the same run, and states the ratio it must reach.

Run them with ``python -m benchmarks [name ...]`` (``make bench`` runs them all). A module
exposes ``run() -> list[Result]``. Benchmarks are never part of the test suite: timing
on a shared machine is too noisy for a pass/fail test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    """One measured figure against its baseline. Express figures so that higher is better
    (throughput, operations per second): ``ratio`` is ``value / baseline_value`` (or, for
    alternating rounds, the median of their paired ratios) and the figure passes when
    ``ratio >= target``. A cost against a cost (CPU per clip, a p99) may instead be stated
    as its issue states it, lower is better: ``at_most`` makes the figure pass when
    ``ratio <= target``. A figure without a target (None) is reported for what it is and
    cannot miss."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    ratio: float
    target: float | None
    passed: bool
    at_most: bool = False

    @classmethod
    def compare(
        cls,
        name: str,
        value: float,
        unit: str,
        baseline_name: str,
        baseline_value: float,
        target: float | None,
        ratio: float | None = None,
        *,
        at_most: bool = False,
    ) -> Result:
        """`ratio` defaults to value / baseline_value; rates measured in alternating rounds
        give the median of their paired ratios instead (timing.paired_rates)."""
        if ratio is None:
            ratio = value / baseline_value if baseline_value > 0 else float("inf")
        passed = target is None or (ratio <= target if at_most else ratio >= target)
        return cls(name, value, unit, baseline_name, baseline_value, ratio, target, passed, at_most)

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "none"
        return f"{'<=' if self.at_most else '>='} {self.target:.2f}x"


def format_table(results: list[Result]) -> str:
    """The results as one aligned plain-text table."""
    header = (
        "benchmark",
        "value",
        "unit",
        "baseline",
        "baseline value",
        "ratio",
        "target",
        "result",
    )
    rows = [header] + [
        (
            r.name,
            f"{r.value:,.2f}",
            r.unit,
            r.baseline_name,
            f"{r.baseline_value:,.2f}",
            f"{r.ratio:.2f}x",
            r.target_text,
            "ok" if r.passed else "MISSED",
        )
        for r in results
    ]
    numeric = {1, 4, 5}
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in numeric and n else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(results: list[Result], when: str) -> str:
    """The results as the README's table: figure, baseline measured in the same run, ratio,
    target."""
    lines = [
        f"Measured {when} by `make bench` (2 cores; client, server and stack share them).",
        "",
        "| figure | value | baseline (same run) | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        missed = "" if r.passed else " **(missed)**"
        lines.append(
            f"| {r.name} | {r.value:,.2f} {r.unit} | {r.baseline_name}: {r.baseline_value:,.2f} "
            f"| {r.ratio:.2f}x | {r.target_text}{missed} |"
        )
    return "\n".join(lines)
