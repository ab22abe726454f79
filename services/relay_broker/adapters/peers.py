"""relay_broker's calls to device_auth and access_log (mTLS, as service/relay-broker).

device_auth's answers about a viewer (NOT_FOUND, PERMISSION_DENIED for a missing LIVE
scope or a wrong PIN, RESOURCE_EXHAUSTED for a PIN lockout) reach the app unchanged,
with device_auth's message. A peer that cannot be reached is UNAVAILABLE.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import grpc

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2, privacy_pb2
from privacam.types.v1 import types_pb2
from privacam_core.privacy import Mode, StatementError, mode_of, parse
from privacam_core.timestamps import to_timestamp
from services.common.errors import (
    Unavailable,
)
from services.common.peers import UNREACHABLE, Peers, call_options, passed_on, unreachable
from services.relay_broker import NAME
from services.relay_broker.domain.model import Access, Session, Talk, Viewer

log = logging.getLogger("privacam.relay_broker.peers")


def _viewer_pb(viewer: Viewer) -> types_pb2.Principal:
    return types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=viewer.tenant_id, id=viewer.app_id
    )


class DeviceAuthPolicy:
    """The AccessPolicy port: device_auth decides, PIN included (and counts wrong ones)."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def authorize(
        self, device_id: str, viewer: Viewer, pin: str, check_pin: bool = True
    ) -> Access:
        return await self._authorize(
            device_id, viewer, pin, check_pin, identity_pb2.GRANT_SCOPE_LIVE
        )

    async def authorize_talk(self, device_id: str, viewer: Viewer, pin: str) -> Access:
        """The TalkPolicy port: the TALK scope (the owner always has it), PIN as for live
        view (a talk-back is a new act, so the PIN is asked again)."""
        return await self._authorize(device_id, viewer, pin, True, identity_pb2.GRANT_SCOPE_TALK)

    async def _authorize(
        self,
        device_id: str,
        viewer: Viewer,
        pin: str,
        check_pin: bool,
        scope: identity_pb2.GrantScope.ValueType,
    ) -> Access:
        request = id_pb.AuthorizeCameraAccessRequest(
            device_id=device_id,
            viewer=_viewer_pb(viewer),
            scope=scope,
            check_pin=check_pin,
            pin=pin if check_pin else "",
        )
        try:
            response = await self._peers.device_auth().AuthorizeCameraAccess(
                request, **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            raise passed_on(error) or unreachable("device", error) or error from None
        return Access(
            owner_tenant_id=response.owner_tenant_id,
            is_owner=response.is_owner,
            grant_id=response.grant_id,
            privacy=privacy_mode(response.settings.privacy)
            if response.settings.HasField("privacy")
            else None,
            label=response.settings.label,
        )

    async def privacy_statement(self, device_id: str) -> privacy_pb2.SignedPrivacyStatement | None:
        """The owner's latest privacy statement for a camera, or None (none, or device_auth
        out of reach: the camera keeps its own state either way)."""
        try:
            response = await self._peers.device_auth().GetCameraSettings(
                id_pb.GetCameraSettingsRequest(device_id=device_id), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            log.warning("privacy statement not fetched", extra={"code": error.code().name})
            return None
        settings = response.settings
        return settings.privacy if settings.HasField("privacy") else None


def privacy_mode(signed: privacy_pb2.SignedPrivacyStatement) -> Mode:
    """The stored statement's mode; one that does not parse counts as private (fail closed)."""
    try:
        return mode_of(parse(signed.statement))
    except StatementError:
        return Mode("on")


class AccessLogClient:
    """The AccessLog port: the start is appended synchronously, before any credential
    exists, and its receipt goes to the camera; the end is appended too (a failure there
    is reported, not raised)."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def _append(
        self,
        session: Session,
        at: datetime,
        kind: log_pb2.ResourceKind.ValueType = log_pb2.RESOURCE_KIND_LIVE_SESSION,
        purpose: types_pb2.AccessPurpose.ValueType = types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
        duration: timedelta | None = None,
    ) -> log_pb2.Receipt:
        record = log_pb2.AccessRecord(
            access_id=str(uuid.uuid4()),
            tenant_id=session.owner_tenant_id,
            principal=_viewer_pb(session.viewer),
            resource=log_pb2.Resource(
                kind=kind, device_id=session.device_id, session_id=session.session_id
            ),
            purpose=purpose,
            service=NAME,
            occurred_at=to_timestamp(at),
        )
        if duration is not None:
            record.duration.FromTimedelta(duration)
        try:
            response = await self._peers.access_log().Append(
                log_pb.AppendRequest(record=record), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (*UNREACHABLE, grpc.StatusCode.UNIMPLEMENTED):
                what = "talk-back" if kind == log_pb2.RESOURCE_KIND_TALK_BACK else "live view"
                raise Unavailable(
                    f"the access log is unavailable, and a {what} is never unlogged; retry later"
                ) from None
            raise
        return response.receipt

    async def tree_head(self, tenant_id: str) -> log_pb2.SignedTreeHead | None:
        """The household log's signed head now (for its digests), or None once the log
        is deleted."""
        try:
            response = await self._peers.access_log().GetTreeHead(
                log_pb.GetTreeHeadRequest(tenant_id=tenant_id), **call_options(self._peers)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in UNREACHABLE:
                raise Unavailable("the access log is unavailable; the digest waits") from None
            raise
        return response.tree_head if response.HasField("tree_head") else None

    async def session_started(self, session: Session) -> bytes:
        receipt = await self._append(session, session.started_at)
        return receipt.SerializeToString()

    async def session_ended(self, session: Session, at: datetime) -> None:
        await self._append(session, at)

    async def talk_started(self, talk: Talk) -> bytes:
        """The TalkLog port: the start entry names the speaker (the session's viewer)."""
        receipt = await self._append(
            talk.session,
            talk.started_at,
            log_pb2.RESOURCE_KIND_TALK_BACK,
            types_pb2.ACCESS_PURPOSE_TALK_BACK,
        )
        return receipt.SerializeToString()

    async def talk_ended(self, talk: Talk, at: datetime) -> None:
        await self._append(
            talk.session,
            at,
            log_pb2.RESOURCE_KIND_TALK_BACK,
            types_pb2.ACCESS_PURPOSE_TALK_BACK,
            duration=max(at - talk.started_at, timedelta(0)),
        )
