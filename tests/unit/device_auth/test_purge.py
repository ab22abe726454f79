"""Account deletion: everything of the tenant goes, every certificate is revoked; retries
are no-ops."""

from __future__ import annotations

from datetime import timedelta

import pytest

from privacam_core.identity import PrincipalKind
from services.device_auth.domain.errors import BadCredentials, InvalidInput, NotFound
from services.device_auth.domain.events import (
    AccountDeleted,
    CertificateRevoked,
    GrantRevoked,
    RevocationReason,
)
from services.device_auth.domain.records import GrantScope, Subject
from tests.unit.device_auth.conftest import PASSWORD, START, World, camera, make_csr

CANCELLATION = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
RETENTION = Subject(PrincipalKind.SERVICE, None, "retention")


async def test_purging_removes_everything_and_revokes_every_certificate(world: World) -> None:
    alice = await world.register("alice")
    bob = await world.register("bob")
    tenant = alice.tenant_id
    await world.service.sign_in("alice", PASSWORD, make_csr(), "tablet")
    cam = await world.pair_camera(tenant, "SN-1")
    await world.pair_camera(tenant, "SN-2")
    await world.service.renew_certificate(camera(cam), cam.certificate.serial, make_csr())
    await world.service.set_pin(tenant, cam.principal_id, "2468")
    await world.service.create_grant(tenant, cam.principal_id, "bob", [GrantScope.LIVE])
    bobs = await world.pair_camera(bob.tenant_id, "SN-B")
    await world.service.create_grant(bob.tenant_id, bobs.principal_id, "alice", [GrantScope.CLIPS])
    await world.service.create_claim_token(tenant)
    world.events.clear()
    world.clock.advance(timedelta(minutes=1))

    report = await world.service.purge_tenant(tenant, CANCELLATION, RETENTION)

    assert (
        report.cameras_removed,
        report.installs_removed,
        report.grants_removed,
        report.certificates_revoked,
        report.completed_at,
    ) == (2, 2, 2, 5, START + timedelta(minutes=1))
    assert not await world.cameras.list_for_tenant(tenant)
    assert not await world.installs.list_for_tenant(tenant)
    assert not await world.grants.list_given(tenant)
    assert not await world.grants.list_received(tenant)
    assert not world.tokens.tokens
    assert cam.principal_id not in world.attempts.states
    assert tenant not in world.accounts.records
    assert "alice" not in world.accounts.logins
    revoked = world.events.of(CertificateRevoked)
    assert len(revoked) == 4  # two cameras, two installs
    assert all(r.reason is RevocationReason.ACCOUNT_DELETED and r.all_certificates for r in revoked)
    assert len(world.events.of(GrantRevoked)) == 2
    last = world.events.published[-1]
    assert (last.body, last.tenant_id, last.actor) == (
        AccountDeleted(CANCELLATION),
        tenant,
        RETENTION,
    )
    # Bob keeps his own camera, minus the grant to the deleted account.
    assert [c.device_id for c in await world.service.list_cameras(bob.tenant_id)] == [
        bobs.principal_id
    ]


async def test_after_a_purge_nothing_of_the_account_works_and_its_login_is_free(
    world: World,
) -> None:
    alice = await world.register("alice")
    claim = await world.service.create_claim_token(alice.tenant_id)
    await world.service.purge_tenant(alice.tenant_id, CANCELLATION)
    with pytest.raises(BadCredentials):
        await world.service.sign_in("alice", PASSWORD, make_csr())
    with pytest.raises(BadCredentials):
        await world.service.enroll_camera(claim.token, make_csr(), "SN-1")
    with pytest.raises(BadCredentials):
        await world.service.renew_certificate(
            Subject(PrincipalKind.APP, alice.tenant_id, alice.principal_id),
            alice.certificate.serial,
            make_csr(),
        )
    with pytest.raises(NotFound):
        await world.service.get_account(alice.tenant_id)
    assert (await world.register("alice")).tenant_id != alice.tenant_id


async def test_a_retried_purge_is_a_no_op_that_republishes_the_same_event(world: World) -> None:
    alice = await world.register("alice")
    await world.pair_camera(alice.tenant_id)
    await world.service.purge_tenant(alice.tenant_id, CANCELLATION)
    first = world.events.published[-1]
    world.events.clear()
    report = await world.service.purge_tenant(alice.tenant_id, CANCELLATION)
    assert (report.cameras_removed, report.installs_removed, report.certificates_revoked) == (
        0,
        0,
        0,
    )
    (again,) = world.events.published
    assert again.event_id == first.event_id
    assert again.body == AccountDeleted(CANCELLATION)


async def test_purge_ids_must_be_ids(world: World) -> None:
    with pytest.raises(InvalidInput, match="cancellation_id"):
        await world.service.purge_tenant("0b7e4a52-1c7d-4d8e-9a57-1f5d3b2c9e01", "")
    with pytest.raises(InvalidInput, match="tenant_id"):
        await world.service.purge_tenant("../x", CANCELLATION)
