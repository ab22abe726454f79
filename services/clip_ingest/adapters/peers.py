"""clip_ingest's calls to device_auth, key_manager and access_log (mTLS, as service/clip_ingest).

device_auth's answers about a viewer (NOT_FOUND, PERMISSION_DENIED for a missing
scope or a wrong PIN, RESOURCE_EXHAUSTED for a PIN lockout) reach the app
unchanged: they are raised as the shared domain errors with device_auth's own
message. A peer that cannot be reached is UNAVAILABLE; anything else it answers is
our bug or theirs, and is INTERNAL without detail.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import datetime

import grpc

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import PrincipalKind
from privacam_core.privacy import Mode, StatementError, mode_of, parse
from privacam_core.timestamps import to_datetime, to_timestamp
from services.clip_ingest import NAME
from services.clip_ingest.domain.errors import IntegrityFailure
from services.clip_ingest.domain.model import CameraSettings, GeneratedKey, Viewer
from services.common.auth import current_principal
from services.common.clock import Clock
from services.common.errors import (
    NotFound,
    PermissionDenied,
)
from services.common.peers import Peers, call_options, passed_on, unreachable

_PERIOD_CACHE = 4096


def _viewer_pb() -> types_pb2.Principal:
    caller = current_principal()
    if caller.kind is not PrincipalKind.APP or caller.tenant_id is None:
        raise PermissionDenied("only apps view clips")
    return types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=caller.tenant_id, id=caller.name
    )


class DeviceAuthCameras:
    """The Cameras port."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def upload_settings(self, device_id: str) -> CameraSettings:
        try:
            response = await self._peers.device_auth().GetCameraSettings(
                id_pb.GetCameraSettingsRequest(device_id=device_id), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                raise PermissionDenied("this camera is not enrolled") from None
            raise unreachable("device", error) or error from None
        settings = response.settings
        privacy = None
        if settings.HasField("privacy"):
            try:
                privacy = mode_of(parse(settings.privacy.statement))
            except StatementError:  # fail closed: a statement that does not parse is private
                privacy = Mode("on")
        return CameraSettings(settings.activity_alerts_enabled, settings.retention_days, privacy)

    async def authorize_viewer(self, device_id: str, check_pin: bool, pin: str) -> Viewer:
        request = id_pb.AuthorizeCameraAccessRequest(
            device_id=device_id,
            viewer=_viewer_pb(),
            scope=identity_pb2.GRANT_SCOPE_CLIPS,
            check_pin=check_pin,
            pin=pin if check_pin else "",
        )
        try:
            response = await self._peers.device_auth().AuthorizeCameraAccess(
                request, **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            raise passed_on(error) or unreachable("device", error) or error from None
        return Viewer(response.owner_tenant_id, response.is_owner)


class KeyManagerKeys:
    """The Keys port. The key reference stored in a clip's header is the serialized
    WrappedKey; the start of its KEK period is looked up once per version and cached."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers
        self._periods: OrderedDict[tuple[str, int], datetime | None] = OrderedDict()

    async def generate(self, tenant_id: str, device_id: str, clip_id: str) -> GeneratedKey:
        context = keys_pb2.KeyContext(tenant_id=tenant_id, device_id=device_id, clip_id=clip_id)
        try:
            response = await self._peers.key_manager().GenerateDataKey(
                keys_pb.GenerateDataKeyRequest(context=context), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            raise unreachable("key", error) or error from None
        wrapped = response.wrapped_key
        return GeneratedKey(
            data_key=response.plaintext_key,
            key_reference=wrapped.SerializeToString(),
            version=wrapped.key_version,
            period_start=await self._period_start(tenant_id, wrapped.key_version),
        )

    async def _period_start(self, tenant_id: str, version: int) -> datetime | None:
        key = (tenant_id, version)
        if key in self._periods:
            self._periods.move_to_end(key)
            return self._periods[key]
        try:
            response = await self._peers.key_manager().ListKeyVersions(
                keys_pb.ListKeyVersionsRequest(tenant_id=tenant_id), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            raise unreachable("key", error) or error from None
        start = None
        for info in response.versions:
            if info.version == version and info.HasField("period_start"):
                start = to_datetime(info.period_start)
        self._periods[key] = start
        if len(self._periods) > _PERIOD_CACHE:
            self._periods.popitem(last=False)
        return start

    async def unwrap(
        self, key_reference: bytes, tenant_id: str, device_id: str, clip_id: str, receipt: object
    ) -> bytes:
        wrapped = keys_pb2.WrappedKey()
        try:
            wrapped.ParseFromString(key_reference)
        except Exception:
            raise IntegrityFailure("the clip's key reference is damaged") from None
        if wrapped.tenant_id != tenant_id:
            raise IntegrityFailure("the clip's key belongs to another household")
        assert isinstance(receipt, log_pb2.Receipt)
        request = keys_pb.UnwrapRequest(
            wrapped_key=wrapped,
            context=keys_pb2.KeyContext(tenant_id=tenant_id, device_id=device_id, clip_id=clip_id),
            purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
            receipt=receipt,
        )
        try:
            response = await self._peers.key_manager().Unwrap(request, **call_options(self._peers))
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.PERMISSION_DENIED:
                # The key was wrapped for another camera or clip: not this clip's object.
                raise IntegrityFailure("the clip's key is not this clip's") from None
            if error.code() is grpc.StatusCode.FAILED_PRECONDITION:
                raise NotFound("this clip's key has been destroyed: the clip is gone") from None
            raise unreachable("key", error) or error from None
        return bytes(response.plaintext_key)


class AccessLogClient:
    """The AccessLog port: synchronous appends, so nothing is listed or decrypted
    before the household's log holds the access."""

    def __init__(self, peers: Peers, clock: Clock) -> None:
        self._peers = peers
        self._clock = clock

    async def _append(
        self,
        tenant_id: str,
        resource: log_pb2.Resource,
        purpose: types_pb2.AccessPurpose.ValueType,
    ) -> tuple[str, log_pb2.Receipt]:
        access_id = str(uuid.uuid4())
        record = log_pb2.AccessRecord(
            access_id=access_id,
            tenant_id=tenant_id,
            principal=_viewer_pb(),
            resource=resource,
            purpose=purpose,
            service=NAME,
            occurred_at=to_timestamp(self._clock.now()),
        )
        try:
            response = await self._peers.access_log().Append(
                log_pb.AppendRequest(record=record), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            raise unreachable("access log", error) or error from None
        return access_id, response.receipt

    async def record_listing(self, tenant_id: str, device_id: str) -> str:
        access_id, _ = await self._append(
            tenant_id,
            log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CLIP_LIST, device_id=device_id),
            types_pb2.ACCESS_PURPOSE_CLIP_LISTING,
        )
        return access_id

    async def record_playback(
        self, tenant_id: str, device_id: str, clip_id: str
    ) -> tuple[str, object]:
        return await self._append(
            tenant_id,
            log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CLIP, device_id=device_id, clip_id=clip_id),
            types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        )
