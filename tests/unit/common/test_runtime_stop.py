"""Consumers stop together: one after another, their group leaves outlast a pod's grace period."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common.runtime import stop_together


class SlowPart:
    def __init__(self, seconds: float, fails: bool = False) -> None:
        self.seconds = seconds
        self.fails = fails
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await asyncio.sleep(self.seconds)
        if self.fails:
            raise RuntimeError("broker gone")
        self.stopped = True


async def test_parts_stop_at_the_same_time() -> None:
    parts = [SlowPart(0.3) for _ in range(4)]
    began = time.perf_counter()
    await stop_together(parts)
    assert time.perf_counter() - began < 0.9  # one after another: 1.2 s
    assert all(part.stopped for part in parts)


async def test_a_part_that_fails_to_stop_does_not_keep_the_others_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = [SlowPart(0.01, fails=True), SlowPart(0.05), SlowPart(0.05)]
    await stop_together(parts)
    assert [part.stopped for part in parts] == [False, True, True]
    assert "failed to stop cleanly" in caplog.text
