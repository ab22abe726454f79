"""The household's access log over gRPC: device_auth logs a service's read of an account
and an owner's change of a camera's privacy mode."""

from __future__ import annotations

import uuid

import grpc

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.common.clock import Clock
from services.common.peers import Peers, call_options, unreachable
from services.device_auth import NAME


class PeerAccountReads:
    def __init__(self, peers: Peers, clock: Clock) -> None:
        self._peers = peers
        self._clock = clock

    async def record_export_read(self, tenant_id: str, export_id: str, reader: str) -> None:
        await self._append(
            log_pb2.AccessRecord(
                access_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                principal=types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_SERVICE, id=reader),
                resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_EXPORT, export_id=export_id),
                purpose=types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
                service=NAME,
                occurred_at=to_timestamp(self._clock.now()),
            )
        )

    async def record_privacy_change(
        self, tenant_id: str, device_id: str, install_id: str, statement_sha256: bytes
    ) -> None:
        await self._append(
            log_pb2.AccessRecord(
                # Named after the statement: the entry points at exactly what was signed, and
                # a retried append of the same statement is the same entry.
                access_id=str(uuid.UUID(bytes=statement_sha256[:16], version=4)),
                tenant_id=tenant_id,
                principal=types_pb2.Principal(
                    kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant_id, id=install_id
                ),
                resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CAMERA, device_id=device_id),
                purpose=types_pb2.ACCESS_PURPOSE_PRIVACY_MODE,
                service=NAME,
                occurred_at=to_timestamp(self._clock.now()),
            )
        )

    async def _append(self, record: log_pb2.AccessRecord) -> None:
        try:
            await self._peers.access_log().Append(
                log_pb.AppendRequest(record=record), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            raise unreachable("access log", error) or error from None
