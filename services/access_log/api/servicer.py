"""The AccessLogService servicer: validates messages, calls AccessLog, builds replies."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import ID_PATTERN
from privacam_core.timestamps import to_datetime
from services.access_log.domain.service import AccessLog
from services.common.auth import current_principal
from services.common.errors import InvalidArgument

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CLIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVICE = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_DURATION = timedelta(hours=24)
_RK = log_pb2.ResourceKind
# Which resource fields each kind carries (all others must be empty).
_RESOURCE_FIELDS: dict[int, tuple[str, ...]] = {
    _RK.RESOURCE_KIND_CAMERA: ("device_id",),
    _RK.RESOURCE_KIND_CLIP: ("device_id", "clip_id"),
    _RK.RESOURCE_KIND_CLIP_LIST: ("device_id",),
    _RK.RESOURCE_KIND_LIVE_SESSION: ("device_id", "session_id"),
    _RK.RESOURCE_KIND_EXPORT: ("export_id",),
    _RK.RESOURCE_KIND_ACCOUNT: (),
    _RK.RESOURCE_KIND_GRANT: ("device_id", "grant_id"),
    _RK.RESOURCE_KIND_TALK_BACK: ("device_id", "session_id"),
}
# Kinds whose end entry carries a duration.
_SPANS = (_RK.RESOURCE_KIND_TALK_BACK,)
_RESOURCE_CHECKS = {
    "device_id": ID_PATTERN,
    "clip_id": CLIP_ID,
    "session_id": UUID,
    "export_id": UUID,
    "grant_id": UUID,
}
_TENANTED = (types_pb2.PRINCIPAL_KIND_CAMERA, types_pb2.PRINCIPAL_KIND_APP)


def _uuid(value: str, field: str) -> str:
    if not UUID.fullmatch(value):
        raise InvalidArgument(f"{field} must be a lower-case UUID")
    return value


def _id(value: str, field: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{field} must be 1-63 lower-case letters, digits or '-'")
    return value


def _optional_tenant(value: str) -> str:
    return _id(value, "tenant_id") if value else value


def _page_size(value: int, default: int, most: int) -> int:
    if value < 0 or value > most:
        raise InvalidArgument(f"page_size must be between 0 and {most}")
    return value or default


def validate_record(record: log_pb2.AccessRecord) -> None:
    """Every field of an access to append; messages name the field and what is allowed."""
    _uuid(record.access_id, "record.access_id")
    _id(record.tenant_id, "record.tenant_id")
    principal = record.principal
    if principal.kind not in types_pb2.PrincipalKind.values() or not principal.kind:
        raise InvalidArgument("record.principal.kind must be camera, app, service or operator")
    _id(principal.id, "record.principal.id")
    if principal.kind in _TENANTED:
        _id(principal.tenant_id, "record.principal.tenant_id")
    elif principal.tenant_id:
        raise InvalidArgument("record.principal.tenant_id is only for cameras and apps")
    fields = _RESOURCE_FIELDS.get(record.resource.kind)
    if fields is None:
        raise InvalidArgument("record.resource.kind must be set")
    for name, pattern in _RESOURCE_CHECKS.items():
        value = getattr(record.resource, name)
        if name in fields and not pattern.fullmatch(value):
            raise InvalidArgument(
                f"record.resource.{name} is required and malformed or missing for "
                f"{_RK.Name(record.resource.kind)}"
            )
        if name not in fields and value:
            raise InvalidArgument(
                f"record.resource.{name} must be empty for {_RK.Name(record.resource.kind)}"
            )
    if record.purpose not in types_pb2.AccessPurpose.values() or not record.purpose:
        raise InvalidArgument("record.purpose must be set")
    if not SERVICE.fullmatch(record.service):
        raise InvalidArgument("record.service must be 1-64 of [a-z0-9_], e.g. clip_ingest")
    if not record.HasField("occurred_at"):
        raise InvalidArgument("record.occurred_at is required")
    if record.operator_access_id:
        _uuid(record.operator_access_id, "record.operator_access_id")
    if record.HasField("duration"):
        if record.resource.kind not in _SPANS:
            raise InvalidArgument(
                "record.duration is only for the end entry of a RESOURCE_KIND_TALK_BACK"
            )
        seconds = record.duration.seconds + record.duration.nanos / 1e9
        if not 0 <= seconds <= MAX_DURATION.total_seconds():
            raise InvalidArgument("record.duration must be 0 to 24 hours")


def _range(message: types_pb2.TimeRange | None) -> tuple[datetime | None, datetime | None]:
    if message is None:
        return None, None
    since = to_datetime(message.start) if message.HasField("start") else None
    until = to_datetime(message.end) if message.HasField("end") else None
    if since is not None and until is not None and until <= since:
        raise InvalidArgument("time_range.end must be after time_range.start")
    return since, until


class AccessLogServicer(pb_grpc.AccessLogServiceServicer):
    def __init__(self, log: AccessLog) -> None:
        self._log = log

    # --- log --------------------------------------------------------------------------

    async def Append(self, request: pb.AppendRequest, context: Any) -> pb.AppendResponse:
        if not request.HasField("record"):
            raise InvalidArgument("record is required")
        validate_record(request.record)
        receipt = await self._log.append(request.record, current_principal())
        return pb.AppendResponse(receipt=receipt)

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: Any
    ) -> pb.ListEntriesResponse:
        tenant = self._log.tenant_for(current_principal(), _optional_tenant(request.tenant_id))
        if request.device_id:
            _id(request.device_id, "device_id")
        since, until = _range(request.time_range if request.HasField("time_range") else None)
        deletion = self._log.deletion(tenant)
        if deletion is not None:
            return pb.ListEntriesResponse(deletion=deletion)
        page = self._log.list_entries(
            tenant,
            request.device_id,
            since,
            until,
            _page_size(request.page_size, 100, 500),
            request.page_token,
            request.last_known_tree_size,
        )
        response = pb.ListEntriesResponse(
            entries=page.entries,
            other_entries=page.others,
            covered_until=page.covered_until,
            tree_head=page.head,
            next_page_token=page.next_token,
        )
        if page.consistency is not None:
            response.consistency_proof.CopyFrom(page.consistency)
        return response

    async def GetTreeHead(
        self, request: pb.GetTreeHeadRequest, context: Any
    ) -> pb.GetTreeHeadResponse:
        tenant = self._log.tenant_for(current_principal(), _optional_tenant(request.tenant_id))
        deletion = self._log.deletion(tenant)
        if deletion is not None:
            return pb.GetTreeHeadResponse(deletion=deletion)
        return pb.GetTreeHeadResponse(tree_head=self._log.tree_head(tenant))

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: Any
    ) -> pb.GetInclusionProofResponse:
        tenant = self._log.tenant_for(current_principal(), _optional_tenant(request.tenant_id))
        proof, head = self._log.inclusion(tenant, request.leaf_index, request.tree_size)
        return pb.GetInclusionProofResponse(inclusion_proof=proof, tree_head=head)

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: Any
    ) -> pb.GetConsistencyProofResponse:
        tenant = self._log.tenant_for(current_principal(), _optional_tenant(request.tenant_id))
        proof = self._log.consistency(tenant, request.first_size, request.second_size)
        return pb.GetConsistencyProofResponse(consistency_proof=proof)

    async def ListSigningKeys(
        self, request: pb.ListSigningKeysRequest, context: Any
    ) -> pb.ListSigningKeysResponse:
        return pb.ListSigningKeysResponse(keys=self._log.signing_keys())

    # --- operator access --------------------------------------------------------------

    async def RequestOperatorAccess(
        self, request: pb.RequestOperatorAccessRequest, context: Any
    ) -> pb.RequestOperatorAccessResponse:
        _id(request.tenant_id, "tenant_id")
        if not 1 <= len(request.reason) <= 1000:
            raise InvalidArgument("reason must be 1 to 1000 characters: the household reads it")
        if len(request.ticket_ref) > 64:
            raise InvalidArgument("ticket_ref must be at most 64 characters")
        scopes = list(request.scopes)
        if not scopes or any(s not in pb.OperatorScope.values() or not s for s in scopes):
            raise InvalidArgument("scopes must name at least one scope, none unspecified")
        if len(request.device_ids) > 32:
            raise InvalidArgument("device_ids may name at most 32 cameras")
        for i, device_id in enumerate(request.device_ids):
            _id(device_id, f"device_ids[{i}]")
        duration = request.duration.ToTimedelta()
        if not timedelta(0) < duration <= MAX_DURATION:
            raise InvalidArgument("duration must be more than 0 and at most 24 hours")
        access = await self._log.request_operator_access(
            current_principal(),
            request.tenant_id,
            request.reason,
            request.ticket_ref,
            sorted(set(scopes)),
            list(dict.fromkeys(request.device_ids)),
            duration,
        )
        return pb.RequestOperatorAccessResponse(operator_access=access)

    async def GetOperatorAccess(
        self, request: pb.GetOperatorAccessRequest, context: Any
    ) -> pb.GetOperatorAccessResponse:
        access_id = _uuid(request.operator_access_id, "operator_access_id")
        access = self._log.get_operator_access(access_id, current_principal())
        return pb.GetOperatorAccessResponse(operator_access=access)

    async def ListOperatorAccess(
        self, request: pb.ListOperatorAccessRequest, context: Any
    ) -> pb.ListOperatorAccessResponse:
        if any(s not in pb.OperatorAccessState.values() or not s for s in request.states):
            raise InvalidArgument("states must not hold unspecified or unknown states")
        page, token = self._log.list_operator_access(
            current_principal(),
            list(request.states),
            _page_size(request.page_size, 50, 100),
            request.page_token,
        )
        return pb.ListOperatorAccessResponse(operator_accesses=page, next_page_token=token)

    async def DecideOperatorAccess(
        self, request: pb.DecideOperatorAccessRequest, context: Any
    ) -> pb.DecideOperatorAccessResponse:
        access_id = _uuid(request.operator_access_id, "operator_access_id")
        access = await self._log.decide_operator_access(
            access_id, request.approve, current_principal()
        )
        return pb.DecideOperatorAccessResponse(operator_access=access)

    async def EndOperatorAccess(
        self, request: pb.EndOperatorAccessRequest, context: Any
    ) -> pb.EndOperatorAccessResponse:
        access_id = _uuid(request.operator_access_id, "operator_access_id")
        access = await self._log.end_operator_access(access_id, current_principal())
        return pb.EndOperatorAccessResponse(operator_access=access)

    # --- incidents --------------------------------------------------------------------

    async def DeclareIncident(
        self, request: pb.DeclareIncidentRequest, context: Any
    ) -> pb.DeclareIncidentResponse:
        if not 1 <= len(request.description) <= 4000:
            raise InvalidArgument("description must be 1 to 4000 characters")
        if not request.HasField("detected_at"):
            raise InvalidArgument("detected_at is required")
        window = request.window
        if not (window.HasField("start") and window.HasField("end")):
            raise InvalidArgument("window needs both start and end")
        start, end = to_datetime(window.start), to_datetime(window.end)
        if end <= start:
            raise InvalidArgument("window.end must be after window.start")
        principals = list(request.compromised_principals)
        if not 1 <= len(principals) <= 100:
            raise InvalidArgument("compromised_principals must name 1 to 100 principals")
        for i, principal in enumerate(principals):
            if not principal.kind or principal.kind not in types_pb2.PrincipalKind.values():
                raise InvalidArgument(f"compromised_principals[{i}].kind must be set")
            _id(principal.id, f"compromised_principals[{i}].id")
            if principal.tenant_id:
                _id(principal.tenant_id, f"compromised_principals[{i}].tenant_id")
        categories = list(request.categories)
        if not categories or any(c not in pb.DataCategory.values() or not c for c in categories):
            raise InvalidArgument("categories must name at least one category")
        incident = await self._log.declare_incident(
            current_principal(),
            request.description,
            to_datetime(request.detected_at),
            (start, end),
            principals,
            sorted(set(categories)),
            request.data_encrypted_unreadable,
        )
        return pb.DeclareIncidentResponse(incident=incident)

    async def GetIncident(
        self, request: pb.GetIncidentRequest, context: Any
    ) -> pb.GetIncidentResponse:
        incident = self._log.get_incident(_uuid(request.incident_id, "incident_id"))
        return pb.GetIncidentResponse(incident=incident)

    async def ListIncidentNotices(
        self, request: pb.ListIncidentNoticesRequest, context: Any
    ) -> pb.ListIncidentNoticesResponse:
        principal = current_principal()
        assert principal.tenant_id is not None  # policies admit apps only
        notices, token = self._log.list_incident_notices(
            principal.tenant_id, _page_size(request.page_size, 50, 100), request.page_token
        )
        return pb.ListIncidentNoticesResponse(notices=notices, next_page_token=token)
