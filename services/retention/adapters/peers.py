"""Calls to device_auth and key_manager over the shared mTLS Peers, as domain ports.

A peer's refusal is passed on with its own message (it is written for people); a
peer that cannot be reached is UNAVAILABLE, so the caller or the sweeper retries.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1 import identity_pb2
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_datetime
from services.common.errors import NotFound, Unavailable
from services.common.peers import Peers, call_options, passed_on
from services.retention.domain.model import KeyVersionInfo, PeriodRef, PurgeReport, VersionState

T = TypeVar("T")

_STATES = {
    keys_pb2.KEY_VERSION_STATE_ACTIVE: VersionState.ACTIVE,
    keys_pb2.KEY_VERSION_STATE_DECRYPT_ONLY: VersionState.DECRYPT_ONLY,
    keys_pb2.KEY_VERSION_STATE_DESTROYED: VersionState.DESTROYED,
}


async def call(peer: str, awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as error:
        raise passed_on(error) or Unavailable(
            f"{peer} could not be reached; try again shortly"
        ) from None


def _info(version: keys_pb2.KeyVersion) -> KeyVersionInfo:
    return KeyVersionInfo(
        state=_STATES.get(version.state, VersionState.UNKNOWN),
        period_start=to_datetime(version.period_start)
        if version.HasField("period_start")
        else None,
        period_end=to_datetime(version.period_end) if version.HasField("period_end") else None,
        destroyed_at=(
            to_datetime(version.destroyed_at) if version.HasField("destroyed_at") else None
        ),
    )


class KeyManagerPeriods:
    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def version(self, period: PeriodRef) -> KeyVersionInfo:
        try:
            listed = await call(
                "key_manager",
                self._peers.key_manager().ListKeyVersions(
                    keys_pb.ListKeyVersionsRequest(
                        tenant_id=period.tenant_id, include_destroyed=True
                    ),
                    **call_options(self._peers),
                ),
            )
        except NotFound:
            return KeyVersionInfo(VersionState.UNKNOWN)
        for version in listed.versions:
            if version.version == period.key_version:
                return _info(version)
        return KeyVersionInfo(VersionState.UNKNOWN)

    async def destroy(self, period: PeriodRef) -> KeyVersionInfo:
        destroyed = await call(
            "key_manager",
            self._peers.key_manager().DestroyPeriod(
                keys_pb.DestroyPeriodRequest(
                    tenant_id=period.tenant_id, key_version=period.key_version
                ),
                **call_options(self._peers),
            ),
        )
        return _info(destroyed.destroyed)

    async def destroy_tenant(self, tenant_id: str, cancellation_id: str) -> int:
        try:
            destroyed = await call(
                "key_manager",
                self._peers.key_manager().DestroyTenant(
                    keys_pb.DestroyTenantRequest(
                        tenant_id=tenant_id, cancellation_id=cancellation_id
                    ),
                    **call_options(self._peers),
                ),
            )
        except NotFound:
            return 0  # the tenant never had a key
        return len(destroyed.destroyed)


@dataclass(frozen=True, slots=True)
class Access:
    owner_tenant_id: str
    is_owner: bool
    retention_days: int
    alerts_enabled: bool


class DeviceAuthAccounts:
    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def verify_password(self, tenant_id: str, password: str) -> bool:
        answer = await call(
            "device_auth",
            self._peers.device_auth().VerifyPassword(
                identity_pb.VerifyPasswordRequest(tenant_id=tenant_id, password=password),
                **call_options(self._peers),
            ),
        )
        return bool(answer.valid)

    async def purge(self, tenant_id: str, cancellation_id: str) -> PurgeReport:
        answer = await call(
            "device_auth",
            self._peers.device_auth().PurgeTenant(
                identity_pb.PurgeTenantRequest(
                    tenant_id=tenant_id, cancellation_id=cancellation_id
                ),
                **call_options(self._peers, timeout=max(self._peers.timeout, 30.0)),
            ),
        )
        return PurgeReport(
            cameras_removed=answer.cameras_removed,
            app_installs_removed=answer.app_installs_removed,
            grants_removed=answer.grants_removed,
            certificates_revoked=answer.certificates_revoked,
        )

    async def access(self, tenant_id: str, install_id: str, device_id: str) -> Access:
        answer = await call(
            "device_auth",
            self._peers.device_auth().AuthorizeCameraAccess(
                identity_pb.AuthorizeCameraAccessRequest(
                    device_id=device_id,
                    viewer=types_pb2.Principal(
                        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant_id, id=install_id
                    ),
                    scope=identity_pb2.GRANT_SCOPE_CLIPS,
                    check_pin=False,
                ),
                **call_options(self._peers),
            ),
        )
        return Access(
            owner_tenant_id=answer.owner_tenant_id,
            is_owner=answer.is_owner,
            retention_days=answer.settings.retention_days,
            alerts_enabled=answer.settings.activity_alerts_enabled,
        )
