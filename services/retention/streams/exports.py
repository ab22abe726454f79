"""The export worker: ExportRequested on the retention topic builds the export.

A consumer group spreads exports over replicas and commits after the build, so an
export whose replica died mid-build is built again from the start by another.
"""

from __future__ import annotations

from privacam.retention.v1 import events_pb2
from services.common.kafka import Delivery
from services.retention.domain.exports import Exports


class ExportWorker:
    def __init__(self, exports: Exports) -> None:
        self._exports = exports

    async def on_event(self, event: events_pb2.RetentionEvent, delivery: Delivery) -> None:
        if event.WhichOneof("event") == "export_requested" and event.metadata.tenant_id:
            await self._exports.build(event.metadata.tenant_id, event.export_requested.export_id)
