"""Viewing rights as other services ask for them (AuthorizeCameraAccess), and the tenant export."""

from __future__ import annotations

import uuid

import pytest

from services.device_auth.domain.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    WrongPin,
)
from services.device_auth.domain.records import GrantScope
from services.device_auth.domain.service import CameraRole
from tests.unit.device_auth.conftest import World

LIVE, CLIPS = GrantScope.LIVE, GrantScope.CLIPS


async def _household(world: World) -> tuple[str, str, str, str]:
    """(owner, camera, guest with a LIVE grant, stranger) tenants and camera."""
    owner = (await world.register("alice")).tenant_id
    guest = (await world.register("bob")).tenant_id
    stranger = (await world.register("mallory")).tenant_id
    device = (await world.pair_camera(owner)).principal_id
    await world.service.create_grant(owner, device, "bob", [LIVE])
    return owner, device, guest, stranger


async def test_the_owner_views_with_the_household_listed(world: World) -> None:
    owner, device, guest, _ = await _household(world)
    decision = await world.service.authorize_viewing(owner, device, CLIPS, pin=None)
    assert decision.owner_tenant_id == owner
    assert decision.grant_id is None
    assert decision.household_tenant_ids == (owner, guest)
    assert decision.settings.activity_alerts_enabled is False
    assert decision.pin_checked is False


async def test_a_grantee_views_within_the_grant_only(world: World) -> None:
    owner, device, guest, _ = await _household(world)
    decision = await world.service.authorize_viewing(guest, device, LIVE, pin=None)
    assert decision.owner_tenant_id == owner
    assert decision.grant_id is not None
    with pytest.raises(Forbidden, match="does not include its clips"):
        await world.service.authorize_viewing(guest, device, CLIPS, pin=None)


async def test_a_stranger_and_an_unknown_camera_get_the_same_answer(world: World) -> None:
    _, device, _, stranger = await _household(world)
    with pytest.raises(NotFound) as theirs:
        await world.service.authorize_viewing(stranger, device, LIVE, pin=None)
    with pytest.raises(NotFound) as missing:
        await world.service.authorize_viewing(stranger, str(uuid.uuid4()), LIVE, pin=None)
    assert str(theirs.value) == str(missing.value)
    with pytest.raises(InvalidInput):
        await world.service.authorize_viewing(stranger, "Not An Id!", LIVE, pin=None)


async def test_the_pin_is_needed_only_when_asked_for_and_set(world: World) -> None:
    owner, device, guest, _ = await _household(world)
    # No PIN on the camera: nothing to check even when asked.
    assert not (await world.service.authorize_viewing(guest, device, LIVE, pin="")).pin_checked
    await world.service.set_pin(owner, device, "2468")
    # Metadata (pin=None) does not need it; viewing does.
    assert not (await world.service.authorize_viewing(guest, device, LIVE, pin=None)).pin_checked
    with pytest.raises(WrongPin, match="enter it"):
        await world.service.authorize_viewing(guest, device, LIVE, pin="")
    with pytest.raises(WrongPin):
        await world.service.authorize_viewing(guest, device, LIVE, pin="1111")
    assert (await world.service.authorize_viewing(guest, device, LIVE, pin="2468")).pin_checked


async def test_wrong_pins_while_viewing_count_toward_the_lockout(world: World) -> None:
    owner, device, guest, _ = await _household(world)
    await world.service.set_pin(owner, device, "2468")
    for wrong in ("0000", "0001", "0002"):  # the free tries, then a backoff starts
        with pytest.raises(WrongPin):
            await world.service.authorize_viewing(guest, device, LIVE, pin=wrong)
    # The backoff applies to the right PIN too until it has passed.
    with pytest.raises(TooManyAttempts):
        await world.service.authorize_viewing(guest, device, LIVE, pin="2468")


async def test_the_export_holds_the_tenants_own_data_and_no_secrets(world: World) -> None:
    owner, device, guest, _ = await _household(world)
    await world.service.set_pin(owner, device, "2468")
    export = await world.service.export_tenant(owner)
    assert export.account.login == "alice"
    assert [c.device_id for c in export.cameras] == [device]
    assert all(c.role is CameraRole.OWNER for c in export.cameras)
    assert [g.grant.grantee_tenant_id for g in export.grants_given] == [guest]
    assert export.grants_received == []
    assert len(export.installs) == 1
    assert "2468" not in repr(export)
    assert "argon2" not in repr(export)
    guest_export = await world.service.export_tenant(guest)
    assert guest_export.cameras == []  # a shared camera is not the guest's data
    assert [g.grant.device_id for g in guest_export.grants_received] == [device]
    with pytest.raises(NotFound):
        await world.service.export_tenant(str(uuid.uuid4()))
