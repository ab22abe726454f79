"""Concurrent changes: compare-and-set keeps both, never resurrects, and gives up loudly."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.device_auth.domain.errors import AlreadyExists, BadCredentials, Conflict
from services.device_auth.domain.records import Camera, CameraSettings
from tests.unit.device_auth.conftest import PASSWORD, World, camera, make_csr
from tests.unit.device_auth.fakes import MemoryAccounts, MemoryCameras


class LoginStolenMeanwhile(MemoryAccounts):
    """Another registration takes the login between our check and our claim."""

    async def claim_login(self, login: str, tenant_id: str) -> bool:
        return False


class BusyCameras(MemoryCameras):
    """Another writer changes the camera's label just before each of our first
    `losses` writes."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses

    async def replace(self, expected: Camera, new: Camera) -> bool:
        if self.losses:
            self.losses -= 1
            current = self.records[expected.device_id]
            self.records[expected.device_id] = replace(
                current, settings=replace(current.settings, label=f"busy {self.losses}")
            )
        return await super().replace(expected, new)


class RemovedMeanwhile(MemoryCameras):
    """The owner removes the camera while its renewal is under way."""

    async def replace(self, expected: Camera, new: Camera) -> bool:
        self.records.pop(expected.device_id, None)
        return await super().replace(expected, new)


async def test_a_registration_losing_the_login_race_leaves_nothing_behind(world: World) -> None:
    world = World(world.clock, world.authority, accounts=LoginStolenMeanwhile())
    with pytest.raises(AlreadyExists):
        await world.service.register_account("alice", PASSWORD, make_csr())
    assert not world.accounts.records
    assert not world.installs.records
    assert not world.events.published


async def test_a_settings_change_racing_another_write_keeps_both(world: World) -> None:
    world = World(world.clock, world.authority, cameras=BusyCameras(losses=2))
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    after = await world.service.update_camera_settings(
        owner.tenant_id, device, activity_alerts_enabled=True
    )
    assert after.activity_alerts_enabled
    assert after.label == "busy 0"  # the other writer's change survived
    assert world.cameras.records[device].settings == CameraSettings(True, 7, "busy 0")


async def test_endless_contention_is_a_conflict_to_retry_not_a_lost_update(world: World) -> None:
    world = World(world.clock, world.authority, cameras=BusyCameras(losses=100))
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    with pytest.raises(Conflict, match="try again"):
        await world.service.update_camera_settings(owner.tenant_id, device, retention_days=3)
    assert world.cameras.records[device].settings.retention_days == 7


async def test_a_renewal_never_brings_back_a_camera_removed_meanwhile(world: World) -> None:
    world = World(world.clock, world.authority, cameras=RemovedMeanwhile())
    owner = await world.register()
    enrollment = await world.pair_camera(owner.tenant_id)
    with pytest.raises(BadCredentials):
        await world.service.renew_certificate(
            camera(enrollment), enrollment.certificate.serial, make_csr()
        )
    assert not world.cameras.records


async def test_a_pin_changed_by_another_request_is_not_overwritten(world: World) -> None:
    owner = await world.register()
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    stale = world.cameras.records[device]
    await world.service.set_pin(owner.tenant_id, device, "2468")
    with pytest.raises(Conflict, match="PIN was changed by another request"):
        await world.service._swap_pin(stale, world.pin_hasher.hash("1111"))
