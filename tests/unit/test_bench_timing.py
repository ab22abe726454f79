"""The benchmarks' open-loop load: a fixed schedule, latency from the scheduled start."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import Result
from benchmarks.timing import latencies_from_schedule, open_loop, open_loop_schedule


def test_the_schedule_spaces_starts_evenly_and_deals_them_in_turn() -> None:
    schedule = open_loop_schedule(rate=10, seconds=1, clients=3)
    assert schedule == [[0.0, 0.3, 0.6, 0.9], [0.1, 0.4, 0.7], [0.2, 0.5, 0.8]]
    assert sorted(t for starts in schedule for t in starts) == pytest.approx(
        [n / 10 for n in range(10)]
    )


def test_latency_counts_from_the_scheduled_start() -> None:
    # The second operation was due at 0.1 but began only when the first ended, at 1.0.
    assert latencies_from_schedule([0.0, 0.1], [1.0, 1.1]) == pytest.approx([1.0, 1.0])


async def test_a_slow_operation_charges_the_wait_to_the_ones_behind_it() -> None:
    calls = 0

    async def operation(_client: int) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2 if calls == 1 else 0)

    latencies = sorted(await open_loop(operation, rate=20, seconds=0.2, clients=1))
    # Four operations due at 0, 50, 100 and 150 ms; the first takes 200 ms, so the others
    # wait and their latencies are at least 150, 100 and 50 ms, not about 0.
    assert len(latencies) == 4
    for measured, least in zip(latencies, [0.05, 0.1, 0.15, 0.2], strict=True):
        assert measured >= least - 0.01


def test_a_cost_target_passes_at_or_below_it() -> None:
    within = Result.compare("p99", 15, "ms", "raw p99", 10, 1.5, at_most=True)
    over = Result.compare("p99", 16, "ms", "raw p99", 10, 1.5, at_most=True)
    assert (within.passed, over.passed) == (True, False)
    assert within.target_text == "<= 1.50x"
