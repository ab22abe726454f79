"""What the domain says to open streams, as protobuf messages on the replica bus."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration

from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import privacy_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.relay_broker.adapters.bus import Bus
from services.relay_broker.domain.model import (
    EndReason,
    Role,
    Session,
    Side,
    Talk,
    TalkEndReason,
    TurnGrant,
)
from services.relay_broker.domain.talk_back import speaker_words

END_REASONS: dict[EndReason, relay_pb2.SessionEndReason.ValueType] = {
    EndReason.VIEWER_ENDED: relay_pb2.SESSION_END_REASON_VIEWER_ENDED,
    EndReason.CAMERA_ENDED: relay_pb2.SESSION_END_REASON_CAMERA_ENDED,
    EndReason.IDLE_TIMEOUT: relay_pb2.SESSION_END_REASON_IDLE_TIMEOUT,
    EndReason.MAX_DURATION: relay_pb2.SESSION_END_REASON_MAX_DURATION,
    EndReason.REVOKED: relay_pb2.SESSION_END_REASON_REVOKED,
    EndReason.CAMERA_OFFLINE: relay_pb2.SESSION_END_REASON_CAMERA_OFFLINE,
    EndReason.FINGERPRINT_REJECTED: relay_pb2.SESSION_END_REASON_FINGERPRINT_REJECTED,
    EndReason.FAILED: relay_pb2.SESSION_END_REASON_FAILED,
    EndReason.PRIVACY_MODE: relay_pb2.SESSION_END_REASON_PRIVACY_MODE,
    EndReason.SIGNALING_LOST: relay_pb2.SESSION_END_REASON_SIGNALING_LOST,
}
TALK_END_REASONS: dict[TalkEndReason, pb.TalkEndReason.ValueType] = {
    TalkEndReason.ENDED: pb.TALK_END_REASON_ENDED,
    TalkEndReason.SESSION_ENDED: pb.TALK_END_REASON_SESSION_ENDED,
    TalkEndReason.MAX_DURATION: pb.TALK_END_REASON_MAX_DURATION,
    TalkEndReason.CAMERA_DECLINED: pb.TALK_END_REASON_CAMERA_DECLINED,
}
ROLES = {Role.OWNER: relay_pb2.VIEWER_ROLE_OWNER, Role.GRANTEE: relay_pb2.VIEWER_ROLE_GRANTEE}


def camera_channel(device_id: str) -> str:
    return f"relay:ch:camera:{device_id}"


def signal_channel(session_id: str, side: Side) -> str:
    return f"relay:ch:signal:{session_id}:{side.value}"


def notice_channel(tenant_id: str) -> str:
    return f"relay:ch:notices:{tenant_id}"


def turn_pb(grant: TurnGrant) -> relay_pb2.TurnCredentials:
    return relay_pb2.TurnCredentials(
        uris=list(grant.uris),
        username=grant.username,
        password=grant.password,
        ttl=Duration(seconds=grant.ttl_seconds),
        expires_at=to_timestamp(grant.expires_at),
    )


def viewer_pb(session: Session) -> types_pb2.Principal:
    return types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP,
        tenant_id=session.viewer.tenant_id,
        id=session.viewer.app_id,
    )


class BusLinks:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def session_requested(
        self, session: Session, camera_turn: TurnGrant, receipt: bytes
    ) -> None:
        message = pb.CameraControlResponse(
            session_requested=pb.SessionRequested(
                session_id=session.session_id,
                turn=turn_pb(camera_turn),
                viewer_role=ROLES[session.role],
                expires_at=to_timestamp(session.expires_at),
                receipt=log_pb2.Receipt.FromString(receipt),
            )
        )
        await self._bus.publish(camera_channel(session.device_id), message.SerializeToString())

    async def peer_joined(self, session_id: str) -> None:
        message = pb.SignalResponse(peer_joined=pb.PeerJoined(session_id=session_id))
        for side in Side:
            await self._bus.send(signal_channel(session_id, side), message.SerializeToString())

    async def session_closed(self, session: Session, reason: EndReason) -> None:
        closed = pb.SessionClosed(session_id=session.session_id, reason=END_REASONS[reason])
        for side in Side:
            await self._bus.send(
                signal_channel(session.session_id, side),
                pb.SignalResponse(session_closed=closed).SerializeToString(),
            )
        await self._bus.publish(
            camera_channel(session.device_id),
            pb.CameraControlResponse(session_closed=closed).SerializeToString(),
        )

    async def signal(self, session_id: str, to: Side, message: pb.SignalMessage) -> None:
        await self._bus.send(
            signal_channel(session_id, to), pb.SignalResponse(signal=message).SerializeToString()
        )

    async def watching(self, session: Session, at: datetime, reason: EndReason | None) -> None:
        for tenant_id in session.told:
            notice = relay_pb2_notice(session, at, reason, tenant_id)
            await self._bus.publish(
                notice_channel(tenant_id),
                pb.StreamNoticesResponse(notice=notice).SerializeToString(),
            )

    async def talk_requested(self, talk: Talk, receipt: bytes) -> None:
        message = pb.CameraControlResponse(
            talk_requested=pb.TalkRequested(
                session_id=talk.session.session_id,
                receipt=log_pb2.Receipt.FromString(receipt),
                expires_at=to_timestamp(talk.expires_at),
            )
        )
        await self._bus.publish(camera_channel(talk.session.device_id), message.SerializeToString())

    async def talk_ended(self, talk: Talk, reason: TalkEndReason) -> None:
        message = pb.CameraControlResponse(
            talk_ended=pb.TalkEnded(
                session_id=talk.session.session_id, reason=TALK_END_REASONS[reason]
            )
        )
        await self._bus.publish(camera_channel(talk.session.device_id), message.SerializeToString())

    async def talking(
        self, talk: Talk, at: datetime, reason: TalkEndReason | None, duration: timedelta
    ) -> None:
        for tenant_id in talk.session.told:
            notice = talking_notice(talk, at, reason, duration, tenant_id)
            await self._bus.publish(
                notice_channel(tenant_id),
                pb.StreamNoticesResponse(notice=notice).SerializeToString(),
            )

    async def pin_locked_out(
        self, tenant_id: str, device_id: str, lockout: Duration, at: datetime
    ) -> None:
        notice = pb.HouseholdNotice(
            notice_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(at),
            device_id=device_id,
            pin_lockout=pb.PinLockout(lockout=lockout),
        )
        await self._bus.publish(
            notice_channel(tenant_id), pb.StreamNoticesResponse(notice=notice).SerializeToString()
        )

    async def privacy_statement(
        self, device_id: str, statement: privacy_pb2.SignedPrivacyStatement
    ) -> None:
        """Pass the owner's statement to the camera, which verifies it itself."""
        message = pb.CameraControlResponse(privacy_statement=statement)
        await self._bus.publish(camera_channel(device_id), message.SerializeToString())

    async def privacy_changed(
        self,
        tenant_ids: list[str],
        device_id: str,
        statement: privacy_pb2.SignedPrivacyStatement,
        summary: str,
        at: datetime,
    ) -> None:
        notice = pb.HouseholdNotice(
            notice_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(at),
            device_id=device_id,
            privacy_mode=pb.PrivacyModeNotice(summary=summary[:256], statement=statement),
        )
        for tenant_id in tenant_ids:
            await self._bus.publish(
                notice_channel(tenant_id),
                pb.StreamNoticesResponse(notice=notice).SerializeToString(),
            )

    async def presence_changed(
        self, tenant_id: str, device_id: str, online: bool, at: datetime
    ) -> None:
        notice = pb.HouseholdNotice(
            notice_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(at),
            device_id=device_id,
            presence_changed=pb.CameraPresence(
                device_id=device_id, online=online, since=to_timestamp(at)
            ),
        )
        await self._bus.publish(
            notice_channel(tenant_id), pb.StreamNoticesResponse(notice=notice).SerializeToString()
        )


def relay_pb2_notice(
    session: Session, at: datetime, reason: EndReason | None, recipient_tenant_id: str
) -> pb.HouseholdNotice:
    """The notice as ``recipient_tenant_id`` sees it: the viewer is named only to its own
    household; the owner's household knows another household's viewer by the grant."""
    notice = pb.HouseholdNotice(
        notice_id=str(uuid.uuid4()), occurred_at=to_timestamp(at), device_id=session.device_id
    )
    if reason is None:
        started = pb.WatchingStarted(
            session_id=session.session_id,
            viewer_role=ROLES[session.role],
            grant_id=session.grant_id,
        )
        if session.viewer.tenant_id == recipient_tenant_id:
            started.viewer.CopyFrom(viewer_pb(session))
        notice.watching_started.CopyFrom(started)
    else:
        notice.watching_ended.CopyFrom(
            pb.WatchingEnded(session_id=session.session_id, reason=END_REASONS[reason])
        )
    return notice


def talking_notice(
    talk: Talk,
    at: datetime,
    reason: TalkEndReason | None,
    duration: timedelta,
    recipient_tenant_id: str,
) -> pb.HouseholdNotice:
    """ "<who> is speaking through <camera>" (or that they stopped) as the recipient's
    household sees it: the speaker's app is named only to its own household."""
    session = talk.session
    who = speaker_words(talk, recipient_tenant_id)
    notice = pb.HouseholdNotice(
        notice_id=str(uuid.uuid4()), occurred_at=to_timestamp(at), device_id=session.device_id
    )
    if reason is None:
        started = pb.TalkingStarted(
            session_id=session.session_id,
            speaker_role=ROLES[session.role],
            grant_id=session.grant_id,
            summary=f"{who} is speaking through {talk.camera_name}"[:256],
        )
        if session.viewer.tenant_id == recipient_tenant_id:
            started.speaker.CopyFrom(viewer_pb(session))
        notice.talking_started.CopyFrom(started)
    else:
        length = Duration()
        length.FromTimedelta(duration)
        seconds = round(duration.total_seconds())
        notice.talking_ended.CopyFrom(
            pb.TalkingEnded(
                session_id=session.session_id,
                reason=TALK_END_REASONS[reason],
                duration=length,
                summary=f"{who} stopped speaking through {talk.camera_name} ({seconds} s)"[:256],
            )
        )
    return notice
