"""Timing shared by the benchmarks: best-of-many samples, taken in turn so that a figure and
its baseline see the same machine states (this machine is shared and its load varies)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

SAMPLE_SECONDS = 0.002
MIN_ROUNDS = 10


def _calibrate(fn: Callable[[], object]) -> int:
    """How many calls make one sample last about SAMPLE_SECONDS."""
    fn()  # warm up
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        if time.perf_counter() - start >= SAMPLE_SECONDS:
            return loops
        loops *= 2


def best_seconds_per_call(
    functions: list[Callable[[], object]], budget_seconds: float
) -> list[float]:
    """Best seconds per call of each function, sampled round-robin for about the budget."""
    loops = [_calibrate(fn) for fn in functions]
    best = [float("inf")] * len(functions)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline, rounds = time.perf_counter() + budget_seconds, 0
        while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
            rounds += 1
            for i, fn in enumerate(functions):
                start = time.perf_counter()
                for _ in range(loops[i]):
                    fn()
                best[i] = min(best[i], (time.perf_counter() - start) / loops[i])
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


Operation = Callable[[int], Awaitable[None]]
"""One call of a worker; it receives the worker's number."""


async def _rate(operation: Operation, in_flight: int, seconds: float) -> float:
    """Operations per second with `in_flight` concurrent workers for one round."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(number: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await operation(number)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(in_flight)))
    return done / (time.perf_counter() - started)


async def best_rates(
    figure: Operation,
    baseline: Operation,
    *,
    in_flight: int,
    rounds: int = 6,
    round_seconds: float = 0.5,
) -> tuple[float, float]:
    """Best operations per second of a figure and its baseline over alternating rounds."""
    await _rate(figure, in_flight, round_seconds)  # warm up both
    await _rate(baseline, in_flight, round_seconds)
    best_figure = best_baseline = 0.0
    for _ in range(rounds):
        best_baseline = max(best_baseline, await _rate(baseline, in_flight, round_seconds))
        best_figure = max(best_figure, await _rate(figure, in_flight, round_seconds))
    return best_figure, best_baseline
