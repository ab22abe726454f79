"""Live-view sessions: who may watch, the session's life, and everything that must happen
when it starts and ends. Plain Python over the ports below; no gRPC, Redis or Kafka here.

Order at start, so an unlogged or half-made view cannot happen: authorize (device_auth,
PIN counted there) -> not in privacy mode -> camera online -> reserve within the limits ->
access log entry (refused if the log is down, and the reservation is dropped) -> TURN
credentials and the camera asked, with the log's receipt of the entry -> event and
household notices.

The broker's word is not what protects the camera: the camera verifies that receipt
against the log keys it pinned and streams only to the app the entry names, so a broker
that skipped the log, or anyone writing its Redis, gets no video.

Every started session ends, and its end is logged, even when the replica that holds its
signaling or its timers dies: each side of a session has a lease in the shared store,
renewed every heartbeat by the replica holding that side's Signal stream (before it
joins: until the idle timeout, plus the lease). Every replica sweeps for leases that ran
out and ends those sessions the usual way (idle timeout, maximum duration, or
SIGNALING_LOST), so the end entry, the notices and the talk-back's end all follow.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from privacam_core.privacy import Feature, refusal
from services.common.clock import Clock
from services.relay_broker.domain import turn
from services.relay_broker.domain.errors import (
    CameraOffline,
    CameraPrivate,
    SessionConflict,
    SessionNotFound,
)
from services.relay_broker.domain.model import (
    Access,
    EndReason,
    Presence,
    Role,
    Session,
    Side,
    TurnGrant,
    Viewer,
)

log = logging.getLogger("privacam.relay_broker")


class AccessPolicy(Protocol):
    async def authorize(self, device_id: str, viewer: Viewer, pin: str) -> Access:
        """Owner or LIVE grant, PIN checked when set; raises NotFound, PermissionDenied,
        ResourceExhausted (locked out) or Unavailable as device_auth decides."""
        ...


class AccessLog(Protocol):
    async def session_started(self, session: Session) -> bytes:
        """Durably logged before this returns, or raises (Unavailable); the log's receipt
        of the entry (serialized), which the camera verifies before it streams."""
        ...

    async def session_ended(self, session: Session, at: datetime) -> None: ...


class SessionStore(Protocol):
    async def create(
        self,
        session: Session,
        camera_limit: int,
        app_limit: int,
        ttl: timedelta,
        lease_until: datetime,
    ) -> None:
        """Store and count the session with both sides leased until ``lease_until``, or
        raise TooManySessions and store nothing."""
        ...

    async def discard(self, session: Session) -> None: ...

    async def get(self, session_id: str) -> tuple[Session, bool] | None:
        """The session and whether it has ended; None when unknown or expired."""
        ...

    async def join(self, session_id: str, side: Side, ttl: timedelta) -> int | None:
        """Mark a side joined: how many sides have joined now, None if it already had."""
        ...

    async def joined(self, session_id: str) -> int: ...

    async def end(self, session_id: str, reason: EndReason) -> tuple[Session, int] | None:
        """Atomically end it (first caller wins) and drop its leases: the session and its
        relayed bytes."""
        ...

    async def renew(self, leases: Sequence[tuple[str, Side, datetime]]) -> None:
        """Move each (session, side)'s lease to its time; a lease already dropped (the
        session ended) stays dropped."""
        ...

    async def lapsed(self, now: datetime, limit: int) -> list[str]:
        """Sessions with a side whose lease ran out by ``now``, at most ``limit``."""
        ...

    async def forget(self, session_id: str) -> None:
        """Drop a session's leases (it ended, or its record is gone)."""
        ...

    async def of_camera(self, device_id: str) -> list[str]: ...
    async def of_app(self, viewer: Viewer) -> list[str]: ...
    async def of_grant(self, grant_id: str) -> list[str]: ...


class PresenceStore(Protocol):
    async def get(self, device_ids: list[str]) -> list[Presence]: ...


class Links(Protocol):
    """Delivery to the open streams, on whichever replica holds them."""

    async def session_requested(
        self, session: Session, camera_turn: TurnGrant, receipt: bytes
    ) -> None: ...
    async def peer_joined(self, session_id: str) -> None: ...
    async def session_closed(self, session: Session, reason: EndReason) -> None: ...
    async def watching(self, session: Session, at: datetime, reason: EndReason | None) -> None:
        """Tell the households of ``session.told`` that someone started (reason None) or
        stopped watching."""
        ...


class Events(Protocol):
    def session_started(self, session: Session) -> None: ...
    def session_ended(
        self, session: Session, reason: EndReason, at: datetime, relayed_bytes: int
    ) -> None: ...


class Metrics(Protocol):
    def started(self, role: Role) -> None: ...
    def ended(self, reason: EndReason, seconds: float) -> None: ...
    def refused(self, reason: str) -> None: ...
    def credentials_issued(self, count: int) -> None: ...


@dataclass(frozen=True)
class Limits:
    idle_timeout: timedelta
    max_duration: timedelta
    turn_ttl_seconds: int
    per_camera: int
    per_app: int
    lease: timedelta = timedelta(seconds=6)
    """How long a side's lease runs past its last renewal (three heartbeats): a session
    whose side nobody renews for this long is ended by whichever replica sweeps first."""

    @property
    def kept(self) -> timedelta:
        """How long a session's record outlives its deadlines, so a sweep finds it."""
        return self.lease + timedelta(minutes=1)


@dataclass(frozen=True)
class Started:
    session: Session
    turn: TurnGrant


class LiveViews:
    def __init__(
        self,
        *,
        policy: AccessPolicy,
        access_log: AccessLog,
        sessions: SessionStore,
        presence: PresenceStore,
        links: Links,
        events: Events,
        metrics: Metrics,
        clock: Clock,
        limits: Limits,
        turn_secret: bytes,
        turn_uris: tuple[str, ...],
    ) -> None:
        self._policy = policy
        self._log = access_log
        self._sessions = sessions
        self._presence = presence
        self._links = links
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self.limits = limits
        self._secret = turn_secret
        self._uris = turn_uris
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        # The sides whose Signal stream this replica holds: a renewal from one of them needs
        # no read of the shared store, since its stream ends when its session does.
        self._signaling: dict[tuple[str, Side], Session] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._end_hooks: list[Callable[[Session], Awaitable[None]]] = []

    def on_end(self, hook: Callable[[Session], Awaitable[None]]) -> None:
        """Run ``hook`` once for every session this replica ends (talk-back ends with it)."""
        self._end_hooks.append(hook)

    # --- start -----------------------------------------------------------------

    async def start(self, viewer: Viewer, device_id: str, pin: str) -> Started:
        access = await self._policy.authorize(device_id, viewer, pin)
        # Early and only a courtesy: the camera checks its own privacy state and declines.
        refused = refusal(device_id, access.privacy, self._clock.now(), Feature.LIVE_VIEW)
        if refused is not None:
            self._metrics.refused("privacy_mode")
            raise CameraPrivate(refused)
        (presence,) = await self._presence.get([device_id])
        if not presence.online:
            self._metrics.refused("camera_offline")
            raise CameraOffline("the camera is offline; try again when it is back online")
        now = self._clock.now()
        session = Session(
            session_id=str(uuid.uuid4()),
            device_id=device_id,
            owner_tenant_id=access.owner_tenant_id,
            viewer=viewer,
            role=Role.OWNER if access.is_owner else Role.GRANTEE,
            grant_id=access.grant_id,
            started_at=now,
            expires_at=now + self.limits.max_duration,
        )
        await self._sessions.create(
            session,
            camera_limit=min(self.limits.per_camera, presence.max_sessions),
            app_limit=self.limits.per_app,
            ttl=self.limits.idle_timeout + self.limits.kept,
            lease_until=now + self.limits.idle_timeout + self.limits.lease,
        )
        try:
            receipt = await self._log.session_started(session)
        except BaseException:
            await self._sessions.discard(session)  # no session without its log entry
            raise
        ttl = min(self.limits.turn_ttl_seconds, int(self.limits.max_duration.total_seconds()))
        app_turn = turn.issue(self._secret, self._uris, session.session_id, Side.APP, now, ttl)
        camera_turn = turn.issue(
            self._secret, self._uris, session.session_id, Side.CAMERA, now, ttl
        )
        self._metrics.credentials_issued(2)
        await self._links.session_requested(session, camera_turn, receipt)
        self._events.session_started(session)
        await self._links.watching(session, now, None)
        self._metrics.started(session.role)
        self._schedule(session)
        return Started(session, app_turn)

    def _schedule(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        sid = session.session_id
        self._timers[sid] = [
            loop.call_later(
                self.limits.idle_timeout.total_seconds(), self._spawn, self._idle_check, sid
            ),
            loop.call_later(
                self.limits.max_duration.total_seconds(), self._spawn, self._expire, sid
            ),
        ]

    async def _expire(self, session_id: str) -> None:
        await self.end(session_id, EndReason.MAX_DURATION)

    def _spawn(self, work: Callable[[str], Awaitable[None]], session_id: str) -> None:
        task = asyncio.ensure_future(work(session_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _idle_check(self, session_id: str) -> None:
        if await self._sessions.joined(session_id) < 2:
            await self.end(session_id, EndReason.IDLE_TIMEOUT)

    # --- signaling ---------------------------------------------------------------

    async def session_for(self, session_id: str, side: Side, tenant_id: str, name: str) -> Session:
        """The session if the caller is its app (side APP) or its camera; else NotFound."""
        found = await self._sessions.get(session_id)
        if found is None or not _is_side(found[0], side, tenant_id, name):
            raise SessionNotFound("no such live-view session")
        if found[1]:
            raise SessionNotFound("the live-view session has ended")
        return found[0]

    async def find(self, session_id: str) -> Session | None:
        """A running session, whoever asks (callers check who may see it)."""
        found = await self._sessions.get(session_id)
        return None if found is None or found[1] else found[0]

    async def connected(self, session_id: str) -> bool:
        """Whether both sides have joined its signaling."""
        return await self._sessions.joined(session_id) >= 2

    async def renew_turn(self, session_id: str, side: Side, tenant_id: str, name: str) -> TurnGrant:
        """Fresh TURN credentials for one side of a running session, never valid past its
        end. Nothing new to log: the session's start is in the access log, its end will be.

        A side signaling through this replica is answered from memory: its stream ends when
        the session does, wherever that happens (within the bus's delivery time, while the
        credentials it already holds stay valid anyway)."""
        session = self._signaling.get((session_id, side))
        if session is None or not _is_side(session, side, tenant_id, name):
            session = await self.session_for(session_id, side, tenant_id, name)
        now = self._clock.now()
        left = int((session.expires_at - now).total_seconds())
        if left < 1:
            raise SessionNotFound("the live-view session has ended")
        grant = turn.issue(
            self._secret,
            self._uris,
            session_id,
            side,
            now,
            min(self.limits.turn_ttl_seconds, left),
        )
        self._metrics.credentials_issued(1)
        return grant

    async def join(self, session: Session, side: Side) -> None:
        count = await self._sessions.join(
            session.session_id, side, self.limits.max_duration + self.limits.kept
        )
        if count is None:
            raise SessionConflict(f"the {side.value} side of this session has already joined")
        self._signaling[(session.session_id, side)] = session
        if count == 2:
            await self._links.peer_joined(session.session_id)

    def left(self, session_id: str, side: Side) -> None:
        """That side's Signal stream on this replica is over."""
        self._signaling.pop((session_id, side), None)

    # --- end ---------------------------------------------------------------------

    async def end_by(
        self, session_id: str, kind_is_app: bool, tenant_id: str, name: str, reason: EndReason
    ) -> datetime:
        """EndLiveView: the viewer, the camera, or an app of the owner household."""
        found = await self._sessions.get(session_id)
        side = Side.APP if kind_is_app else Side.CAMERA
        allowed = found is not None and (
            _is_side(found[0], side, tenant_id, name)
            or (kind_is_app and found[0].owner_tenant_id == tenant_id)
        )
        if found is None or not allowed:
            raise SessionNotFound("no such live-view session")
        if found[1]:
            raise SessionNotFound("the live-view session has already ended")
        await self.end(session_id, reason)
        return self._clock.now()

    async def end(self, session_id: str, reason: EndReason) -> bool:
        """End a session once, wherever it runs; False when it had already ended."""
        ended = await self._sessions.end(session_id, reason)
        for side in Side:
            self.left(session_id, side)
        for handle in self._timers.pop(session_id, []):
            handle.cancel()
        if ended is None:
            return False
        session, relayed = ended
        for hook in self._end_hooks:
            try:
                await hook(session)
            except Exception as error:  # the session ends whatever a hook hit
                log.warning("session end hook failed", extra={"error": type(error).__name__})
        now = self._clock.now()
        await self._links.session_closed(session, reason)
        self._events.session_ended(session, reason, now, relayed)
        await self._links.watching(session, now, reason)
        self._metrics.ended(reason, (now - session.started_at).total_seconds())
        try:
            await self._log.session_ended(session, now)
        except Exception as error:  # the start is logged; a lost end record is reported
            log.warning("end of session not logged", extra={"error": type(error).__name__})
        return True

    # --- leases: sessions whose replica died end too ---------------------------------

    async def renew_leases(self) -> int:
        """Renew the lease of every side signaling through this replica (each heartbeat);
        never past the session's own end, so its maximum duration holds without the
        timer of the replica that started it."""
        if not self._signaling:
            return 0
        until = self._clock.now() + self.limits.lease
        await self._sessions.renew(
            [
                (sid, side, min(until, session.expires_at))
                for (sid, side), session in self._signaling.items()
            ]
        )
        return len(self._signaling)

    async def sweep(self, limit: int = 100) -> int:
        """End the sessions with a side nobody leases any more: the replica holding its
        Signal stream (or, before it joined, the one that started the session) stopped
        without ending it. Every replica sweeps; each end happens once, and is logged."""
        now = self._clock.now()
        ended = 0
        for sid in await self._sessions.lapsed(now, limit):
            found = await self._sessions.get(sid)
            if found is None or found[1]:
                await self._sessions.forget(sid)  # over already, or its record is gone
                continue
            if now >= found[0].expires_at:
                reason = EndReason.MAX_DURATION
            elif await self._sessions.joined(sid) < 2:
                reason = EndReason.IDLE_TIMEOUT
            else:
                reason = EndReason.SIGNALING_LOST
            if await self.end(sid, reason):
                ended += 1
        return ended

    async def end_all(self, session_ids: Iterable[str], reason: EndReason) -> int:
        results = await asyncio.gather(*(self.end(sid, reason) for sid in session_ids))
        return sum(results)

    async def camera_gone(self, device_id: str) -> int:
        return await self.end_all(
            await self._sessions.of_camera(device_id), EndReason.CAMERA_OFFLINE
        )

    async def grant_revoked(self, grant_id: str) -> int:
        return await self.end_all(await self._sessions.of_grant(grant_id), EndReason.REVOKED)

    async def principal_revoked(self, is_camera: bool, tenant_id: str, name: str) -> int:
        ids = (
            await self._sessions.of_camera(name)
            if is_camera
            else await self._sessions.of_app(Viewer(tenant_id, name))
        )
        return await self.end_all(ids, EndReason.REVOKED)

    async def stop(self) -> None:
        for handles in self._timers.values():
            for handle in handles:
                handle.cancel()
        self._timers.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _is_side(session: Session, side: Side, tenant_id: str, name: str) -> bool:
    if side is Side.APP:
        return session.viewer == Viewer(tenant_id, name)
    return session.device_id == name and session.owner_tenant_id == tenant_id
