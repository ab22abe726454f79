"""Owners set, change and clear a camera's PIN; other services check it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.device_auth.domain.errors import (
    BadCredentials,
    Forbidden,
    InvalidInput,
    LockedOut,
    NotFound,
    PreconditionFailed,
    TooManyAttempts,
    WrongPin,
)
from services.device_auth.domain.events import (
    CameraSettingsChanged,
    PinChange,
    PinChanged,
    PinLockedOut,
)
from services.device_auth.domain.pins import PinCheckResult
from services.device_auth.domain.records import GrantScope, SettingsView
from tests.unit.device_auth.conftest import PASSWORD, World, app


async def _owner_and_camera(world: World) -> tuple[str, str]:
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    world.events.clear()
    return owner.tenant_id, device


async def test_setting_a_pin_stores_a_salted_hash_and_publishes_pin_set(world: World) -> None:
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    world.events.clear()
    await world.service.set_pin(owner.tenant_id, device, "2468", app(owner))
    stored = world.cameras.records[device].pin_hash
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert "2468" not in stored
    assert world.events.bodies() == [
        PinChanged(device, PinChange.SET),
        CameraSettingsChanged(device, SettingsView(False, 7, True, "")),
    ]
    assert "2468" not in repr(world.events.published)
    assert (await world.service.get_camera_settings(owner.tenant_id, device)).pin_set


async def test_a_pin_cannot_be_set_twice(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.set_pin(tenant, device, "2468")
    with pytest.raises(PreconditionFailed, match="already has a PIN"):
        await world.service.set_pin(tenant, device, "1357")


@pytest.mark.parametrize("pin", ["123", "12345", "abcd", ""])
async def test_a_pin_must_be_four_digits(world: World, pin: str) -> None:
    tenant, device = await _owner_and_camera(world)
    with pytest.raises(InvalidInput, match="4 digits"):
        await world.service.set_pin(tenant, device, pin)
    assert world.cameras.records[device].pin_hash is None


async def test_changing_the_pin_needs_the_current_one(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.set_pin(tenant, device, "2468")
    world.events.clear()
    with pytest.raises(WrongPin, match="current PIN is wrong"):
        await world.service.change_pin(tenant, device, "0000", "1357")
    await world.service.change_pin(tenant, device, "2468", "1357")
    assert world.events.bodies() == [PinChanged(device, PinChange.CHANGED)]
    assert (await world.service.check_pin(device, "1357")).result is PinCheckResult.OK
    assert (await world.service.check_pin(device, "2468")).result is PinCheckResult.WRONG


async def test_changing_or_clearing_a_pin_that_is_not_set_is_a_failed_precondition(
    world: World,
) -> None:
    tenant, device = await _owner_and_camera(world)
    with pytest.raises(PreconditionFailed, match="no PIN"):
        await world.service.change_pin(tenant, device, "0000", "1357")
    with pytest.raises(PreconditionFailed, match="no PIN"):
        await world.service.clear_pin(tenant, device, current_pin="0000")


async def test_wrong_current_pins_count_toward_the_lockout(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.set_pin(tenant, device, "2468")
    for _ in range(2):
        with pytest.raises(WrongPin):
            await world.service.change_pin(tenant, device, "0000", "1357")
    with pytest.raises(WrongPin, match="next try is accepted in 1 s"):
        await world.service.change_pin(tenant, device, "0000", "1357")
    with pytest.raises(TooManyAttempts, match="try again in 1 s") as waiting:
        await world.service.change_pin(tenant, device, "2468", "1357")
    assert waiting.value.retry_after == timedelta(seconds=1)
    assert not isinstance(waiting.value, LockedOut)


async def test_in_a_lockout_the_owner_is_told_and_clears_the_pin_with_the_password(
    world: World,
) -> None:
    owner = await world.register()
    tenant = owner.tenant_id
    device = (await world.pair_camera(tenant)).principal_id
    await world.service.set_pin(tenant, device, "2468")
    for guess in range(10):
        check = await world.service.check_pin(device, f"{guess:04}")
        if guess < 9:
            world.clock.advance(check.retry_after)
    assert world.events.of(PinLockedOut)
    with pytest.raises(LockedOut, match="clear the PIN with the account password") as locked:
        await world.service.change_pin(tenant, device, "2468", "1357")
    assert locked.value.retry_after == timedelta(hours=1)
    world.events.clear()
    await world.service.clear_pin(tenant, device, password=PASSWORD, actor=app(owner))
    assert world.events.bodies() == [
        PinChanged(device, PinChange.CLEARED),
        CameraSettingsChanged(device, SettingsView(False, 7, False, "")),
    ]
    assert (await world.attempts.get(device)).failures == 0
    await world.service.set_pin(tenant, device, "1357")
    assert (await world.service.check_pin(device, "1357")).result is PinCheckResult.OK


async def test_clearing_with_the_current_pin(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.set_pin(tenant, device, "2468")
    with pytest.raises(WrongPin):
        await world.service.clear_pin(tenant, device, current_pin="1111")
    await world.service.clear_pin(tenant, device, current_pin="2468")
    assert world.cameras.records[device].pin_hash is None
    assert (await world.service.check_pin(device, "2468")).result is PinCheckResult.NOT_SET


async def test_clearing_with_a_wrong_password_is_bad_credentials(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.set_pin(tenant, device, "2468")
    with pytest.raises(BadCredentials, match="password is wrong"):
        await world.service.clear_pin(tenant, device, password="not the password")
    assert world.cameras.records[device].pin_hash is not None


async def test_clearing_needs_exactly_one_proof(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.set_pin(tenant, device, "2468")
    with pytest.raises(InvalidInput, match="either the current PIN or the account password"):
        await world.service.clear_pin(tenant, device)
    with pytest.raises(InvalidInput, match="either"):
        await world.service.clear_pin(tenant, device, current_pin="2468", password=PASSWORD)


async def test_only_the_owner_manages_the_pin(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    guest = await world.register("bob")
    stranger = await world.register("mallory")
    await world.service.create_grant(tenant, device, "bob", [GrantScope.LIVE])
    with pytest.raises(Forbidden):
        await world.service.set_pin(guest.tenant_id, device, "1111")
    with pytest.raises(NotFound):
        await world.service.set_pin(stranger.tenant_id, device, "1111")
    await world.service.set_pin(tenant, device, "2468")
    with pytest.raises(NotFound):
        await world.service.clear_pin(stranger.tenant_id, device, password=PASSWORD)
    with pytest.raises(Forbidden):
        await world.service.change_pin(guest.tenant_id, device, "2468", "1111")


async def test_checking_the_pin_of_an_unknown_camera_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.service.check_pin("0c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "1234")
