"""The KeyManagerService servicer: validates messages, calls KeyService, builds replies.

Only service certificates reach it (see policies.py); cameras and apps never see keys.
"""

from __future__ import annotations

import re
from typing import Any

import grpc

from privacam.keys.v1 import key_manager_service_pb2 as pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import ID_PATTERN
from privacam_core.timestamps import to_timestamp
from services.common.auth import current_principal
from services.common.errors import InvalidArgument, map_domain_error
from services.key_manager.adapters.events import PURPOSES, version_pb
from services.key_manager.domain.keyring import (
    KeyContext,
    TenantGone,
    UnknownVersion,
    VersionDestroyed,
    WrongContext,
    WrongRootKey,
)
from services.key_manager.domain.service import KeyService, Purpose, ReceiptRefused, WrappedKey

map_domain_error(WrongContext, grpc.StatusCode.PERMISSION_DENIED)
map_domain_error(UnknownVersion, grpc.StatusCode.NOT_FOUND)
map_domain_error(VersionDestroyed, grpc.StatusCode.FAILED_PRECONDITION)
map_domain_error(TenantGone, grpc.StatusCode.FAILED_PRECONDITION)
map_domain_error(WrongRootKey, grpc.StatusCode.INTERNAL)
map_domain_error(ReceiptRefused, grpc.StatusCode.PERMISSION_DENIED)

CLIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PURPOSE_BY_PB = {value: key for key, value in PURPOSES.items()}
_MAX_WRAPPED = 128


def _id(value: str, field: str, required: bool = True) -> str:
    if not value and not required:
        return value
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{field} must be 1-63 lower-case letters, digits or '-'")
    return value


def context_from(message: keys_pb2.KeyContext, field: str = "context") -> KeyContext:
    if not message.clip_id or not CLIP_ID.fullmatch(message.clip_id):
        raise InvalidArgument(f"{field}.clip_id must be 1-64 letters, digits, '_' or '-'")
    return KeyContext(
        _id(message.tenant_id, f"{field}.tenant_id"),
        _id(message.device_id, f"{field}.device_id", required=False),
        message.clip_id,
    )


def wrapped_from(message: keys_pb2.WrappedKey) -> WrappedKey:
    if message.key_version < 1:
        raise InvalidArgument("wrapped_key.key_version must be 1 or more")
    if not 29 <= len(message.ciphertext) <= _MAX_WRAPPED:
        raise InvalidArgument("wrapped_key.ciphertext is not a wrapped data key")
    return WrappedKey(
        _id(message.tenant_id, "wrapped_key.tenant_id"), message.key_version, message.ciphertext
    )


def wrapped_pb(wrapped: WrappedKey) -> keys_pb2.WrappedKey:
    return keys_pb2.WrappedKey(
        tenant_id=wrapped.tenant_id, key_version=wrapped.version, ciphertext=wrapped.ciphertext
    )


def purpose_from(value: int) -> Purpose:
    try:
        return _PURPOSE_BY_PB[value]  # type: ignore[index]
    except KeyError:
        names = ", ".join(types_pb2.AccessPurpose.Name(v) for v in PURPOSES.values())
        raise InvalidArgument(f"purpose must be one of {names}") from None


class KeyManagerServicer(pb_grpc.KeyManagerServiceServicer):
    def __init__(self, keys: KeyService) -> None:
        self._keys = keys

    async def GenerateDataKey(
        self, request: pb.GenerateDataKeyRequest, context: Any
    ) -> pb.GenerateDataKeyResponse:
        data_key, wrapped = await self._keys.generate(context_from(request.context))
        return pb.GenerateDataKeyResponse(plaintext_key=data_key, wrapped_key=wrapped_pb(wrapped))

    async def Unwrap(self, request: pb.UnwrapRequest, context: Any) -> pb.UnwrapResponse:
        return pb.UnwrapResponse(plaintext_key=await self._unwrap(request))

    async def _unwrap(self, request: pb.UnwrapRequest) -> bytes:
        return await self._keys.unwrap(
            wrapped_from(request.wrapped_key),
            context_from(request.context),
            purpose_from(request.purpose),
            request.receipt if request.HasField("receipt") else None,
            # Only services get here (policies.py): the receipt must be one this very
            # service logged, not one another service holds.
            caller=current_principal().name,
        )

    async def Rotate(self, request: pb.RotateRequest, context: Any) -> pb.RotateResponse:
        current, previous = await self._keys.rotate(_id(request.tenant_id, "tenant_id"))
        response = pb.RotateResponse(current=version_pb(current))
        if previous is not None:
            response.previous.CopyFrom(version_pb(previous))
        return response

    async def DestroyPeriod(
        self, request: pb.DestroyPeriodRequest, context: Any
    ) -> pb.DestroyPeriodResponse:
        if request.key_version < 1:
            raise InvalidArgument("key_version must be 1 or more")
        destroyed = await self._keys.destroy_version(
            _id(request.tenant_id, "tenant_id"), request.key_version
        )
        return pb.DestroyPeriodResponse(destroyed=version_pb(destroyed))

    async def DestroyTenant(
        self, request: pb.DestroyTenantRequest, context: Any
    ) -> pb.DestroyTenantResponse:
        versions = await self._keys.destroy_tenant(
            _id(request.tenant_id, "tenant_id"), request.cancellation_id
        )
        response = pb.DestroyTenantResponse(destroyed=[version_pb(v) for v in versions])
        latest = max((v.destroyed_at for v in versions if v.destroyed_at), default=None)
        if latest is not None:
            response.destroyed_at.CopyFrom(to_timestamp(latest))
        return response

    async def ListKeyVersions(
        self, request: pb.ListKeyVersionsRequest, context: Any
    ) -> pb.ListKeyVersionsResponse:
        versions = self._keys.versions(
            _id(request.tenant_id, "tenant_id"), request.include_destroyed
        )
        return pb.ListKeyVersionsResponse(versions=[version_pb(v) for v in versions])
