"""The per-account limit on password guessing: SignIn, VerifyPassword, ChangePassword and
ClearPin with the password share one budget of 5 wrong passwords per 15 minutes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from services.device_auth.domain.errors import BadCredentials, InvalidInput, TooManyAttempts
from services.device_auth.domain.password_attempts import (
    PasswordPolicy,
    login_key,
    tenant_key,
)
from services.device_auth.domain.service import DeviceAuthConfig
from tests.unit.device_auth.conftest import PASSWORD, World, make_csr

WRONG = "not the password at all"
EXHAUSTED = r"too many wrong passwords; try again in \d+ s"


async def _outcome(attempt: Awaitable[object]) -> str:
    """What a caller learns from one try: 'ok', or the error's class and message."""
    try:
        await attempt
    except (BadCredentials, TooManyAttempts) as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


async def _sign_in(world: World, login: str, password: str) -> str:
    return await _outcome(world.service.sign_in(login, password, make_csr()))


async def test_the_sixth_wrong_sign_in_is_refused_unchecked_even_with_the_right_password(
    world: World,
) -> None:
    await world.register("alice")
    world.password_hasher.verifications = 0
    for _ in range(5):
        with pytest.raises(BadCredentials):
            await world.service.sign_in("alice", WRONG, make_csr())
    assert world.password_hasher.verifications == 5
    with pytest.raises(TooManyAttempts, match=EXHAUSTED) as refused:
        await world.service.sign_in("alice", PASSWORD, make_csr())
    assert str(refused.value) == "too many wrong passwords; try again in 900 s"
    assert refused.value.retry_after == timedelta(minutes=15)
    assert world.password_hasher.verifications == 5  # refused without a check


async def test_the_wait_counts_down_and_the_window_ending_restores_the_budget(
    world: World,
) -> None:
    await world.register("alice")
    for _ in range(5):
        await _sign_in(world, "alice", WRONG)
    world.clock.advance(timedelta(minutes=10))
    with pytest.raises(TooManyAttempts, match="try again in 300 s"):
        await world.service.sign_in("alice", PASSWORD, make_csr())
    world.clock.advance(timedelta(minutes=5))
    await world.service.sign_in("alice", PASSWORD, make_csr())


async def test_a_correct_password_resets_the_count(world: World) -> None:
    enrollment = await world.register("alice")
    for _ in range(4):
        await _sign_in(world, "alice", WRONG)
    await world.service.sign_in("alice", PASSWORD, make_csr())
    assert world.passwords.tries(tenant_key(enrollment.tenant_id)) == 0
    for _ in range(5):  # a whole new budget
        assert (await _sign_in(world, "alice", WRONG)).startswith("BadCredentials")
    assert (await _sign_in(world, "alice", WRONG)).startswith("TooManyAttempts")


async def test_an_unknown_login_gets_the_same_answers_after_the_same_work(world: World) -> None:
    await world.register("alice")
    world.password_hasher.verifications = 0
    known = [await _sign_in(world, "alice", WRONG) for _ in range(7)]
    checked_known = world.password_hasher.verifications
    world.password_hasher.verifications = 0
    unknown = [await _sign_in(world, "mallory", WRONG) for _ in range(7)]
    assert unknown == known
    assert known[4] == "BadCredentials: login or password is wrong"
    assert known[5] == "TooManyAttempts: too many wrong passwords; try again in 900 s"
    assert world.password_hasher.verifications == checked_known == 5
    # The unknown login is counted under its hash: no login in clear in any counter key.
    assert login_key("mallory") in world.passwords.windows
    assert not any("mallory" in key or "alice" in key for key in world.passwords.windows)


async def test_every_password_check_of_the_account_shares_one_budget(world: World) -> None:
    owner = await world.register("alice")
    tenant = owner.tenant_id
    device = (await world.pair_camera(tenant)).principal_id
    await world.service.set_pin(tenant, device, "2468")
    with pytest.raises(BadCredentials):
        await world.service.sign_in("alice", WRONG, make_csr())
    assert not await world.service.verify_password(tenant, WRONG)
    with pytest.raises(BadCredentials):
        await world.service.change_password(tenant, WRONG, "a brand new password")
    with pytest.raises(BadCredentials):
        await world.service.clear_pin(tenant, device, password=WRONG)
    assert not await world.service.verify_password(tenant, WRONG)
    assert world.passwords.tries(tenant_key(tenant)) == 5

    refusals: list[Callable[[], Awaitable[object]]] = [
        lambda: world.service.sign_in("alice", PASSWORD, make_csr()),
        lambda: world.service.verify_password(tenant, PASSWORD),
        lambda: world.service.change_password(tenant, PASSWORD, "a brand new password"),
        lambda: world.service.clear_pin(tenant, device, password=PASSWORD),
    ]
    for refused in refusals:
        with pytest.raises(TooManyAttempts, match=EXHAUSTED):
            await refused()
    camera = world.cameras.records[device]
    assert camera.pin_hash is not None  # nothing was changed
    world.clock.advance(timedelta(minutes=15))
    assert await world.service.verify_password(tenant, PASSWORD)


async def test_a_stolen_app_certificate_cannot_guess_through_change_password(
    world: World,
) -> None:
    tenant = (await world.register("alice")).tenant_id
    answers = [
        await _outcome(world.service.change_password(tenant, f"guess {n}", "new password 123"))
        for n in range(8)
    ]
    assert answers[:5] == ["BadCredentials: the current password is wrong"] * 5
    assert all(a.startswith("TooManyAttempts") for a in answers[5:])
    # ... nor then sign in elsewhere with the right password until the window ends.
    assert (await _sign_in(world, "alice", PASSWORD)).startswith("TooManyAttempts")


async def test_concurrent_guesses_get_no_more_checks(world: World) -> None:
    await world.register("alice")
    world.password_hasher.verifications = 0
    answers = await asyncio.gather(*(_sign_in(world, "alice", WRONG) for _ in range(30)))
    assert world.password_hasher.verifications == 5
    assert sum(a.startswith("BadCredentials") for a in answers) == 5
    assert sum(a.startswith("TooManyAttempts") for a in answers) == 25


async def test_accounts_are_limited_separately_and_a_new_login_keeps_the_count(
    world: World,
) -> None:
    alice = await world.register("alice")
    await world.register("bob")
    for _ in range(5):
        await _sign_in(world, "alice", WRONG)
    await world.service.sign_in("bob", PASSWORD, make_csr())  # bob is not affected
    # Renaming the account does not give a fresh budget: the count is the tenant's.
    await world.service.update_login(alice.tenant_id, "alice.b")
    assert (await _sign_in(world, "alice.b", PASSWORD)).startswith("TooManyAttempts")


async def test_invalid_input_is_refused_before_anything_is_counted(world: World) -> None:
    alice = await world.register("alice")
    with pytest.raises(InvalidInput):
        await world.service.sign_in("alice", WRONG, b"not a csr")
    with pytest.raises(InvalidInput):
        await world.service.verify_password(alice.tenant_id, "x" * 257)
    assert world.passwords.windows == {}


async def test_the_policy_is_configurable(strict_world: World) -> None:
    world = strict_world
    await world.register("alice")
    for _ in range(2):
        await _sign_in(world, "alice", WRONG)
    with pytest.raises(TooManyAttempts, match="try again in 60 s"):
        await world.service.sign_in("alice", PASSWORD, make_csr())


@pytest.fixture
def strict_world(world: World) -> World:
    """A world whose policy allows 2 wrong passwords a minute."""
    config = DeviceAuthConfig(
        password_policy=PasswordPolicy(max_failures=2, window=timedelta(minutes=1))
    )
    return World(world.clock, world.authority, config=config)


@pytest.mark.parametrize(
    ("max_failures", "window"), [(0, timedelta(minutes=1)), (5, timedelta(milliseconds=10))]
)
def test_a_policy_that_makes_no_sense_is_refused(max_failures: int, window: timedelta) -> None:
    with pytest.raises(ValueError, match="must be at least"):
        PasswordPolicy(max_failures=max_failures, window=window)
