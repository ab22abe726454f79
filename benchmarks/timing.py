"""Timing shared by the benchmarks, with samples of a figure and its baseline taken in turn so
that both see the same machine states (this machine is shared and its load varies).

Tight CPU loops keep the best sample of each function: interference only slows them.
Throughput over RPCs keeps the median of the ratios of adjacent rounds: there one lucky round
of either side decided the best-of-each ratio. Over the same ten runs of twenty rounds on this
machine, best-of-each gave 0.81-0.99x and the paired median 0.82-0.91x."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

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


class Rates(NamedTuple):
    figure: float
    """Median operations per second of the figure's rounds."""
    baseline: float
    """Median operations per second of the baseline's rounds."""
    ratio: float
    """Median of figure / baseline over adjacent pairs of rounds."""


async def paired_rates(
    figure: Operation,
    baseline: Operation,
    *,
    in_flight: int,
    rounds: int = 6,
    round_seconds: float = 0.5,
) -> Rates:
    """A figure and its baseline over alternating rounds, each pair of rounds compared."""
    await _rate(figure, in_flight, round_seconds)  # warm up both
    await _rate(baseline, in_flight, round_seconds)
    figures, baselines = [], []
    for _ in range(rounds):
        baselines.append(await _rate(baseline, in_flight, round_seconds))
        figures.append(await _rate(figure, in_flight, round_seconds))
    return Rates(
        statistics.median(figures),
        statistics.median(baselines),
        statistics.median(f / b for f, b in zip(figures, baselines, strict=True)),
    )


def open_loop_schedule(rate: float, seconds: float, clients: int) -> list[list[float]]:
    """Start times, in seconds from the start, of `rate` operations per second evenly spaced
    over `seconds`, dealt in turn to `clients` (client c gets operations c, c + clients, ...)."""
    starts = [n / rate for n in range(round(rate * seconds))]
    return [starts[c::clients] for c in range(clients)]


def latencies_from_schedule(due: list[float], ended: list[float]) -> list[float]:
    """Each operation's latency counted from its scheduled start, not from when it began: an
    operation that waited behind a slow one is charged the wait (no coordinated omission)."""
    return [end - start for start, end in zip(due, ended, strict=True)]


async def open_loop(operation: Operation, rate: float, seconds: float, clients: int) -> list[float]:
    """Latencies of `rate` operations per second offered for `seconds` on a fixed schedule,
    whatever the system's pace. Each client does its operations in order, one at a time (as
    a camera uploads its clips), each at its scheduled time or when the previous one ends,
    whichever is later; latency runs from the scheduled time."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    due: list[float] = []
    ended: list[float] = []

    async def client(number: int, starts: list[float]) -> None:
        for start in starts:
            await asyncio.sleep(max(0.0, began + start - loop.time()))
            await operation(number)
            due.append(start)
            ended.append(loop.time() - began)

    await asyncio.gather(
        *(client(n, s) for n, s in enumerate(open_loop_schedule(rate, seconds, clients)))
    )
    return latencies_from_schedule(due, ended)
