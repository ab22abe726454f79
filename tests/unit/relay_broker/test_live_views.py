"""The life of a live-view session, over in-memory ports (no servers)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from services.common.clock import FakeClock
from services.common.errors import NotFound, Unavailable
from services.relay_broker.domain.errors import (
    CameraOffline,
    SessionConflict,
    SessionNotFound,
    TooManySessions,
)
from services.relay_broker.domain.live_views import Limits, LiveViews
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

OWNER = Viewer("tenant-a", "app-1")
GUEST = Viewer("tenant-b", "app-2")


class Policy:
    async def authorize(self, device_id: str, viewer: Viewer, pin: str) -> Access:
        if device_id != "cam-1" or viewer.tenant_id not in ("tenant-a", "tenant-b"):
            raise NotFound("no such camera")
        if viewer.tenant_id == "tenant-a":
            return Access("tenant-a", True, "")
        return Access("tenant-a", False, "grant-1")


@dataclass
class Log:
    down: bool = False
    entries: list[tuple[str, str]] = field(default_factory=list)

    async def session_started(self, session: Session) -> bytes:
        if self.down:
            raise Unavailable("the access log is unavailable")
        self.entries.append(("start", session.session_id))
        return f"receipt of {session.session_id}".encode()

    async def session_ended(self, session: Session, at: datetime) -> None:
        self.entries.append(("end", session.session_id))


@dataclass
class Sessions:
    rows: dict[str, tuple[Session, set[Side], EndReason | None]] = field(default_factory=dict)
    leases: dict[tuple[str, Side], datetime] = field(default_factory=dict)

    def _open(self, match: object) -> list[str]:
        return sorted(
            sid
            for sid, (s, _, ended) in self.rows.items()
            if ended is None and match(s)  # type: ignore[operator]
        )

    async def create(
        self,
        session: Session,
        camera_limit: int,
        app_limit: int,
        ttl: timedelta,
        lease_until: datetime,
    ) -> None:
        if len(self._open(lambda s: s.device_id == session.device_id)) >= camera_limit:
            raise TooManySessions("camera")
        if len(self._open(lambda s: s.viewer == session.viewer)) >= app_limit:
            raise TooManySessions("app")
        self.rows[session.session_id] = (session, set(), None)
        for side in Side:
            self.leases[(session.session_id, side)] = lease_until

    async def discard(self, session: Session) -> None:
        del self.rows[session.session_id]

    async def get(self, session_id: str) -> tuple[Session, bool] | None:
        row = self.rows.get(session_id)
        return None if row is None else (row[0], row[2] is not None)

    async def join(self, session_id: str, side: Side, ttl: timedelta) -> int | None:
        _session, sides, _ended = self.rows[session_id]
        if side in sides:
            return None
        sides.add(side)
        return len(sides)

    async def joined(self, session_id: str) -> int:
        return len(self.rows[session_id][1])

    async def end(self, session_id: str, reason: EndReason) -> tuple[Session, int] | None:
        row = self.rows.get(session_id)
        if row is None or row[2] is not None:
            return None
        self.rows[session_id] = (row[0], row[1], reason)
        await self.forget(session_id)
        return row[0], 1234

    async def renew(self, leases: Sequence[tuple[str, Side, datetime]]) -> None:
        for sid, side, until in leases:
            if (sid, side) in self.leases:
                self.leases[(sid, side)] = until

    async def lapsed(self, now: datetime, limit: int) -> list[str]:
        return list(dict.fromkeys(sid for (sid, _), at in self.leases.items() if at <= now))

    async def forget(self, session_id: str) -> None:
        for side in Side:
            self.leases.pop((session_id, side), None)

    async def of_camera(self, device_id: str) -> list[str]:
        return self._open(lambda s: s.device_id == device_id)

    async def of_app(self, viewer: Viewer) -> list[str]:
        return self._open(lambda s: s.viewer == viewer)

    async def of_grant(self, grant_id: str) -> list[str]:
        return self._open(lambda s: s.grant_id == grant_id)


@dataclass
class Cameras:
    online: bool = True

    async def get(self, device_ids: list[str]) -> list[Presence]:
        return [Presence(d, self.online, None, 2) for d in device_ids]


@dataclass
class Links:
    said: list[tuple[str, ...]] = field(default_factory=list)

    async def session_requested(
        self, session: Session, camera_turn: TurnGrant, receipt: bytes
    ) -> None:
        assert receipt == f"receipt of {session.session_id}".encode()  # the log's, passed on
        self.said.append(("requested", session.session_id, camera_turn.username))

    async def peer_joined(self, session_id: str) -> None:
        self.said.append(("joined", session_id))

    async def session_closed(self, session: Session, reason: EndReason) -> None:
        self.said.append(("closed", session.session_id, reason.value))

    async def watching(self, session: Session, at: datetime, reason: EndReason | None) -> None:
        for tenant in session.told:
            self.said.append(("notice", tenant, reason.value if reason else "started"))


@dataclass
class Events:
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def session_started(self, session: Session) -> None:
        self.seen.append(("started", session.session_id, 0))

    def session_ended(
        self, session: Session, reason: EndReason, at: datetime, relayed: int
    ) -> None:
        self.seen.append((reason.value, session.session_id, relayed))


class Metrics:
    def started(self, role: Role) -> None: ...
    def ended(self, reason: EndReason, seconds: float) -> None: ...
    def refused(self, reason: str) -> None: ...
    def credentials_issued(self, count: int) -> None: ...


@dataclass
class World:
    views: LiveViews
    log: Log
    sessions: Sessions
    cameras: Cameras
    links: Links
    events: Events
    clock: FakeClock


def world(idle: float = 30, lease: float = 6) -> World:
    log, sessions, cameras, links, events = Log(), Sessions(), Cameras(), Links(), Events()
    clock = FakeClock()
    views = LiveViews(
        policy=Policy(),
        access_log=log,
        sessions=sessions,
        presence=cameras,
        links=links,
        events=events,
        metrics=Metrics(),
        clock=clock,
        limits=Limits(
            timedelta(seconds=idle),
            timedelta(hours=1),
            600,
            per_camera=4,
            per_app=1,
            lease=timedelta(seconds=lease),
        ),
        turn_secret=b"k" * 32,
        turn_uris=("turn:127.0.0.1:3478",),
    )
    return World(views, log, sessions, cameras, links, events, clock)


def replica(w: World) -> LiveViews:
    """Another broker replica over w's shared store, log, presence, links and clock."""
    return LiveViews(
        policy=Policy(),
        access_log=w.log,
        sessions=w.sessions,
        presence=w.cameras,
        links=w.links,
        events=w.events,
        metrics=Metrics(),
        clock=w.clock,
        limits=w.views.limits,
        turn_secret=b"k" * 32,
        turn_uris=("turn:127.0.0.1:3478",),
    )


async def test_a_session_is_logged_before_any_credential_and_the_household_is_told() -> None:
    w = world()
    started = await w.views.start(OWNER, "cam-1", "")
    sid = started.session.session_id
    assert w.log.entries == [("start", sid)]
    assert started.turn.username.endswith(f":{sid}.app")
    assert w.links.said[0] == ("requested", sid, started.turn.username.replace(".app", ".camera"))
    assert ("notice", "tenant-a", "started") in w.links.said
    # The camera is shared with tenant-b, which is not told when the owner watches.
    assert not [said for said in w.links.said if said[:2] == ("notice", "tenant-b")]
    assert started.session.role is Role.OWNER
    await w.views.stop()


async def test_a_members_view_is_told_to_the_owner_and_that_member_only() -> None:
    w = world()
    await w.views.start(GUEST, "cam-1", "")
    told = {said[1] for said in w.links.said if said[0] == "notice"}
    assert told == {"tenant-a", "tenant-b"}  # the owner's household and the viewer's
    await w.views.stop()


async def test_no_log_no_session() -> None:
    w = world()
    w.log.down = True
    with pytest.raises(Unavailable):
        await w.views.start(OWNER, "cam-1", "")
    assert w.sessions.rows == {}  # nothing half-made
    assert w.links.said == []
    assert w.events.seen == []


async def test_refusals() -> None:
    w = world()
    with pytest.raises(NotFound):
        await w.views.start(Viewer("tenant-z", "app-9"), "cam-1", "")
    w.cameras.online = False
    with pytest.raises(CameraOffline, match="offline"):
        await w.views.start(OWNER, "cam-1", "")
    w.cameras.online = True
    await w.views.start(OWNER, "cam-1", "")
    with pytest.raises(TooManySessions, match="app"):  # per_app=1
        await w.views.start(OWNER, "cam-1", "")
    await w.views.start(GUEST, "cam-1", "")  # the camera announced 2
    with pytest.raises(TooManySessions, match="camera"):
        await w.views.start(Viewer("tenant-b", "app-3"), "cam-1", "")
    await w.views.stop()


async def test_joining_and_ending() -> None:
    w = world()
    sid = (await w.views.start(GUEST, "cam-1", "")).session.session_id
    with pytest.raises(SessionNotFound):  # another app of another household
        await w.views.session_for(sid, Side.APP, "tenant-a", "app-1")
    session = await w.views.session_for(sid, Side.APP, "tenant-b", "app-2")
    camera = await w.views.session_for(sid, Side.CAMERA, "tenant-a", "cam-1")
    await w.views.join(session, Side.APP)
    with pytest.raises(SessionConflict):
        await w.views.join(session, Side.APP)
    await w.views.join(camera, Side.CAMERA)
    assert ("joined", sid) in w.links.said
    # The owner may end a guest's session on their camera; a stranger may not.
    with pytest.raises(SessionNotFound):
        await w.views.end_by(sid, True, "tenant-z", "app-9", EndReason.VIEWER_ENDED)
    await w.views.end_by(sid, True, "tenant-a", "app-1", EndReason.VIEWER_ENDED)
    assert ("viewer_ended", sid, 1234) in w.events.seen
    assert w.log.entries == [("start", sid), ("end", sid)]
    assert await w.views.end(sid, EndReason.FAILED) is False  # once only
    with pytest.raises(SessionNotFound, match="ended"):
        await w.views.session_for(sid, Side.APP, "tenant-b", "app-2")
    await w.views.stop()


async def test_revocations_and_camera_loss_end_sessions() -> None:
    w = world()
    guest = (await w.views.start(GUEST, "cam-1", "")).session.session_id
    owner = (await w.views.start(OWNER, "cam-1", "")).session.session_id
    assert await w.views.grant_revoked("grant-1") == 1
    assert ("closed", guest, "revoked") in w.links.said
    assert await w.views.camera_gone("cam-1") == 1
    assert ("closed", owner, "camera_offline") in w.links.said
    await w.views.stop()


async def test_a_session_nobody_joins_ends_after_the_idle_timeout() -> None:
    w = world(idle=0.05)
    sid = (await w.views.start(OWNER, "cam-1", "")).session.session_id
    await asyncio.sleep(0.2)
    assert ("closed", sid, "idle_timeout") in w.links.said
    await w.views.stop()


async def test_each_side_renews_its_turn_credentials_never_past_the_session() -> None:
    w = world()
    started = await w.views.start(GUEST, "cam-1", "")
    sid = started.session.session_id
    w.clock.advance(timedelta(minutes=9))
    app = await w.views.renew_turn(sid, Side.APP, "tenant-b", "app-2")
    assert app.username.endswith(f":{sid}.app")
    assert app.username != started.turn.username
    assert app.expires_at == started.turn.expires_at + timedelta(minutes=9)
    camera = await w.views.renew_turn(sid, Side.CAMERA, "tenant-a", "cam-1")
    assert camera.username.endswith(f":{sid}.camera")
    # Near the session's end the credentials end with it (limits: one hour, TTL 600 s).
    w.clock.advance(timedelta(minutes=46))
    late = await w.views.renew_turn(sid, Side.APP, "tenant-b", "app-2")
    assert late.expires_at == started.session.expires_at.replace(microsecond=0)
    assert late.ttl_seconds == 300
    assert w.log.entries == [("start", sid)]  # a renewal is not a new access
    # Only the session's own sides; the owner's other app is not one of them.
    for side, tenant, name in (
        (Side.APP, "tenant-a", "app-1"),
        (Side.APP, "tenant-z", "app-9"),
        (Side.CAMERA, "tenant-a", "cam-2"),
    ):
        with pytest.raises(SessionNotFound):
            await w.views.renew_turn(sid, side, tenant, name)
    await w.views.end(sid, EndReason.VIEWER_ENDED)
    with pytest.raises(SessionNotFound, match="ended"):
        await w.views.renew_turn(sid, Side.APP, "tenant-b", "app-2")
    await w.views.stop()


async def test_a_side_signaling_here_renews_without_reading_the_store() -> None:
    w = world()
    sid = (await w.views.start(GUEST, "cam-1", "")).session.session_id
    session = await w.views.session_for(sid, Side.APP, "tenant-b", "app-2")
    await w.views.join(session, Side.APP)
    reads = 0
    read = w.sessions.get

    async def counted(session_id: str) -> tuple[Session, bool] | None:
        nonlocal reads
        reads += 1
        return await read(session_id)

    w.sessions.get = counted  # type: ignore[method-assign]
    await w.views.renew_turn(sid, Side.APP, "tenant-b", "app-2")
    assert reads == 0
    with pytest.raises(SessionNotFound):  # the same id from another app: checked, not cached
        await w.views.renew_turn(sid, Side.APP, "tenant-a", "app-1")
    await w.views.renew_turn(sid, Side.CAMERA, "tenant-a", "cam-1")  # not joined: the store
    assert reads == 2
    w.views.left(sid, Side.APP)
    await w.views.renew_turn(sid, Side.APP, "tenant-b", "app-2")
    assert reads == 3
    await w.views.join(session, Side.CAMERA)
    await w.views.end(sid, EndReason.VIEWER_ENDED)  # forgets both sides at once
    with pytest.raises(SessionNotFound, match="ended"):
        await w.views.renew_turn(sid, Side.CAMERA, "tenant-a", "cam-1")
    await w.views.stop()


async def test_a_session_whose_replica_died_ends_when_its_lease_runs_out() -> None:
    """Two replicas share the store; the one holding both sides' signaling stops without
    ending anything. The other's sweep ends the session, logged, once."""
    here = world()
    there = replica(here)
    sid = (await there.start(OWNER, "cam-1", "")).session.session_id
    for side, tenant, name in ((Side.APP, "tenant-a", "app-1"), (Side.CAMERA, "tenant-a", "cam-1")):
        await there.join(await there.session_for(sid, side, tenant, name), side)
    # While the replica lives it renews both sides each heartbeat: nothing lapses.
    for _ in range(5):
        here.clock.advance(timedelta(seconds=2))
        assert await there.renew_leases() == 2
        assert await here.views.sweep() == 0
    # It dies (no renewal, no timers): three heartbeats later the survivor ends it.
    await there.stop()
    here.clock.advance(timedelta(seconds=5))
    assert await here.views.sweep() == 0
    here.clock.advance(timedelta(seconds=2))
    assert await here.views.sweep() == 1
    assert here.log.entries == [("start", sid), ("end", sid)]
    assert ("closed", sid, "signaling_lost") in here.links.said
    assert ("signaling_lost", sid, 1234) in here.events.seen
    assert here.sessions.leases == {}
    assert await here.views.sweep() == 0  # once
    await here.views.stop()


async def test_leases_end_what_a_dead_replicas_timers_would_have() -> None:
    w = world(idle=30, lease=6)
    # Nobody joins and the idle timer died with its replica: idle timeout, after the lease.
    idle = (await w.views.start(OWNER, "cam-1", "")).session
    await w.views.stop()  # its timers gone, as in a crash
    w.clock.advance(timedelta(seconds=35))
    assert await w.views.sweep() == 0
    w.clock.advance(timedelta(seconds=1))
    assert await w.views.sweep() == 1
    assert ("closed", idle.session_id, "idle_timeout") in w.links.said
    # Renewed leases never reach past the session's end: maximum duration holds too.
    long = (await w.views.start(OWNER, "cam-1", "")).session
    for side, name in ((Side.APP, "app-1"), (Side.CAMERA, "cam-1")):
        await w.views.join(await w.views.session_for(long.session_id, side, "tenant-a", name), side)
    await w.views.stop()
    w.clock.advance(long.expires_at - w.clock.now() - timedelta(seconds=1))
    await w.views.renew_leases()
    assert await w.views.sweep() == 0
    w.clock.advance(timedelta(seconds=1))
    await w.views.renew_leases()
    assert await w.views.sweep() == 1
    assert ("closed", long.session_id, "max_duration") in w.links.said
    # A lease whose session record is gone (expired, or a forged lease) is dropped.
    w.sessions.leases[("gone", Side.APP)] = w.clock.now()
    assert await w.views.sweep() == 0
    assert w.sessions.leases == {}
