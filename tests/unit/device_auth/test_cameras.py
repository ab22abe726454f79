"""Pairing cameras with claim tokens, renewing certificates, listing and removing cameras."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from cryptography import x509

from privacam_core.identity import PrincipalKind
from services.common.pki import new_private_key
from services.device_auth.domain.certificates import key_digest
from services.device_auth.domain.claim_tokens import hash_token
from services.device_auth.domain.errors import BadCredentials, Forbidden, InvalidInput, NotFound
from services.device_auth.domain.events import (
    CameraEnrolled,
    CameraSettingsChanged,
    CertificateRenewed,
    CertificateRevoked,
    GrantRevoked,
    RevocationReason,
)
from services.device_auth.domain.records import GrantScope, SettingsView, Subject
from services.device_auth.domain.service import CameraRole
from tests.unit.device_auth.conftest import (
    DEVICE_KEY,
    START,
    TRUST_DOMAIN,
    World,
    app,
    camera,
    make_csr,
)


async def test_a_claim_token_lives_ten_minutes_and_only_its_hash_is_stored(world: World) -> None:
    owner = await world.register()
    claim = await world.service.create_claim_token(owner.tenant_id, app(owner))
    assert len(claim.token) == 43
    assert claim.expires_at == START + timedelta(minutes=10)
    (stored,) = world.tokens.tokens.values()
    assert stored.token_hash == hash_token(claim.token)
    assert claim.token not in repr(stored)
    assert stored.created_by == app(owner)


async def test_a_claim_token_for_a_missing_account_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.service.create_claim_token(str(uuid.uuid4()))


async def test_a_camera_pairs_with_token_csr_and_serial(world: World) -> None:
    owner = await world.register()
    claim = await world.service.create_claim_token(owner.tenant_id)
    key = new_private_key()
    enrollment = await world.service.enroll_camera(claim.token, make_csr(key), "SN-0001")
    tenant, device = enrollment.tenant_id, enrollment.principal_id
    assert tenant == owner.tenant_id
    leaf = enrollment.certificate.leaf
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TRUST_DOMAIN}/tenant/{tenant}/camera/{device}"
    ]
    assert leaf.public_key() == key.public_key()
    assert enrollment.certificate.not_after == START + timedelta(days=30)
    view = await world.service.get_camera(tenant, device)
    assert (view.serial, view.role, view.enrolled_at) == ("SN-0001", CameraRole.OWNER, START)
    assert view.settings == SettingsView(
        activity_alerts_enabled=False, retention_days=7, pin_set=False, label=""
    )


async def test_pairing_publishes_the_camera_and_its_default_settings(world: World) -> None:
    owner = await world.register()
    world.events.clear()
    enrollment = await world.pair_camera(owner.tenant_id)
    device = enrollment.principal_id
    enrolled, settings = world.events.published
    assert enrolled.body == CameraEnrolled(
        device, enrollment.certificate.serial_hex, enrollment.certificate.not_after
    )
    assert enrolled.actor == camera(enrollment)
    assert settings.body == CameraSettingsChanged(device, SettingsView(False, 7, False, ""))


async def test_a_claim_token_works_once(world: World) -> None:
    owner = await world.register()
    claim = await world.service.create_claim_token(owner.tenant_id)
    await world.service.enroll_camera(claim.token, make_csr(), "SN-0001")
    with pytest.raises(BadCredentials, match="unknown, used or expired"):
        await world.service.enroll_camera(claim.token, make_csr(), "SN-0002")


async def test_an_expired_claim_token_is_refused(world: World) -> None:
    owner = await world.register()
    claim = await world.service.create_claim_token(owner.tenant_id)
    world.clock.advance(timedelta(minutes=10))
    with pytest.raises(BadCredentials, match="unknown, used or expired"):
        await world.service.enroll_camera(claim.token, make_csr(), "SN-0001")
    assert not world.cameras.records


async def test_an_unknown_claim_token_is_refused_like_a_used_one(world: World) -> None:
    await world.register()
    made_up = "A" * 43
    with pytest.raises(BadCredentials, match="unknown, used or expired"):
        await world.service.enroll_camera(made_up, make_csr(), "SN-0001")


async def test_a_token_of_a_deleted_account_is_refused(world: World) -> None:
    owner = await world.register()
    claim = await world.service.create_claim_token(owner.tenant_id)
    del world.accounts.records[owner.tenant_id]
    with pytest.raises(BadCredentials):
        await world.service.enroll_camera(claim.token, make_csr(), "SN-0001")


@pytest.mark.parametrize(
    ("token", "csr", "serial", "complaint"),
    [
        ("short", None, "SN-1", "claim_token"),
        (None, b"\x30\x00", "SN-1", "csr"),
        (None, None, "SN 1", "serial"),
        (None, None, "", "serial"),
    ],
)
async def test_bad_pairing_input_is_refused_without_spending_the_token(
    world: World, token: str | None, csr: bytes | None, serial: str, complaint: str
) -> None:
    owner = await world.register()
    claim = await world.service.create_claim_token(owner.tenant_id)
    with pytest.raises(InvalidInput, match=complaint):
        await world.service.enroll_camera(token or claim.token, csr or make_csr(), serial)
    await world.service.enroll_camera(claim.token, make_csr(), "SN-1")  # still usable


async def test_pairing_a_serial_again_under_the_same_account_replaces_the_old_camera(
    world: World,
) -> None:
    owner = await world.register()
    guest = await world.register("bob")
    old = await world.pair_camera(owner.tenant_id, "SN-0001")
    await world.service.create_grant(owner.tenant_id, old.principal_id, "bob", [GrantScope.LIVE])
    world.events.clear()
    new = await world.pair_camera(owner.tenant_id, "SN-0001")
    assert new.principal_id != old.principal_id
    assert [c.device_id for c in await world.service.list_cameras(owner.tenant_id)] == [
        new.principal_id
    ]
    (revoked,) = world.events.of(CertificateRevoked)
    assert revoked == CertificateRevoked(
        camera(old),
        (old.certificate.serial_hex,),
        True,
        RevocationReason.SUPERSEDED,
        (old.certificate.not_after,),
    )
    (grant_gone,) = world.events.of(GrantRevoked)
    assert grant_gone.grantee_tenant_id == guest.tenant_id
    assert not await world.service.list_cameras(guest.tenant_id)


async def test_the_same_serial_under_another_account_leaves_the_first_camera_alone(
    world: World,
) -> None:
    """A serial is only what a camera claims: it may neither evict nor block another
    account's camera (and the answer reveals nothing about other accounts)."""
    alice = await world.register("alice")
    bob = await world.register("bob")
    alices = await world.pair_camera(alice.tenant_id, "SN-0001")
    world.events.clear()
    bobs = await world.pair_camera(bob.tenant_id, "SN-0001")
    assert bobs.tenant_id == bob.tenant_id
    assert not world.events.of(CertificateRevoked)
    assert (
        await world.service.get_camera(alice.tenant_id, alices.principal_id)
    ).serial == "SN-0001"


async def test_a_camera_renews_its_certificate_for_the_same_identity(world: World) -> None:
    owner = await world.register()
    enrollment = await world.pair_camera(owner.tenant_id)
    world.clock.advance(timedelta(days=25))
    key = DEVICE_KEY  # the key it paired with (see test_a_camera_keeps_the_key_it_paired_with)
    csr = make_csr(key, uris=("spiffe://privacam.test/tenant/other/camera/other",))
    renewed = await world.service.renew_certificate(
        camera(enrollment), enrollment.certificate.serial, csr
    )
    san = renewed.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TRUST_DOMAIN}/tenant/{owner.tenant_id}/camera/{enrollment.principal_id}"
    ]
    assert renewed.leaf.public_key() == key.public_key()
    assert renewed.not_after == START + timedelta(days=55)
    view = await world.service.get_camera(owner.tenant_id, enrollment.principal_id)
    assert view.certificate_not_after == renewed.not_after
    assert world.events.published[-1].body == CertificateRenewed(
        camera(enrollment), renewed.serial_hex, renewed.not_after
    )
    # Both certificates are live until the first expires; either may renew.
    again = await world.service.renew_certificate(
        camera(enrollment), enrollment.certificate.serial, make_csr()
    )
    assert again.serial != renewed.serial


async def test_expired_certificates_are_forgotten_at_renewal(world: World) -> None:
    owner = await world.register()
    enrollment = await world.pair_camera(owner.tenant_id)
    world.clock.advance(timedelta(days=29))
    renewed = await world.service.renew_certificate(
        camera(enrollment), enrollment.certificate.serial, make_csr()
    )
    world.clock.advance(timedelta(days=2))
    await world.service.renew_certificate(camera(enrollment), renewed.serial, make_csr())
    refs = world.cameras.records[enrollment.principal_id].certificates
    assert enrollment.certificate.serial not in [r.serial for r in refs]
    assert len(refs) == 2


async def test_an_app_install_renews_its_certificate_too(world: World) -> None:
    enrollment = await world.register()
    renewed = await world.service.renew_certificate(
        app(enrollment), enrollment.certificate.serial, make_csr()
    )
    assert renewed.not_after == START + timedelta(days=20)
    (install,) = await world.service.list_installs(enrollment.tenant_id)
    assert install.certificate_not_after == renewed.not_after


async def test_a_removed_camera_cannot_renew(world: World) -> None:
    owner = await world.register()
    enrollment = await world.pair_camera(owner.tenant_id)
    await world.service.revoke_camera(owner.tenant_id, enrollment.principal_id)
    with pytest.raises(BadCredentials, match="can no longer be renewed"):
        await world.service.renew_certificate(
            camera(enrollment), enrollment.certificate.serial, make_csr()
        )


async def test_renewal_refuses_a_certificate_the_record_does_not_know(world: World) -> None:
    owner = await world.register()
    enrollment = await world.pair_camera(owner.tenant_id)
    with pytest.raises(BadCredentials):
        await world.service.renew_certificate(camera(enrollment), 12345, make_csr())
    someone_else = Subject(PrincipalKind.CAMERA, str(uuid.uuid4()), enrollment.principal_id)
    with pytest.raises(BadCredentials):
        await world.service.renew_certificate(
            someone_else, enrollment.certificate.serial, make_csr()
        )


async def test_renewal_checks_the_csr_and_is_for_cameras_and_apps_only(world: World) -> None:
    owner = await world.register()
    with pytest.raises(InvalidInput, match="csr"):
        await world.service.renew_certificate(app(owner), owner.certificate.serial, b"junk")
    service = Subject(PrincipalKind.SERVICE, None, "clip_ingest")
    with pytest.raises(Forbidden):
        await world.service.renew_certificate(service, 1, make_csr())


async def test_cameras_list_owned_first_then_shared(world: World) -> None:
    alice = await world.register("alice")
    bob = await world.register("bob")
    bobs = await world.pair_camera(bob.tenant_id, "SN-B")
    world.clock.advance(timedelta(minutes=1))
    first = await world.pair_camera(alice.tenant_id, "SN-A1")
    world.clock.advance(timedelta(minutes=1))
    second = await world.pair_camera(alice.tenant_id, "SN-A2")
    await world.service.create_grant(bob.tenant_id, bobs.principal_id, "alice", [GrantScope.CLIPS])
    cameras = await world.service.list_cameras(alice.tenant_id)
    assert [(c.device_id, c.role) for c in cameras] == [
        (first.principal_id, CameraRole.OWNER),
        (second.principal_id, CameraRole.OWNER),
        (bobs.principal_id, CameraRole.VIEWER),
    ]
    shared = cameras[-1]
    assert (shared.serial, shared.scopes) == ("", frozenset({GrantScope.CLIPS}))
    assert shared.owner_tenant_id == bob.tenant_id


async def test_another_tenants_camera_is_not_found_exactly_like_a_missing_one(
    world: World,
) -> None:
    alice = await world.register("alice")
    bob = await world.register("bob")
    bobs = await world.pair_camera(bob.tenant_id)
    errors = []
    for device in (bobs.principal_id, str(uuid.uuid4())):
        for call in (
            world.service.get_camera(alice.tenant_id, device),
            world.service.revoke_camera(alice.tenant_id, device),
            world.service.get_camera_settings(alice.tenant_id, device),
        ):
            with pytest.raises(NotFound) as caught:
                await call
            errors.append(str(caught.value))
    assert len(set(errors)) == 1
    assert bobs.principal_id in world.cameras.records


async def test_a_malformed_camera_id_is_invalid_input(world: World) -> None:
    alice = await world.register()
    with pytest.raises(InvalidInput, match="device_id"):
        await world.service.get_camera(alice.tenant_id, "NOT/AN/ID")


async def test_removing_a_camera_revokes_its_certificates_and_grants(world: World) -> None:
    owner = await world.register("alice")
    guest = await world.register("bob")
    enrollment = await world.pair_camera(owner.tenant_id)
    device = enrollment.principal_id
    renewed = await world.service.renew_certificate(
        camera(enrollment), enrollment.certificate.serial, make_csr()
    )
    grant = await world.service.create_grant(owner.tenant_id, device, "bob", [GrantScope.LIVE])
    world.events.clear()
    world.clock.advance(timedelta(seconds=30))
    revoked_at = await world.service.revoke_camera(owner.tenant_id, device, app(owner))
    assert revoked_at == START + timedelta(seconds=30)
    grant_event, cert_event = world.events.bodies()
    assert grant_event == GrantRevoked(grant.grant.grant_id, device, guest.tenant_id)
    assert cert_event == CertificateRevoked(
        camera(enrollment),
        (enrollment.certificate.serial_hex, renewed.serial_hex),
        all_certificates=True,
        reason=RevocationReason.OWNER_REQUEST,
        not_after=(enrollment.certificate.not_after, renewed.not_after),
    )
    assert all(e.actor == app(owner) for e in world.events.published)
    assert not await world.service.list_cameras(owner.tenant_id)
    assert not await world.service.list_cameras(guest.tenant_id)
    with pytest.raises(NotFound):
        await world.service.revoke_camera(owner.tenant_id, device)


async def test_a_viewer_cannot_remove_a_shared_camera(world: World) -> None:
    owner = await world.register("alice")
    guest = await world.register("bob")
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    await world.service.create_grant(owner.tenant_id, device, "bob", [GrantScope.LIVE])
    with pytest.raises(Forbidden, match="only the camera's owner"):
        await world.service.revoke_camera(guest.tenant_id, device)


async def test_a_camera_keeps_the_key_it_paired_with(world: World) -> None:
    """Whoever holds a camera's certificate but not its key cannot move the camera to a key
    of their own by renewing: the key is pinned at pairing, and shown to its apps."""
    owner = await world.register()
    enrollment = await world.pair_camera(owner.tenant_id)
    with pytest.raises(Forbidden, match="the key it paired with"):
        await world.service.renew_certificate(
            camera(enrollment), enrollment.certificate.serial, make_csr(new_private_key())
        )
    view = await world.service.get_camera(owner.tenant_id, enrollment.principal_id)
    assert view.key_sha256 == key_digest(DEVICE_KEY.public_key())
    renewed = await world.service.renew_certificate(
        camera(enrollment), enrollment.certificate.serial, make_csr(DEVICE_KEY)
    )
    assert renewed.leaf.public_key() == DEVICE_KEY.public_key()
