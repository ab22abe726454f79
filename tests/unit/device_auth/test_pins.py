"""Camera PINs against guessing: backoff after 3 wrong tries, lockout after 10, per camera."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from privacam_core.identity import PrincipalKind
from services.device_auth.domain.events import PinLockedOut
from services.device_auth.domain.pins import PinCheck, PinCheckResult, PinPolicy
from services.device_auth.domain.records import Subject
from tests.unit.device_auth.conftest import World

PIN = "7391"
SECOND = timedelta(seconds=1)


async def _camera_with_pin(world: World) -> tuple[str, str]:
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    await world.service.set_pin(owner.tenant_id, device, PIN)
    world.events.clear()
    return owner.tenant_id, device


def _viewer(number: int) -> Subject:
    return Subject(PrincipalKind.APP, f"tenant-{number}", f"install-{number}")


def test_the_policy_is_free_tries_then_doubling_backoff_then_a_doubling_lockout() -> None:
    policy = PinPolicy()
    waits = [policy.wait_after(failures) for failures in range(0, 17)]
    assert waits[:3] == [timedelta(0)] * 3
    assert waits[3:10] == [SECOND * s for s in (1, 2, 4, 8, 16, 32, 60)]
    hour = timedelta(hours=1)
    assert waits[10:16] == [hour, 2 * hour, 4 * hour, 8 * hour, 16 * hour, 24 * hour]
    assert waits[16] == 24 * hour
    assert policy.wait_after(10_000) == 24 * hour
    assert not policy.locks(9)
    assert policy.locks(10)


def test_a_policy_must_leave_some_tries_before_the_lockout() -> None:
    with pytest.raises(ValueError, match="free_tries"):
        PinPolicy(free_tries=10, lockout_after=10)


async def test_the_right_pin_is_ok_and_a_camera_without_pin_has_nothing_to_check(
    world: World,
) -> None:
    tenant, device = await _camera_with_pin(world)
    assert (await world.service.check_pin(device, PIN)).result is PinCheckResult.OK
    other = (await world.pair_camera(tenant, serial="SN-2")).principal_id
    assert (await world.service.check_pin(other, PIN)).result is PinCheckResult.NOT_SET


async def test_three_wrong_tries_are_free_then_each_brings_a_longer_wait(world: World) -> None:
    _, device = await _camera_with_pin(world)
    for tries in (1, 2):
        check = await world.service.check_pin(device, "0000")
        assert (check.result, check.failures, check.retry_after) == (
            PinCheckResult.WRONG,
            tries,
            timedelta(0),
        )
    third = await world.service.check_pin(device, "0000")
    assert (third.result, third.retry_after) == (PinCheckResult.WRONG, SECOND)

    refused = await world.service.check_pin(device, PIN)  # even the right PIN waits
    assert (refused.result, refused.retry_after) == (PinCheckResult.LOCKED_OUT, SECOND)
    assert not refused.locked

    world.clock.advance(SECOND)
    fourth = await world.service.check_pin(device, "0000")
    assert (fourth.result, fourth.retry_after) == (PinCheckResult.WRONG, 2 * SECOND)


async def test_anything_but_four_digits_is_a_counted_wrong_try(world: World) -> None:
    _, device = await _camera_with_pin(world)
    for junk in ("", "73912", "abcd", PIN + "\n"):
        check = await world.service.check_pin(device, junk)
        assert check.result is PinCheckResult.WRONG
        world.clock.advance(check.retry_after)
    assert (await world.attempts.get(device)).failures == 4


async def test_a_correct_pin_resets_the_count(world: World) -> None:
    _, device = await _camera_with_pin(world)
    for _ in range(2):
        await world.service.check_pin(device, "0000")
    assert (await world.service.check_pin(device, PIN)).result is PinCheckResult.OK
    assert (await world.attempts.get(device)).failures == 0
    for _ in range(2):
        check = await world.service.check_pin(device, "0000")
    assert check.retry_after == timedelta(0)


async def test_the_tenth_wrong_try_in_a_row_locks_for_an_hour_and_tells_the_owner(
    world: World,
) -> None:
    tenant, device = await _camera_with_pin(world)
    checks: list[PinCheck] = []
    for attempt in range(10):
        world.clock.advance(checks[-1].retry_after if checks else timedelta(0))
        checks.append(await world.service.check_pin(device, f"{attempt:04}", _viewer(attempt)))
    last = checks[-1]
    assert (last.result, last.failures, last.locked) == (PinCheckResult.WRONG, 10, True)
    assert last.retry_after == timedelta(hours=1)
    (event,) = world.events.published
    assert event.tenant_id == tenant
    assert event.body == PinLockedOut(device, 10, timedelta(hours=1), _viewer(9))

    world.clock.advance(timedelta(minutes=59))
    locked = await world.service.check_pin(device, PIN)
    assert (locked.result, locked.locked) == (PinCheckResult.LOCKED_OUT, True)


async def test_after_a_lockout_ends_each_wrong_try_locks_again_for_twice_as_long(
    world: World,
) -> None:
    _, device = await _camera_with_pin(world)
    for attempt in range(10):
        world.clock.advance((await world.service.check_pin(device, f"{attempt:04}")).retry_after)
    again = await world.service.check_pin(device, "0010")
    assert (again.failures, again.retry_after) == (11, timedelta(hours=2))
    assert len(world.events.of(PinLockedOut)) == 2
    world.clock.advance(again.retry_after)
    assert (await world.service.check_pin(device, PIN)).result is PinCheckResult.OK


async def test_attempts_are_counted_per_camera_whoever_makes_them(world: World) -> None:
    tenant, device = await _camera_with_pin(world)
    other = (await world.pair_camera(tenant, serial="SN-2")).principal_id
    await world.service.set_pin(tenant, other, PIN)
    for number in range(3):
        await world.service.check_pin(device, "0000", _viewer(number))
    refused = await world.service.check_pin(device, "1111", _viewer(99))
    assert refused.result is PinCheckResult.LOCKED_OUT
    assert (await world.service.check_pin(other, PIN)).result is PinCheckResult.OK


async def test_guesses_fired_all_at_once_get_the_same_three_checks_as_one_by_one(
    world: World,
) -> None:
    _, device = await _camera_with_pin(world)
    results = await asyncio.gather(
        *(world.service.check_pin(device, f"{guess:04}") for guess in range(200))
    )
    assert world.pin_hasher.verifications == 3
    assert sum(r.result is PinCheckResult.WRONG for r in results) == 3
    refused = [r for r in results if r.result is not PinCheckResult.WRONG]
    assert len(refused) == 197
    assert all(r.result is PinCheckResult.LOCKED_OUT for r in refused)


async def test_a_10000_guess_brute_force_gets_ten_checks_and_never_finds_the_pin(
    world: World,
) -> None:
    """The attacker walks every PIN from 0000, waits out any backoff of up to a minute,
    rotates its identity each guess, and is stopped by the lockout."""
    _, device = await _camera_with_pin(world)
    found = False
    waited = timedelta(0)
    for guess in range(10_000):
        check = await world.service.check_pin(device, f"{guess:04}", _viewer(guess))
        found = found or check.result is PinCheckResult.OK
        if check.retry_after <= timedelta(minutes=1):
            world.clock.advance(check.retry_after)
            waited += check.retry_after
    assert not found
    assert world.pin_hasher.verifications == 10
    assert waited == SECOND * (1 + 2 + 4 + 8 + 16 + 32 + 60)
    (lockout,) = world.events.of(PinLockedOut)
    assert lockout.failed_attempts == 10
