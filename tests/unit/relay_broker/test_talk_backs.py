"""Talk-back's ends across replicas, over in-memory ports (no servers): whatever replica
dies, a talk-back's end is logged with its duration, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.relay_broker.domain.live_views import LiveViews
from services.relay_broker.domain.model import (
    Access,
    Role,
    Side,
    Talk,
    TalkEndReason,
    Viewer,
)
from services.relay_broker.domain.talk_back import TalkBacks
from tests.unit.relay_broker.test_live_views import OWNER, World, replica, world


class TalkPolicy:
    async def authorize_talk(self, device_id: str, viewer: Viewer, pin: str) -> Access:
        return Access("tenant-a", True, "")


@dataclass
class TalkLog:
    entries: list[tuple[str, str, timedelta | None]] = field(default_factory=list)

    async def talk_started(self, talk: Talk) -> bytes:
        self.entries.append(("start", talk.session.session_id, None))
        return b"receipt"

    async def talk_ended(self, talk: Talk, at: datetime) -> None:
        self.entries.append(("end", talk.session.session_id, at - talk.started_at))


@dataclass
class Talks:
    """The TalkStore port, shared by the replicas."""

    running: dict[str, Talk] = field(default_factory=dict)

    async def reserve(self, talk: Talk, ttl: timedelta) -> str | None:
        running = self.running.get(talk.session.device_id)
        if running is not None:
            return running.session.session_id
        self.running[talk.session.device_id] = talk
        return None

    async def end(self, device_id: str, session_id: str) -> Talk | None:
        talk = self.running.get(device_id)
        if talk is None or talk.session.session_id != session_id:
            return None
        return self.running.pop(device_id)

    async def due(self, before: datetime, limit: int) -> list[tuple[str, str]]:
        return [
            (d, t.session.session_id) for d, t in self.running.items() if t.expires_at <= before
        ][:limit]


@dataclass
class TalkLinks:
    said: list[tuple[str, str]] = field(default_factory=list)

    async def talk_requested(self, talk: Talk, receipt: bytes) -> None:
        self.said.append(("requested", talk.session.session_id))

    async def talk_ended(self, talk: Talk, reason: TalkEndReason) -> None:
        self.said.append((reason.value, talk.session.session_id))

    async def talking(
        self, talk: Talk, at: datetime, reason: TalkEndReason | None, duration: timedelta
    ) -> None: ...


class TalkMetrics:
    def talk_started(self, role: Role) -> None: ...
    def talk_ended(self, reason: TalkEndReason, seconds: float) -> None: ...
    def talk_refused(self, reason: str) -> None: ...


@dataclass
class Replica:
    views: LiveViews
    talks: TalkBacks


def replicas(w: World, log: TalkLog, store: Talks, links: TalkLinks) -> tuple[Replica, Replica]:
    """Two replicas over one shared store, log and clock (w's)."""
    made = []
    for _ in range(2):
        views = replica(w)
        talks = TalkBacks(
            views=views,
            policy=TalkPolicy(),
            access_log=log,
            store=store,
            links=links,
            metrics=TalkMetrics(),
            clock=w.clock,
            max_talk=timedelta(minutes=5),
        )
        made.append(Replica(views, talks))
    return made[0], made[1]


async def _talking(replica: Replica) -> str:
    sid = (await replica.views.start(OWNER, "cam-1", "")).session.session_id
    for side, name in ((Side.APP, "app-1"), (Side.CAMERA, "cam-1")):
        session = await replica.views.session_for(sid, side, "tenant-a", name)
        await replica.views.join(session, side)
    await replica.talks.start(OWNER, sid, "")
    return sid


async def test_a_talk_back_whose_timer_died_is_ended_by_another_replica() -> None:
    w, log, store, links = world(), TalkLog(), Talks(), TalkLinks()
    dead, alive = replicas(w, log, store, links)
    sid = await _talking(dead)
    await dead.talks.stop()  # its timer is gone; the session goes on (signaling elsewhere)
    w.clock.advance(timedelta(minutes=5))
    assert await alive.talks.sweep(grace=timedelta(seconds=6)) == 0  # the owner's timer's turn
    w.clock.advance(timedelta(seconds=6))
    assert await alive.talks.sweep(grace=timedelta(seconds=6)) == 1
    assert log.entries == [("start", sid, None), ("end", sid, timedelta(minutes=5, seconds=6))]
    assert ("max_duration", sid) in links.said
    assert await alive.talks.sweep(grace=timedelta(seconds=6)) == 0  # once


async def test_a_talk_back_ends_logged_with_its_session_when_the_replica_holding_it_dies() -> None:
    w, log, store, links = world(), TalkLog(), Talks(), TalkLinks()
    dead, alive = replicas(w, log, store, links)
    sid = await _talking(dead)
    assert await dead.views.renew_leases() == 2  # its last heartbeat
    await dead.talks.stop()
    await dead.views.stop()  # timers gone, and no more lease renewals
    w.clock.advance(timedelta(seconds=7))
    assert await alive.views.sweep() == 1
    assert log.entries == [("start", sid, None), ("end", sid, timedelta(seconds=7))]
    assert ("session_ended", sid) in links.said
    assert ("closed", sid, "signaling_lost") in w.links.said
    assert store.running == {}
