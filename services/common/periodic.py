"""A runtime component that does one piece of housekeeping every interval.

`start()` launches the loop, `stop()` ends it. Every replica runs its own, so the work
must make concurrent runs harmless; each replica's first run comes after a random part
of the interval, so replicas started together do not run in step. A failed run (Kafka
briefly away) is logged and retried at the next tick: what it left is still due then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta


class Periodic:
    def __init__(
        self,
        what: str,
        work: Callable[[], Awaitable[int]],
        interval: timedelta,
        *,
        log: logging.Logger,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        first_delay: timedelta | None = None,
    ) -> None:
        """`work` returns how many things it handled; `first_delay` defaults to a random
        part of `interval`; `sleep` is injectable so tests run the loop without waiting."""
        if interval <= timedelta(0):
            raise ValueError("interval must be positive")
        self._what = what
        self._work = work
        self._interval = interval
        self._log = log
        self._sleep = sleep
        self._first_delay = (
            first_delay if first_delay is not None else interval * random.random()  # noqa: S311
        )
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        """Runs completed (with or without anything to do)."""

    async def run_once(self) -> int:
        """One run now; how many things it handled (0 after logging a failure)."""
        try:
            handled = await self._work()
        except Exception:
            self._log.exception("%s failed; retrying at the next tick", self._what)
            return 0
        self.runs += 1
        if handled:
            self._log.info("%s done", self._what, extra={"handled": handled})
        return handled

    async def _run(self) -> None:
        await self._sleep(self._first_delay.total_seconds())
        while True:
            await self.run_once()
            await self._sleep(self._interval.total_seconds())

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._what)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
