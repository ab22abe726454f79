"""The RetentionService servicer: validates messages, calls the domain, builds replies.

Apps only (see policies.py), always for their own tenant, taken from the verified
certificate. Another tenant's camera or export is NOT_FOUND, like one that does not
exist. Domain errors become statuses in the shared interceptor; no try/except here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

from privacam.retention.v1 import retention_pb2
from privacam.retention.v1 import retention_service_pb2 as pb
from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc
from privacam_core.identity import ID_PATTERN, PrincipalKind
from privacam_core.timestamps import to_timestamp
from services.common.auth import current_principal
from services.common.errors import InvalidArgument, PermissionDenied
from services.retention.adapters.events import cancellation_record_pb
from services.retention.adapters.exports import job_pb
from services.retention.adapters.shred_log import record_pb
from services.retention.domain.exports import Exports
from services.retention.domain.rights import Rights

CHUNK_BYTES = 256 * 1024
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAX_PASSWORD_BYTES = 256


def _app() -> tuple[str, str]:
    """The calling app's tenant and install id."""
    principal = current_principal()
    if principal.kind is not PrincipalKind.APP or principal.tenant_id is None:
        raise PermissionDenied("only app identities may call this method")
    return principal.tenant_id, principal.name


def _id(value: str, field: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{field} must be 1-63 lower-case letters, digits or '-'")
    return value


def _uuid(value: str, field: str) -> str:
    if not _UUID.fullmatch(value):
        raise InvalidArgument(f"{field} must be a lower-case UUID")
    return value


def _page(size: int, token: str) -> tuple[int, int]:
    if not 0 <= size <= 100:
        raise InvalidArgument("page_size must be between 0 and 100")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError:
            raise InvalidArgument("page_token is not one this service issued") from None
    return size or 50, start


class RetentionServicer(pb_grpc.RetentionServiceServicer):
    def __init__(self, rights: Rights, exports: Exports) -> None:
        self._rights = rights
        self._exports = exports

    async def GetRetentionSettings(
        self, request: pb.GetRetentionSettingsRequest, context: Any
    ) -> pb.GetRetentionSettingsResponse:
        tenant, install = _app()
        view = await self._rights.retention_of(tenant, install, _id(request.device_id, "device_id"))
        response = pb.GetRetentionSettingsResponse(
            retention_days=view.retention_days,
            min_retention_days=view.bounds.min_days,
            max_retention_days=view.bounds.max_days,
            default_retention_days=view.bounds.default_days,
        )
        if view.next_deletion_at is not None:
            response.next_deletion_at.CopyFrom(to_timestamp(view.next_deletion_at))
        return response

    async def ListShredRecords(
        self, request: pb.ListShredRecordsRequest, context: Any
    ) -> pb.ListShredRecordsResponse:
        tenant, _ = _app()
        size, start = _page(request.page_size, request.page_token)
        records = self._rights.shred_records(tenant)
        page = records[start : start + size]
        following = start + size
        return pb.ListShredRecordsResponse(
            records=[record_pb(record) for record in page],
            next_page_token=(
                base64.urlsafe_b64encode(str(following).encode()).decode()
                if following < len(records)
                else ""
            ),
        )

    async def WithdrawConsent(
        self, request: pb.WithdrawConsentRequest, context: Any
    ) -> pb.WithdrawConsentResponse:
        tenant, install = _app()
        device = _id(request.device_id, "device_id")
        if request.disposition not in (
            retention_pb2.CLIP_DISPOSITION_KEEP,
            retention_pb2.CLIP_DISPOSITION_DELETE,
        ):
            raise InvalidArgument(
                "disposition must be CLIP_DISPOSITION_KEEP or CLIP_DISPOSITION_DELETE: "
                "choose what happens to the camera's existing clips"
            )
        result = await self._rights.withdraw_consent(
            tenant, install, device, request.disposition == retention_pb2.CLIP_DISPOSITION_DELETE
        )
        return pb.WithdrawConsentResponse(
            clips_deleted=result.clips_deleted, clips_kept=result.clips_kept
        )

    async def RequestExport(
        self, request: pb.RequestExportRequest, context: Any
    ) -> pb.RequestExportResponse:
        tenant, _ = _app()
        return pb.RequestExportResponse(export=job_pb(await self._exports.request(tenant)))

    async def GetExport(self, request: pb.GetExportRequest, context: Any) -> pb.GetExportResponse:
        tenant, _ = _app()
        job = await self._exports.get(tenant, _uuid(request.export_id, "export_id"))
        return pb.GetExportResponse(export=job_pb(job))

    async def ListExports(
        self, request: pb.ListExportsRequest, context: Any
    ) -> pb.ListExportsResponse:
        tenant, _ = _app()
        return pb.ListExportsResponse(
            exports=[job_pb(job) for job in await self._exports.list(tenant)]
        )

    async def DownloadExport(
        self, request: pb.DownloadExportRequest, context: Any
    ) -> AsyncIterator[pb.DownloadExportResponse]:
        tenant, _ = _app()
        job, chunks = await self._exports.download(
            tenant, _uuid(request.export_id, "export_id"), request.offset, CHUNK_BYTES
        )
        yield pb.DownloadExportResponse(
            header=pb.ExportDownloadHeader(export=job_pb(job), content_type="application/zip")
        )
        offset = request.offset
        async for data in chunks:
            yield pb.DownloadExportResponse(chunk=pb.ExportChunk(offset=offset, data=data))
            offset += len(data)

    async def DeleteExport(
        self, request: pb.DeleteExportRequest, context: Any
    ) -> pb.DeleteExportResponse:
        tenant, _ = _app()
        await self._exports.delete(tenant, _uuid(request.export_id, "export_id"))
        return pb.DeleteExportResponse()

    async def CancelAccount(
        self, request: pb.CancelAccountRequest, context: Any
    ) -> pb.CancelAccountResponse:
        tenant, _ = _app()
        if not request.password:
            raise InvalidArgument("password is required to cancel the account")
        if len(request.password.encode()) > _MAX_PASSWORD_BYTES:
            raise InvalidArgument(f"password must be at most {_MAX_PASSWORD_BYTES} bytes")
        record = await self._rights.cancel_account(
            tenant, request.password, _uuid(request.cancellation_id, "cancellation_id")
        )
        return pb.CancelAccountResponse(record=cancellation_record_pb(record))
