"""The RelayBrokerService servicer: validates, calls the domain, speaks protobuf.

Streams are async generators (the shared interceptor wraps them and ends them at once
when the caller's certificate is revoked). Each stream reads its requests in a small
task and writes what arrives for it on the replica bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from privacam.relay.v1 import relay_pb2
from privacam_core.identity import Principal, PrincipalKind
from privacam_core.timestamps import to_timestamp
from services.common.auth import current_principal
from services.common.errors import InvalidArgument, NotFound, PermissionDenied, map_domain_error
from services.relay_broker.adapters.bus import Bus
from services.relay_broker.adapters.links import BusLinks, notice_channel, signal_channel, turn_pb
from services.relay_broker.adapters.metrics import (
    PRIVACY_REFUSED,
    SESSIONS_ACTIVE,
    SESSIONS_DECLINED,
    SIGNALING_MESSAGES,
)
from services.relay_broker.adapters.peers import DeviceAuthPolicy
from services.relay_broker.adapters.redis_state import RedisPresence
from services.relay_broker.adapters.watch_notices import RedisWatchNotices
from services.relay_broker.api.cameras import CameraHub, CameraStream
from services.relay_broker.domain import validation
from services.relay_broker.domain.errors import (
    CameraOffline,
    CameraPrivate,
    InvalidInput,
    SessionConflict,
    SessionNotFound,
    TalkConflict,
    TooManySessions,
)
from services.relay_broker.domain.live_views import LiveViews
from services.relay_broker.domain.model import EndReason, Side, Viewer
from services.relay_broker.domain.talk_back import TalkBacks

for _error, _status in (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (SessionNotFound, grpc.StatusCode.NOT_FOUND),
    (CameraOffline, grpc.StatusCode.FAILED_PRECONDITION),
    (TooManySessions, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (SessionConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (CameraPrivate, grpc.StatusCode.FAILED_PRECONDITION),
    (TalkConflict, grpc.StatusCode.FAILED_PRECONDITION),
):
    map_domain_error(_error, _status)

log = logging.getLogger("privacam.relay_broker")
FIRST_MESSAGE_SECONDS = 10.0
_APP_REASONS = {
    relay_pb2.SESSION_END_REASON_UNSPECIFIED: EndReason.VIEWER_ENDED,
    relay_pb2.SESSION_END_REASON_VIEWER_ENDED: EndReason.VIEWER_ENDED,
    relay_pb2.SESSION_END_REASON_FINGERPRINT_REJECTED: EndReason.FINGERPRINT_REJECTED,
    relay_pb2.SESSION_END_REASON_FAILED: EndReason.FAILED,
}
_CAMERA_REASONS = {
    relay_pb2.SESSION_END_REASON_UNSPECIFIED: EndReason.CAMERA_ENDED,
    relay_pb2.SESSION_END_REASON_CAMERA_ENDED: EndReason.CAMERA_ENDED,
    relay_pb2.SESSION_END_REASON_FAILED: EndReason.FAILED,
    relay_pb2.SESSION_END_REASON_PRIVACY_MODE: EndReason.PRIVACY_MODE,
}
_PRESENCE_LOOKUPS = 8
MAX_WATCH_NOTICES = 500
"""Most kept privacy-watch notices one ListWatchNotices returns."""


async def _first(requests: AsyncIterator[Any], what: str) -> Any:
    """The first message of a stream, which must come soon (no half-open streams)."""
    try:
        return await asyncio.wait_for(anext(requests), FIRST_MESSAGE_SECONDS)
    except StopAsyncIteration:
        raise InvalidArgument(f"the stream closed before its first message ({what})") from None
    except TimeoutError:
        raise InvalidArgument(
            f"the first message ({what}) must be sent within {FIRST_MESSAGE_SECONDS:.0f} s"
        ) from None


def _tenant(principal: Principal) -> str:
    assert principal.tenant_id is not None  # cameras and apps always have one
    return principal.tenant_id


class RelayBrokerServicer(pb_grpc.RelayBrokerServiceServicer):
    def __init__(
        self,
        views: LiveViews,
        cameras: CameraHub,
        bus: Bus,
        links: BusLinks,
        presence: RedisPresence,
        policy: DeviceAuthPolicy,
        talks: TalkBacks,
        watch_notices: RedisWatchNotices,
    ) -> None:
        self._watch_notices = watch_notices
        self._views = views
        self._talks = talks
        self._cameras = cameras
        self._bus = bus
        self._links = links
        self._presence = presence
        self._policy = policy

    # --- cameras ---------------------------------------------------------------

    async def CameraControl(
        self, request_iterator: AsyncIterator[pb.CameraControlRequest], context: Any
    ) -> AsyncIterator[pb.CameraControlResponse]:
        caller = current_principal()
        first = await _first(request_iterator, "hello")
        if first.WhichOneof("message") != "hello":
            raise InvalidArgument("the first message of CameraControl must be a hello")
        firmware = validation.firmware_version(first.hello.firmware_version)
        max_sessions = validation.max_sessions(first.hello.max_sessions)
        stream = await self._cameras.connect(caller.name, _tenant(caller), firmware, max_sessions)
        reader = asyncio.create_task(self._camera_reader(request_iterator, stream, caller))
        try:
            yield self._cameras.welcome()
            # The owner's latest statement, in case it changed while the camera was away
            # (the camera ignores one it already applied).
            statement = await self._policy.privacy_statement(caller.name)
            if statement is not None:
                yield pb.CameraControlResponse(privacy_statement=statement)
            while (message := await stream.outbox.get()) is not None:
                if isinstance(message, BaseException):
                    raise message
                yield message
        finally:
            reader.cancel()
            await self._cameras.disconnect(stream)

    async def _camera_reader(
        self,
        requests: AsyncIterator[pb.CameraControlRequest],
        stream: CameraStream,
        caller: Principal,
    ) -> None:
        try:
            async for request in requests:
                which = request.WhichOneof("message")
                if which == "heartbeat":
                    self._cameras.echoed(stream)
                elif which == "session_answer":
                    answer = request.session_answer
                    sid = validation.session_id(answer.session_id, "session_answer.session_id")
                    validation.decline_reason(answer.decline_reason)
                    if not answer.accepted:
                        # A camera declines what it cannot verify (a request without a
                        # valid log receipt, a viewer the log does not name): counted, so
                        # a broker or store that forges sessions shows on the dashboards.
                        SESSIONS_DECLINED.inc()
                        with contextlib.suppress(SessionNotFound):  # forged or already over
                            await self._views.end_by(
                                sid, False, _tenant(caller), caller.name, EndReason.CAMERA_ENDED
                            )
                elif which == "privacy_answer":
                    privacy = request.privacy_answer
                    validation.decline_reason(privacy.refusal_reason)
                    if not privacy.applied:
                        # The camera refused a statement the platform passed on: forged,
                        # replayed or signed by a key it never paired with. Worth an alert.
                        PRIVACY_REFUSED.inc()
                        log.warning(
                            "a camera refused a privacy statement",
                            extra={"reason": privacy.refusal_reason},
                        )
                elif which == "talk_answer":
                    talk = request.talk_answer
                    sid = validation.session_id(talk.session_id, "talk_answer.session_id")
                    validation.decline_reason(talk.decline_reason)
                    if not talk.accepted:
                        # Ends only this camera's own talk-back (the store is per camera).
                        await self._talks.declined(caller.name, sid, talk.decline_reason)
                else:
                    raise InvalidArgument("hello is only the first message; send heartbeats")
        except Exception as error:  # ends the stream with the error's status
            stream.outbox.put_nowait(error)
            return
        stream.outbox.put_nowait(None)

    # --- live view ---------------------------------------------------------------

    async def StartLiveView(
        self, request: pb.StartLiveViewRequest, context: Any
    ) -> pb.StartLiveViewResponse:
        caller = current_principal()
        device_id = validation.device_id(request.device_id)
        pin = validation.pin(request.pin)
        started = await self._views.start(Viewer(_tenant(caller), caller.name), device_id, pin)
        idle = Duration()
        idle.FromTimedelta(self._views.limits.idle_timeout)
        return pb.StartLiveViewResponse(
            session_id=started.session.session_id,
            turn=turn_pb(started.turn),
            idle_timeout=idle,
            expires_at=to_timestamp(started.session.expires_at),
        )

    async def StartTalkBack(
        self, request: pb.StartTalkBackRequest, context: Any
    ) -> pb.StartTalkBackResponse:
        caller = current_principal()
        sid = validation.session_id(request.session_id)
        pin = validation.pin(request.pin)
        talk = await self._talks.start(Viewer(_tenant(caller), caller.name), sid, pin)
        return pb.StartTalkBackResponse(
            started_at=to_timestamp(talk.started_at), expires_at=to_timestamp(talk.expires_at)
        )

    async def EndTalkBack(
        self, request: pb.EndTalkBackRequest, context: Any
    ) -> pb.EndTalkBackResponse:
        caller = current_principal()
        sid = validation.session_id(request.session_id)
        ended_at, lasted = await self._talks.end_by(Viewer(_tenant(caller), caller.name), sid)
        duration = Duration()
        duration.FromTimedelta(lasted)
        return pb.EndTalkBackResponse(ended_at=to_timestamp(ended_at), duration=duration)

    async def Signal(
        self, request_iterator: AsyncIterator[pb.SignalRequest], context: Any
    ) -> AsyncIterator[pb.SignalResponse]:
        caller = current_principal()
        side = Side.APP if caller.kind is PrincipalKind.APP else Side.CAMERA
        first = await _first(request_iterator, "join")
        if first.WhichOneof("message") != "join":
            raise InvalidArgument("the first message of Signal must be a join")
        sid = validation.session_id(first.join.session_id, "join.session_id")
        session = await self._views.session_for(sid, side, _tenant(caller), caller.name)
        inbox: asyncio.Queue[pb.SignalResponse | BaseException | None] = asyncio.Queue()

        def deliver(data: bytes) -> None:
            inbox.put_nowait(pb.SignalResponse.FromString(data))

        channel = signal_channel(sid, side)
        await self._bus.subscribe(channel, deliver)  # before joining: miss nothing
        joined = closed = False
        outcome = EndReason.VIEWER_ENDED if side is Side.APP else EndReason.CAMERA_ENDED
        reader: asyncio.Task[None] | None = None
        try:
            await self._views.join(session, side)
            joined = True
            if side is Side.APP:
                SESSIONS_ACTIVE.inc()
            reader = asyncio.create_task(self._signal_reader(request_iterator, sid, side, inbox))
            while (item := await inbox.get()) is not None:
                if isinstance(item, BaseException):
                    outcome = EndReason.FAILED
                    raise item
                yield item
                if item.HasField("session_closed"):
                    closed = True
                    break
        finally:
            if reader is not None:
                reader.cancel()
            # Apps cancel their call right after half-closing it, which may land while this
            # runs: shielded, so a session is never marked ended without its camera being
            # told (nor left leased forever by a cleanup cut short).
            await asyncio.shield(self._leave(sid, side, channel, deliver, joined, closed, outcome))

    async def _leave(
        self,
        sid: str,
        side: Side,
        channel: str,
        deliver: Callable[[bytes], None],
        joined: bool,
        closed: bool,
        outcome: EndReason,
    ) -> None:
        """One side's Signal stream is over: stop listening, and end the session unless the
        broker closed it."""
        await self._bus.unsubscribe(channel, deliver)
        if joined:
            self._views.left(sid, side)
            if side is Side.APP:
                SESSIONS_ACTIVE.dec()
            if not closed:  # this side left: the session cannot go on
                await self._views.end(sid, outcome)

    async def _signal_reader(
        self,
        requests: AsyncIterator[pb.SignalRequest],
        session_id: str,
        side: Side,
        inbox: asyncio.Queue[pb.SignalResponse | BaseException | None],
    ) -> None:
        try:
            async for request in requests:
                if request.WhichOneof("message") != "signal":
                    raise InvalidArgument("join is only the first message of Signal")
                kind = _check_signal(request.signal, side)
                await self._links.signal(session_id, side.other, request.signal)
                SIGNALING_MESSAGES.labels(kind, side.value).inc()
        except Exception as error:  # ends the stream with the error's status
            inbox.put_nowait(error)
            return
        inbox.put_nowait(None)

    async def EndLiveView(
        self, request: pb.EndLiveViewRequest, context: Any
    ) -> pb.EndLiveViewResponse:
        caller = current_principal()
        sid = validation.session_id(request.session_id)
        is_app = caller.kind is PrincipalKind.APP
        reasons = _APP_REASONS if is_app else _CAMERA_REASONS
        reason = reasons.get(request.reason)
        if reason is None:
            allowed = ", ".join(relay_pb2.SessionEndReason.Name(r) for r in reasons if r)
            raise InvalidArgument(f"reason must be unspecified or one of {allowed}")
        ended_at = await self._views.end_by(sid, is_app, _tenant(caller), caller.name, reason)
        return pb.EndLiveViewResponse(ended_at=to_timestamp(ended_at))

    async def RenewTurnCredentials(
        self, request: pb.RenewTurnCredentialsRequest, context: Any
    ) -> pb.RenewTurnCredentialsResponse:
        caller = current_principal()
        side = Side.APP if caller.kind is PrincipalKind.APP else Side.CAMERA
        sid = validation.session_id(request.session_id)
        grant = await self._views.renew_turn(sid, side, _tenant(caller), caller.name)
        return pb.RenewTurnCredentialsResponse(turn=turn_pb(grant))

    # --- presence and notices -------------------------------------------------------

    async def GetCameraPresence(
        self, request: pb.GetCameraPresenceRequest, context: Any
    ) -> pb.GetCameraPresenceResponse:
        caller = current_principal()
        if not 1 <= len(request.device_ids) <= 100:
            raise InvalidArgument("device_ids must list 1 to 100 cameras")
        ids = [validation.device_id(d, "device_ids") for d in request.device_ids]
        if caller.kind is PrincipalKind.APP:
            ids = await self._visible(ids, Viewer(_tenant(caller), caller.name))
        found = await self._presence.get(ids) if ids else []
        cameras = []
        for presence in found:
            entry = pb.CameraPresence(device_id=presence.device_id, online=presence.online)
            if presence.since is not None:
                entry.since.CopyFrom(to_timestamp(presence.since))
            cameras.append(entry)
        return pb.GetCameraPresenceResponse(cameras=cameras)

    async def _visible(self, ids: list[str], viewer: Viewer) -> list[str]:
        """The cameras an app owns or holds a LIVE grant on (device_auth decides; no PIN)."""
        limit = asyncio.Semaphore(_PRESENCE_LOOKUPS)

        async def may_see(device_id: str) -> bool:
            async with limit:
                try:
                    await self._policy.authorize(device_id, viewer, "", check_pin=False)
                except (NotFound, PermissionDenied):
                    return False
                return True

        allowed = await asyncio.gather(*(may_see(d) for d in dict.fromkeys(ids)))
        visible = {d for d, ok in zip(dict.fromkeys(ids), allowed, strict=True) if ok}
        return [d for d in ids if d in visible]

    async def StreamNotices(
        self, request: pb.StreamNoticesRequest, context: Any
    ) -> AsyncIterator[pb.StreamNoticesResponse]:
        caller = current_principal()
        inbox: asyncio.Queue[pb.StreamNoticesResponse] = asyncio.Queue(maxsize=256)

        def deliver(data: bytes) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stuck app loses notices, not memory
                inbox.put_nowait(pb.StreamNoticesResponse.FromString(data))

        channel = notice_channel(_tenant(caller))
        await self._bus.subscribe(channel, deliver)
        try:
            while True:
                yield await inbox.get()
        finally:
            await self._bus.unsubscribe(channel, deliver)

    async def ListWatchNotices(
        self, request: pb.ListWatchNoticesRequest, context: Any
    ) -> pb.ListWatchNoticesResponse:
        if request.limit > MAX_WATCH_NOTICES:
            raise InvalidArgument(f"limit must be at most {MAX_WATCH_NOTICES}")
        tenant = _tenant(current_principal())
        notices = await self._watch_notices.recent(
            tenant, request.limit or 100, request.digests_only
        )
        return pb.ListWatchNoticesResponse(notices=notices)


def _check_signal(message: pb.SignalMessage, side: Side) -> str:
    """Validate one signaling message for the side sending it; its kind for the metric."""
    kind = message.WhichOneof("payload")
    if kind == "description":
        if message.description.type == pb.SDP_TYPE_UNSPECIFIED:
            raise InvalidArgument("description.type must be OFFER or ANSWER")
        validation.sdp(
            message.description.sdp,
            from_app=side is Side.APP,
            is_offer=message.description.type == pb.SDP_TYPE_OFFER,
        )
    elif kind == "candidate":
        validation.candidate(message.candidate.candidate, message.candidate.sdp_mid)
    elif kind == "fingerprint":
        fp = message.fingerprint
        validation.fingerprint(
            fp.algorithm, fp.fingerprint, fp.signature, list(fp.certificate_chain)
        )
    elif kind != "end_of_candidates":
        raise InvalidArgument(
            "signal must carry a description, candidate, end_of_candidates or fingerprint"
        )
    return str(kind)
