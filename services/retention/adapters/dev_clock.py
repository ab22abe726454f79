"""DEVELOPMENT ONLY: a wall clock shifted forward by the number of seconds in a file.

Tests and the demo let a week pass on a running service by writing a larger number
into the file. The settings refuse it unless the service binds a loopback address,
so a deployed pod (bound to 0.0.0.0) cannot run on a fake clock. The offset never
goes back: a smaller number, or an unreadable file, keeps the largest seen.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import Gauge

from services.common.clock import Clock

log = logging.getLogger("privacam.retention.dev_clock")

OFFSET = Gauge(
    "privacam_retention_dev_clock_offset_seconds",
    "DEVELOPMENT ONLY: seconds the fake clock runs ahead of the wall clock.",
)


class OffsetFileClock:
    def __init__(self, inner: Clock, path: Path) -> None:
        self._inner = inner
        self._path = path
        self._offset = 0.0
        log.warning("DEVELOPMENT clock: time is shifted by the number in the clock file")

    def _read(self) -> float:
        try:
            value = float(self._path.read_text().strip() or "0")
        except (OSError, ValueError):
            return self._offset
        if value > self._offset:
            self._offset = value
            OFFSET.set(value)
        return self._offset

    def now(self) -> datetime:
        return self._inner.now() + timedelta(seconds=self._read())

    def monotonic(self) -> float:
        return self._inner.monotonic() + self._read()
