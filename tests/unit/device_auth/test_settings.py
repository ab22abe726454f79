"""Camera settings: private defaults, operator bounds, owner-only changes, full-state events."""

from __future__ import annotations

import uuid

import pytest

from services.device_auth.domain.errors import Forbidden, InvalidInput, NotFound
from services.device_auth.domain.events import CameraSettingsChanged
from services.device_auth.domain.records import GrantScope, SettingsView
from services.device_auth.domain.service import DeviceAuthConfig
from tests.unit.device_auth.conftest import World, app


async def _owner_and_camera(world: World) -> tuple[str, str]:
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    world.events.clear()
    return owner.tenant_id, device


async def test_alerts_are_off_and_retention_is_seven_days_by_default(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    assert await world.service.get_camera_settings(tenant, device) == SettingsView(
        activity_alerts_enabled=False, retention_days=7, pin_set=False, label=""
    )


async def test_the_owner_changes_settings_and_every_change_publishes_the_full_state(
    world: World,
) -> None:
    owner = await world.register()
    tenant = owner.tenant_id
    device = (await world.pair_camera(tenant)).principal_id
    world.events.clear()
    after = await world.service.update_camera_settings(
        tenant, device, activity_alerts_enabled=True, actor=app(owner)
    )
    assert after == SettingsView(True, 7, False, "")
    after = await world.service.update_camera_settings(
        tenant, device, retention_days=14, label="Front door"
    )
    assert after == SettingsView(True, 14, False, "Front door")
    assert world.events.bodies() == [
        CameraSettingsChanged(device, SettingsView(True, 7, False, "")),
        CameraSettingsChanged(device, SettingsView(True, 14, False, "Front door")),
    ]
    assert world.events.published[0].actor == app(owner)
    assert await world.service.settings_for_service(device) == after


async def test_an_update_that_changes_nothing_publishes_nothing(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.update_camera_settings(tenant, device, activity_alerts_enabled=False)
    await world.service.update_camera_settings(tenant, device)
    assert not world.events.published


async def test_an_empty_label_clears_it(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    await world.service.update_camera_settings(tenant, device, label="Garden")
    cleared = await world.service.update_camera_settings(tenant, device, label="")
    assert cleared.label == ""


@pytest.mark.parametrize("days", [0, 31, 365])
async def test_retention_outside_the_operators_bounds_is_invalid_input(
    world: World, days: int
) -> None:
    tenant, device = await _owner_and_camera(world)
    with pytest.raises(InvalidInput, match="1 to 30"):
        await world.service.update_camera_settings(tenant, device, retention_days=days)
    assert (await world.service.get_camera_settings(tenant, device)).retention_days == 7


async def test_the_bounds_and_default_come_from_the_configuration(world: World) -> None:
    config = DeviceAuthConfig(default_retention_days=3, min_retention_days=2, max_retention_days=90)
    world = World(world.clock, world.authority, config=config)
    tenant, device = await _owner_and_camera(world)
    assert (await world.service.get_camera_settings(tenant, device)).retention_days == 3
    assert (
        await world.service.update_camera_settings(tenant, device, retention_days=90)
    ).retention_days == 90
    with pytest.raises(InvalidInput, match="2 to 90"):
        await world.service.update_camera_settings(tenant, device, retention_days=1)


def test_inconsistent_bounds_do_not_start() -> None:
    with pytest.raises(ValueError, match="min <= default <= max"):
        DeviceAuthConfig(default_retention_days=40, max_retention_days=30)


async def test_a_bad_label_is_invalid_input(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    with pytest.raises(InvalidInput, match="label"):
        await world.service.update_camera_settings(tenant, device, label="a\x00b")


async def test_a_viewer_reads_settings_but_cannot_change_them(world: World) -> None:
    tenant, device = await _owner_and_camera(world)
    guest = await world.register("bob")
    await world.service.create_grant(tenant, device, "bob", [GrantScope.LIVE])
    assert (await world.service.get_camera_settings(guest.tenant_id, device)).retention_days == 7
    with pytest.raises(Forbidden, match="only the camera's owner"):
        await world.service.update_camera_settings(guest.tenant_id, device, retention_days=1)


async def test_a_stranger_gets_not_found_and_services_need_an_existing_camera(
    world: World,
) -> None:
    _, device = await _owner_and_camera(world)
    stranger = await world.register("mallory")
    with pytest.raises(NotFound):
        await world.service.update_camera_settings(
            stranger.tenant_id, device, activity_alerts_enabled=True
        )
    with pytest.raises(NotFound):
        await world.service.settings_for_service(str(uuid.uuid4()))
