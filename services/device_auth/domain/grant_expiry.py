"""The periodic sweep that ends expired grants (`DeviceAuth.expire_grants`).

Every replica runs one; the domain makes concurrent sweeps harmless (a removed grant is
skipped, a repeated announcement carries the same event id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from services.common.periodic import Periodic

log = logging.getLogger("privacam.device_auth.grant_expiry")

DEFAULT_INTERVAL = timedelta(seconds=60)


class ExpiresGrants(Protocol):
    async def expire_grants(self) -> int: ...


class GrantExpirySweeper(Periodic):
    def __init__(
        self,
        auth: ExpiresGrants,
        interval: timedelta = DEFAULT_INTERVAL,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        first_delay: timedelta | None = None,
    ) -> None:
        super().__init__(
            "grant expiry sweep",
            auth.expire_grants,
            interval,
            log=log,
            sleep=sleep,
            first_delay=first_delay,
        )

    async def sweep(self) -> int:
        """One sweep now; how many grants it ended (0 after logging a failure)."""
        return await self.run_once()

    @property
    def sweeps(self) -> int:
        """Sweeps completed (with or without anything to remove)."""
        return self.runs
