"""Revocations carry each certificate's real expiry: CertificateRevoked.not_after, and the
revocation records' covers_until built from it (adapters/events.py, no Kafka here)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from privacam_core.identity import PrincipalKind, subject_digest
from services.common.clock import FakeClock
from services.common.pki import Authority
from services.device_auth.adapters.events import identity_event_pb, revocation_records
from services.device_auth.domain.events import (
    CertificateRevoked,
    IdentityEvent,
    RevocationReason,
)
from services.device_auth.domain.records import CertificateRef, Subject
from tests.unit.device_auth.conftest import START, World, app, camera, make_csr
from tests.unit.device_auth.fakes import RecordedEvents

TRUST_DOMAIN = "privacam.test"
SUBJECT = Subject(PrincipalKind.CAMERA, "t-1", "d-1")
REVOKED_AT = datetime(2026, 3, 1, tzinfo=UTC)


def _revoked(
    serials: tuple[str, ...], expiries: tuple[datetime, ...], everything: bool = True
) -> CertificateRevoked:
    return CertificateRevoked(
        SUBJECT, serials, everything, RevocationReason.OWNER_REQUEST, not_after=expiries
    )


def test_a_subject_record_covers_until_its_latest_certificate_expires() -> None:
    early, late = REVOKED_AT + timedelta(days=3), REVOKED_AT + timedelta(days=29)
    ((key, record),) = revocation_records(
        _revoked(("AB", "cd"), (late, early)), TRUST_DOMAIN, REVOKED_AT
    )
    digest = subject_digest(f"spiffe://{TRUST_DOMAIN}/tenant/t-1/camera/d-1")
    assert key == f"subject/{digest.hex()}"
    assert record.subject_digest == digest
    assert "t-1" not in key + str(record)  # it outlives the account: no ids in it
    assert list(record.serial_numbers) == ["ab", "cd"]
    assert record.revoked_at.ToDatetime(tzinfo=UTC) == REVOKED_AT
    assert record.covers_until.ToDatetime(tzinfo=UTC) == late  # not revoked_at + 397 days


def test_each_serial_record_covers_until_its_own_certificate_expires() -> None:
    first, second = REVOKED_AT + timedelta(days=1), REVOKED_AT + timedelta(days=20)
    records = revocation_records(
        _revoked(("a1", "b2"), (first, second), everything=False), TRUST_DOMAIN, REVOKED_AT
    )
    assert [(key, r.covers_until.ToDatetime(tzinfo=UTC)) for key, r in records] == [
        ("serial/a1", first),
        ("serial/b2", second),
    ]


def test_certificates_already_expired_make_a_moot_record_and_none_covers_nothing() -> None:
    past = REVOKED_AT - timedelta(days=2)
    ((_, record),) = revocation_records(_revoked(("a1",), (past,)), TRUST_DOMAIN, REVOKED_AT)
    assert record.covers_until.ToDatetime(tzinfo=UTC) == past
    ((_, empty),) = revocation_records(_revoked((), ()), TRUST_DOMAIN, REVOKED_AT)
    assert empty.covers_until.ToDatetime(tzinfo=UTC) == REVOKED_AT


def test_the_event_needs_one_expiry_per_serial() -> None:
    with pytest.raises(ValueError, match="one expiry per serial"):
        _revoked(("a1", "b2"), (REVOKED_AT,))
    assert _revoked(("a1",), (REVOKED_AT,)).covers_until == REVOKED_AT
    assert _revoked((), ()).covers_until is None


def test_the_protobuf_event_is_unchanged_by_the_expiries() -> None:
    body = _revoked(("a1",), (REVOKED_AT,))
    message = identity_event_pb(IdentityEvent("e-1", "t-1", REVOKED_AT, None, body))
    assert list(message.certificate_revoked.serial_numbers) == ["a1"]


async def test_removing_a_camera_revokes_with_each_certificates_real_expiry(world: World) -> None:
    owner = await world.register()
    paired = await world.pair_camera(owner.tenant_id)
    world.clock.advance(timedelta(days=10))
    renewed = await world.service.renew_certificate(
        camera(paired), paired.certificate.serial, make_csr()
    )
    world.events.clear()
    await world.service.revoke_camera(owner.tenant_id, paired.principal_id, app(owner))
    (revoked,) = world.events.of(CertificateRevoked)
    assert revoked.not_after == (paired.certificate.not_after, renewed.not_after)
    assert revoked.covers_until == renewed.not_after == START + timedelta(days=40)


class RenewDuringRevocation(RecordedEvents):
    """Adds `renewal` to the camera's record just after the first CertificateRevoked is
    published: a renewal landing between the removal's read of the record and its delete."""

    def __init__(self, renewal: CertificateRef) -> None:
        super().__init__()
        self.renewal = renewal
        self.world: World | None = None

    async def publish(self, event: IdentityEvent) -> None:
        await super().publish(event)
        world, self.world = self.world, None  # once
        if world is not None and isinstance(event.body, CertificateRevoked):
            current = world.cameras.records[event.body.subject.name]
            world.cameras.records[current.device_id] = replace(
                current, certificates=(*current.certificates, self.renewal)
            )


async def test_a_renewal_racing_the_removal_is_revoked_too(
    clock: FakeClock, authority: Authority
) -> None:
    late = CertificateRef(0xBEEF, START + timedelta(days=35))
    events = RenewDuringRevocation(late)
    world = World(clock, authority, events=events)
    owner = await world.register()
    paired = await world.pair_camera(owner.tenant_id)
    events.clear()
    events.world = world
    await world.service.revoke_camera(owner.tenant_id, paired.principal_id)
    first, second = events.of(CertificateRevoked)
    assert first.serial_numbers == (paired.certificate.serial_hex,)
    assert first.covers_until == paired.certificate.not_after
    # Rewritten with what it missed: the same subject record, now covering the renewal.
    assert second.serial_numbers == (paired.certificate.serial_hex, "beef")
    assert second.covers_until == late.not_after
    assert paired.principal_id not in world.cameras.records
