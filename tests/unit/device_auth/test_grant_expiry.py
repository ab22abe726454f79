"""Grant expiry: a sweep revokes grants past their expires_at and announces each one,
harmlessly on every replica at once; and the component that runs it every minute."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import pytest

from services.device_auth.domain.events import GrantEndReason, GrantRevoked
from services.device_auth.domain.grant_expiry import GrantExpirySweeper
from services.device_auth.domain.records import Grant, GrantScope
from services.device_auth.domain.service import DeviceAuth, DeviceAuthConfig, GrantDirection
from tests.unit.device_auth.conftest import START, World
from tests.unit.device_auth.fakes import MemoryGrants, RecordedEvents

LIVE = GrantScope.LIVE


async def _share(world: World, expiries: list[datetime | None]) -> tuple[str, str, list[Grant]]:
    """(owner, guest, grants): alice's camera shared with one account per expiry."""
    owner = (await world.register("alice")).tenant_id
    device = (await world.pair_camera(owner)).principal_id
    grants = []
    guest = ""
    for n, expires_at in enumerate(expiries):
        guest = (await world.register(f"guest{n}")).tenant_id
        view = await world.service.create_grant(owner, device, f"guest{n}", [LIVE], expires_at)
        grants.append(view.grant)
    world.events.clear()
    return owner, guest, grants


def _replica(world: World, grants: MemoryGrants, events: RecordedEvents) -> DeviceAuth:
    """Another replica over the same stores, except its own (possibly lagging) grants."""
    return DeviceAuth(
        accounts=world.accounts,
        installs=world.installs,
        cameras=world.cameras,
        grants=grants,
        claim_tokens=world.tokens,
        pin_attempts=world.attempts,
        password_attempts=world.passwords,
        events=events,
        issuer=world.issuer,
        clock=world.clock,
        password_hasher=world.password_hasher,
        config=world.config,
    )


async def test_an_expired_grant_is_revoked_and_announced_without_an_actor(world: World) -> None:
    hour = START + timedelta(hours=1)
    owner, _, (soon, later, forever) = await _share(world, [hour, hour + timedelta(hours=1), None])
    assert await world.service.expire_grants() == 0  # nothing expired yet
    assert not world.events.published

    world.clock.advance(timedelta(hours=1, seconds=30))
    assert await world.service.expire_grants() == 1
    (event,) = world.events.published
    assert event.body == GrantRevoked(
        soon.grant_id, soon.device_id, soon.grantee_tenant_id, GrantEndReason.EXPIRED
    )
    assert event.actor is None
    assert event.tenant_id == owner
    assert event.occurred_at == hour  # when it expired, not when the sweep saw it
    assert soon.grant_id not in world.grants.records
    assert {later.grant_id, forever.grant_id} <= world.grants.records.keys()

    world.clock.advance(timedelta(hours=1))
    assert await world.service.expire_grants() == 1
    assert world.events.of(GrantRevoked)[-1].grant_id == later.grant_id
    assert list(world.grants.records) == [forever.grant_id]
    given = await world.service.list_grants(owner, GrantDirection.GIVEN)
    assert [v.grant for v in given] == [forever]


async def test_sweeping_again_announces_nothing_more(world: World) -> None:
    await _share(world, [START + timedelta(minutes=5)])
    world.clock.advance(timedelta(minutes=5))  # expires_at itself counts as expired
    assert await world.service.expire_grants() == 1
    assert await world.service.expire_grants() == 0
    assert len(world.events.published) == 1


async def test_replicas_sweeping_at_once_announce_one_expiry_as_the_same_event(
    world: World,
) -> None:
    """Replica B has not yet seen A's delete: it announces the grant again, but with the
    same event id, time and content, which consumers take as the same event."""
    _, _, (grant,) = await _share(world, [START + timedelta(minutes=5)])
    lagging = MemoryGrants()
    lagging.records = dict(world.grants.records)
    b_events = RecordedEvents()
    replica_b = _replica(world, lagging, b_events)
    world.clock.advance(timedelta(minutes=6))

    assert await world.service.expire_grants() == 1
    assert await replica_b.expire_grants() == 1
    (a,) = world.events.published
    (b,) = b_events.published
    assert a == b  # event id included
    assert not lagging.records
    assert not world.grants.records

    # A replica that has seen the delete skips a grant its list still showed.
    class StaleList(MemoryGrants):
        async def list_expired(self, now: datetime, limit: int) -> list[Grant]:
            return [grant]

    c_events = RecordedEvents()
    assert await _replica(world, StaleList(), c_events).expire_grants() == 0
    assert not c_events.published


async def test_each_expiry_has_its_own_event_id(world: World) -> None:
    expiry = START + timedelta(minutes=1)
    await _share(world, [expiry, expiry])
    world.clock.advance(timedelta(minutes=1))
    assert await world.service.expire_grants() == 2
    first, second = world.events.published
    assert first.event_id != second.event_id


async def test_a_grant_revoked_by_its_owner_is_not_announced_again(world: World) -> None:
    owner, _, (grant,) = await _share(world, [START + timedelta(minutes=5)])
    await world.service.revoke_grant(owner, grant.grant_id)
    world.events.clear()
    world.clock.advance(timedelta(hours=1))
    assert await world.service.expire_grants() == 0
    assert not world.events.published


async def test_one_sweep_takes_at_most_a_batch_and_the_next_the_rest(world: World) -> None:
    small = World(world.clock, world.authority, config=DeviceAuthConfig(grant_expiry_batch=2))
    expiries = [START + timedelta(minutes=m) for m in (3, 1, 2)]
    _, _, grants = await _share(small, list(expiries))
    small.clock.advance(timedelta(minutes=10))
    assert await small.service.expire_grants() == 2
    assert await small.service.expire_grants() == 1
    by_time = sorted(grants, key=lambda g: g.expires_at or START)
    assert [e.grant_id for e in small.events.of(GrantRevoked)] == [g.grant_id for g in by_time]


def test_the_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="grant_expiry_batch"):
        DeviceAuthConfig(grant_expiry_batch=0)


# --- the component ---------------------------------------------------------------------


class ScriptedAuth:
    """Stands in for DeviceAuth: answers each sweep from a script (an int or an error)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def expire_grants(self) -> int:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, Exception):
            raise answer
        return answer


class StepSleep:
    """An asyncio.sleep that records each delay and returns at once; after `steps`
    delays it blocks until cancelled, so the loop runs a known number of sweeps."""

    def __init__(self, steps: int) -> None:
        self.delays: list[float] = []
        self._steps = steps
        self.idle = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) > self._steps:
            self.idle.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)


async def test_the_sweeper_sweeps_every_interval_and_survives_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = ScriptedAuth(2, RuntimeError("kafka is away"), 1)
    sleep = StepSleep(steps=3)
    sweeper = GrantExpirySweeper(
        auth, timedelta(seconds=60), sleep=sleep, first_delay=timedelta(seconds=7)
    )
    with caplog.at_level(logging.INFO, logger="privacam.device_auth.grant_expiry"):
        await sweeper.start()
        await sweeper.start()  # starting twice runs one loop
        await asyncio.wait_for(sleep.idle.wait(), timeout=5)
        await sweeper.stop()
    assert sleep.delays == [7.0, 60.0, 60.0, 60.0]
    assert auth.calls == 3
    assert sweeper.sweeps == 2  # the failed one is not counted
    assert "grant expiry sweep failed" in caplog.text
    await sweeper.stop()  # stopping twice is harmless


async def test_the_first_sweep_comes_after_a_random_part_of_the_interval() -> None:
    delays = set()
    for _ in range(20):
        sleep = StepSleep(steps=0)
        sweeper = GrantExpirySweeper(ScriptedAuth(), timedelta(seconds=60), sleep=sleep)
        await sweeper.start()
        await asyncio.wait_for(sleep.idle.wait(), timeout=5)
        await sweeper.stop()
        (first,) = sleep.delays
        assert 0 <= first < 60
        delays.add(first)
    assert len(delays) > 1


async def test_the_sweeper_runs_the_real_domain(world: World) -> None:
    await _share(world, [START + timedelta(minutes=1)])
    world.clock.advance(timedelta(minutes=2))
    sweeper = GrantExpirySweeper(world.service)
    assert await sweeper.sweep() == 1
    assert await sweeper.sweep() == 0
    assert sweeper.sweeps == 2


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        GrantExpirySweeper(ScriptedAuth(), timedelta(0))
