"""The periodic sweep that ends expired grants (`DeviceAuth.expire_grants`).

A runtime component: `start()` launches the loop, `stop()` ends it. Every
replica runs one; the domain makes concurrent sweeps harmless (a removed grant
is skipped, a repeated announcement carries the same event id), and each
replica's first sweep comes after a random part of the interval, so replicas
started together do not sweep in step. A failed sweep (Kafka briefly away) is
logged and retried at the next tick; what it left is still expired then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

log = logging.getLogger("privacam.device_auth.grant_expiry")

DEFAULT_INTERVAL = timedelta(seconds=60)


class ExpiresGrants(Protocol):
    async def expire_grants(self) -> int: ...


class GrantExpirySweeper:
    def __init__(
        self,
        auth: ExpiresGrants,
        interval: timedelta = DEFAULT_INTERVAL,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        first_delay: timedelta | None = None,
    ) -> None:
        """`first_delay` defaults to a random part of `interval`; `sleep` is injectable
        so tests run the loop without waiting."""
        if interval <= timedelta(0):
            raise ValueError("interval must be positive")
        self._auth = auth
        self._interval = interval
        self._sleep = sleep
        self._first_delay = (
            first_delay if first_delay is not None else interval * random.random()  # noqa: S311
        )
        self._task: asyncio.Task[None] | None = None
        self.sweeps = 0
        """Sweeps completed (with or without anything to remove)."""

    async def sweep(self) -> int:
        """One sweep now; how many grants it ended (0 after logging a failure)."""
        try:
            removed = await self._auth.expire_grants()
        except Exception:
            log.exception("grant expiry sweep failed; retrying at the next tick")
            return 0
        self.sweeps += 1
        if removed:
            log.info("expired grants revoked", extra={"grants": removed})
        return removed

    async def _run(self) -> None:
        await self._sleep(self._first_delay.total_seconds())
        while True:
            await self.sweep()
            await self._sleep(self._interval.total_seconds())

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="grant-expiry-sweep")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
