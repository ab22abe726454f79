"""Talk-back: the viewer of a live session speaks through the camera's speaker. Plain
Python over the ports below; no gRPC, Redis or Kafka here.

Order at start, so an unlogged talk-back cannot happen: the session is the caller's and
connected -> owner or TALK grant, PIN counted (device_auth) -> not in privacy mode ->
nobody else talking through the camera (reserved in the shared store) -> access log
entry (refused if the log is down, and the reservation is dropped) -> the camera asked,
with the log's receipt of the entry -> household notices -> a timer for the longest talk.

As for live view, the broker's word does not protect the home: the camera verifies the
receipt (a TALK_BACK record naming this camera, this session and the session's logged
viewer) and plays the audio it receives on that session's peer connection only then.
The audio itself never reaches the platform (DTLS-SRTP between app and camera).

Every end (EndTalkBack, the session's end, the time limit, the camera's decline) ends it
exactly once in the shared store, wherever it happens, and only that caller logs the end
with the duration and tells the camera and the household. A replica that dies takes its
timers with it, so the store also keeps each talk-back's latest end and every replica
sweeps for those past it (``sweep``); a talk-back whose session's replica died ends with
that session, which the live-view leases end (domain/live_views.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Protocol

from privacam_core.privacy import Feature, refusal
from services.common.clock import Clock
from services.relay_broker.domain.errors import CameraPrivate, SessionNotFound, TalkConflict
from services.relay_broker.domain.live_views import LiveViews
from services.relay_broker.domain.model import (
    Access,
    Role,
    Session,
    Side,
    Talk,
    TalkEndReason,
    Viewer,
)

log = logging.getLogger("privacam.relay_broker")


class TalkPolicy(Protocol):
    async def authorize_talk(self, device_id: str, viewer: Viewer, pin: str) -> Access:
        """Owner or a grant with the TALK scope, PIN checked when set; raises NotFound,
        PermissionDenied, ResourceExhausted (locked out) or Unavailable."""
        ...


class TalkLog(Protocol):
    async def talk_started(self, talk: Talk) -> bytes:
        """Durably logged before this returns, or raises (Unavailable); the receipt
        (serialized) the camera verifies before it plays anything."""
        ...

    async def talk_ended(self, talk: Talk, at: datetime) -> None:
        """The end entry, with the duration."""
        ...


class TalkStore(Protocol):
    async def reserve(self, talk: Talk, ttl: timedelta) -> str | None:
        """Record the talk-back as the camera's only one: None, or the session id of the
        one already running (nothing stored then)."""
        ...

    async def end(self, device_id: str, session_id: str) -> Talk | None:
        """Atomically remove that session's talk-back (first caller wins), or None."""
        ...

    async def due(self, before: datetime, limit: int) -> list[tuple[str, str]]:
        """(device, session) of talk-backs whose latest end is before ``before``."""
        ...


class TalkLinks(Protocol):
    async def talk_requested(self, talk: Talk, receipt: bytes) -> None: ...
    async def talk_ended(self, talk: Talk, reason: TalkEndReason) -> None: ...
    async def talking(
        self, talk: Talk, at: datetime, reason: TalkEndReason | None, duration: timedelta
    ) -> None:
        """Tell the households of ``talk.session.told`` that someone started (reason None)
        or stopped speaking through the camera."""
        ...


class TalkMetrics(Protocol):
    def talk_started(self, role: Role) -> None: ...
    def talk_ended(self, reason: TalkEndReason, seconds: float) -> None: ...
    def talk_refused(self, reason: str) -> None: ...


def camera_name(access: Access, device_id: str) -> str:
    return access.label or f"camera {device_id}"


def speaker_words(talk: Talk, recipient_tenant_id: str) -> str:
    """Who speaks, as the recipient's household may be told (another household's member
    is named by role and grant only, as in the watching notices)."""
    session = talk.session
    owner = session.role is Role.OWNER
    who = "the owner" if owner else f"a member (grant {session.grant_id[:8]})"
    if session.viewer.tenant_id == recipient_tenant_id:
        who += f" (app {session.viewer.app_id[:8]})"
    return who


class TalkBacks:
    def __init__(
        self,
        *,
        views: LiveViews,
        policy: TalkPolicy,
        access_log: TalkLog,
        store: TalkStore,
        links: TalkLinks,
        metrics: TalkMetrics,
        clock: Clock,
        max_talk: timedelta,
    ) -> None:
        self._views = views
        self._policy = policy
        self._log = access_log
        self._store = store
        self._links = links
        self._metrics = metrics
        self._clock = clock
        self.max_talk = max_talk
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()
        views.on_end(self._session_ended)

    async def start(self, viewer: Viewer, session_id: str, pin: str) -> Talk:
        """StartTalkBack by the session's viewer (see the module docstring for the order)."""
        session = await self._views.session_for(
            session_id, Side.APP, viewer.tenant_id, viewer.app_id
        )
        if not await self._views.connected(session_id):
            self._metrics.talk_refused("not_connected")
            raise TalkConflict(
                "the live view is not connected yet: talk once the camera has joined"
            )
        access = await self._policy.authorize_talk(session.device_id, viewer, pin)
        now = self._clock.now()
        refused = refusal(session.device_id, access.privacy, now, Feature.TALK_BACK)
        if refused is not None:
            self._metrics.talk_refused("privacy_mode")
            raise CameraPrivate(refused)
        talk = Talk(
            session=session,
            started_at=now,
            expires_at=min(now + self.max_talk, session.expires_at),
            camera_name=camera_name(access, session.device_id),
        )
        running = await self._store.reserve(talk, talk.expires_at - now + timedelta(minutes=1))
        if running is not None:
            self._metrics.talk_refused("busy")
            if running == session_id:
                raise TalkConflict("you are already speaking through this camera")
            raise TalkConflict("someone else is speaking through this camera; try again later")
        try:
            receipt = await self._log.talk_started(talk)
        except BaseException:
            await self._store.end(session.device_id, session_id)  # never unlogged
            raise
        await self._links.talk_requested(talk, receipt)
        await self._links.talking(talk, now, None, timedelta(0))
        self._metrics.talk_started(session.role)
        loop = asyncio.get_running_loop()
        self._timers[session_id] = loop.call_later(
            (talk.expires_at - now).total_seconds(), self._spawn, session.device_id, session_id
        )
        return talk

    async def end_by(self, caller: Viewer, session_id: str) -> tuple[datetime, timedelta]:
        """EndTalkBack: the speaker, or an app of the camera's owner household."""
        found = await self._views.find(session_id)
        if found is None or (caller != found.viewer and caller.tenant_id != found.owner_tenant_id):
            raise SessionNotFound("no such live-view session")
        ended = await self.end(found.device_id, session_id, TalkEndReason.ENDED)
        if ended is None:
            raise SessionNotFound("nobody is speaking in this live-view session")
        talk, at = ended
        return at, at - talk.started_at

    async def end(
        self, device_id: str, session_id: str, reason: TalkEndReason
    ) -> tuple[Talk, datetime] | None:
        """End the session's talk-back once, wherever it runs: it and the time of its end
        entry; None when none ran."""
        handle = self._timers.pop(session_id, None)
        if handle is not None:
            handle.cancel()
        talk = await self._store.end(device_id, session_id)
        if talk is None:
            return None
        now = self._clock.now()
        duration = now - talk.started_at
        await self._links.talk_ended(talk, reason)
        await self._links.talking(talk, now, reason, duration)
        self._metrics.talk_ended(reason, duration.total_seconds())
        try:
            await self._log.talk_ended(talk, now)
        except Exception as error:  # the start is logged; a lost end record is reported
            log.warning("end of talk-back not logged", extra={"error": type(error).__name__})
        return talk, now

    async def declined(self, device_id: str, session_id: str, reason: str) -> None:
        """The camera would not play it (its receipt check failed, or it is private)."""
        self._metrics.talk_refused("camera_declined")
        log.warning("a camera declined a talk-back", extra={"reason": reason})
        await self.end(device_id, session_id, TalkEndReason.CAMERA_DECLINED)

    async def sweep(self, grace: timedelta, limit: int = 100) -> int:
        """End the talk-backs past their latest end by ``grace``: the replica whose timer
        should have ended them died. Every replica sweeps; each end happens once."""
        ended = 0
        for device_id, session_id in await self._store.due(self._clock.now() - grace, limit):
            if await self.end(device_id, session_id, TalkEndReason.MAX_DURATION) is not None:
                ended += 1
        return ended

    async def _session_ended(self, session: Session) -> None:
        await self.end(session.device_id, session.session_id, TalkEndReason.SESSION_ENDED)

    def _spawn(self, device_id: str, session_id: str) -> None:
        self._timers.pop(session_id, None)
        task = asyncio.ensure_future(self._expire(device_id, session_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _expire(self, device_id: str, session_id: str) -> None:
        await self.end(device_id, session_id, TalkEndReason.MAX_DURATION)

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
