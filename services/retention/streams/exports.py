"""Exports in the background: the ExportRequested consumer and each replica's build loop.

The consumer only makes sure the requested export is queued (RequestExport already queued
it with the job) and commits at once, so no event waits behind a build and no build is
redelivered to the next replica when one dies. The build loop takes the oldest queued
export no replica holds (`ExportBuilder.build_next`), one at a time per replica, so a
replica's memory holds one export's part at most; it looks again every `poll_seconds`, at
once when this replica's consumer saw a request, and cleans up after abandoned builds
every few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from privacam.retention.v1 import events_pb2
from services.common.kafka import Delivery
from services.retention.domain.export_build import ExportBuilder
from services.retention.domain.exports import Exports

log = logging.getLogger("privacam.retention.exports")

JANITOR_SECONDS = 300.0
"""How often a replica cleans up after builds whose export is gone (ExportBuilder.
clean_abandoned)."""


class ExportBuildLoop:
    def __init__(self, builder: ExportBuilder, *, poll_seconds: float) -> None:
        self._builder = builder
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention export builds")

    async def stop(self) -> None:
        """Cancel the build in hand: its lease is released, so another replica goes on
        from its last checkpoint at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        janitor_at = loop.time() + JANITOR_SECONDS / 10
        while True:
            self._wake.clear()
            try:
                if loop.time() >= janitor_at:
                    janitor_at = loop.time() + JANITOR_SECONDS
                    await self._builder.clean_abandoned()
                while await self._builder.build_next():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("export builds failed; retrying shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)


class ExportWorker:
    def __init__(self, exports: Exports, loop: ExportBuildLoop) -> None:
        self._exports = exports
        self._loop = loop

    async def on_event(self, event: events_pb2.RetentionEvent, delivery: Delivery) -> None:
        if (
            event.WhichOneof("event") == "export_requested"
            and event.metadata.tenant_id
            and await self._exports.enqueue(
                event.metadata.tenant_id, event.export_requested.export_id
            )
        ):
            self._loop.wake()
