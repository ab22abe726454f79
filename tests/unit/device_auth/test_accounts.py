"""Accounts and app installs: registration, sign-in, login and password changes, sign-out."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from cryptography import x509

from privacam_core.identity import PrincipalKind
from services.device_auth.domain.errors import AlreadyExists, BadCredentials, InvalidInput, NotFound
from services.device_auth.domain.events import (
    AccountRegistered,
    AppInstallEnrolled,
    CertificateRevoked,
    RevocationReason,
)
from services.device_auth.domain.passwords import Argon2Parameters, SecretHasher, Verification
from services.device_auth.domain.records import Subject
from tests.unit.device_auth.conftest import PASSWORD, START, TRUST_DOMAIN, World, app, make_csr


def _uri(certificate: x509.Certificate) -> str:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (uri,) = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uri


async def test_registering_creates_a_tenant_and_certifies_the_calling_install(
    world: World,
) -> None:
    enrollment = await world.service.register_account("alice", PASSWORD, make_csr(), "Pixel 8")
    tenant, install = enrollment.tenant_id, enrollment.principal_id
    assert uuid.UUID(tenant).version == 4
    assert uuid.UUID(install).version == 4
    assert _uri(enrollment.certificate.leaf) == (
        f"spiffe://{TRUST_DOMAIN}/tenant/{tenant}/app/{install}"
    )
    account = await world.service.get_account(tenant)
    assert (account.login, account.created_at) == ("alice", START)
    (listed,) = await world.service.list_installs(tenant, current_install_id=install)
    assert (listed.install_id, listed.label, listed.current) == (install, "Pixel 8", True)
    assert listed.certificate_not_after == enrollment.certificate.not_after


async def test_registration_publishes_the_account_and_the_install_without_secrets(
    world: World,
) -> None:
    enrollment = await world.register()
    registered, enrolled = world.events.published
    assert registered.body == AccountRegistered()
    assert registered.tenant_id == enrolled.tenant_id == enrollment.tenant_id
    assert enrolled.body == AppInstallEnrolled(
        enrollment.principal_id,
        enrollment.certificate.serial_hex,
        enrollment.certificate.not_after,
    )
    assert enrolled.actor == app(enrollment)
    assert PASSWORD not in repr(world.events.published)
    assert "alice" not in repr(world.events.published)


async def test_the_password_is_stored_only_as_an_argon2id_hash(world: World) -> None:
    enrollment = await world.register()
    stored = world.accounts.records[enrollment.tenant_id].password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_a_taken_login_is_already_exists_and_writes_nothing(world: World) -> None:
    await world.register("alice")
    before = (dict(world.accounts.records), dict(world.installs.records))
    with pytest.raises(AlreadyExists, match="'alice' is taken"):
        await world.service.register_account("alice", "another password!", make_csr())
    assert (world.accounts.records, world.installs.records) == before


@pytest.mark.parametrize(
    ("login", "password", "csr", "label", "complaint"),
    [
        ("Alice", PASSWORD, None, "", "login"),
        ("alice", "too short", None, "", "12 to 256 bytes"),
        ("alice", PASSWORD, b"junk", "", "csr"),
        ("alice", PASSWORD, None, "x" * 65, "install_label"),
    ],
)
async def test_bad_registration_input_is_invalid_input_and_writes_nothing(
    world: World, login: str, password: str, csr: bytes | None, label: str, complaint: str
) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        await world.service.register_account(login, password, csr or make_csr(), label)
    assert not world.accounts.records
    assert not world.accounts.logins
    assert not world.events.published


async def test_signing_in_enrolls_another_install_of_the_same_account(world: World) -> None:
    first = await world.register()
    second = await world.service.sign_in("alice", PASSWORD, make_csr(), "tablet")
    assert second.tenant_id == first.tenant_id
    assert second.principal_id != first.principal_id
    installs = await world.service.list_installs(first.tenant_id, second.principal_id)
    assert [(i.label, i.current) for i in installs] == [("phone", False), ("tablet", True)]
    assert world.events.of(AppInstallEnrolled)[-1].install_id == second.principal_id


async def test_a_wrong_password_and_an_unknown_login_get_the_same_answer(world: World) -> None:
    await world.register()
    with pytest.raises(BadCredentials) as wrong_password:
        await world.service.sign_in("alice", "not the password", make_csr())
    with pytest.raises(BadCredentials) as unknown_login:
        await world.service.sign_in("mallory", PASSWORD, make_csr())
    assert str(wrong_password.value) == str(unknown_login.value) == "login or password is wrong"


async def test_an_unknown_login_still_costs_a_password_verification(world: World) -> None:
    verified: list[str] = []
    original = world.service._passwords.verify_nothing

    def spy(secret: str) -> Verification:
        verified.append(secret)
        return original(secret)

    world.service._passwords.verify_nothing = spy  # type: ignore[method-assign]
    with pytest.raises(BadCredentials):
        await world.service.sign_in("mallory", PASSWORD, make_csr())
    assert verified == [PASSWORD]


async def test_a_hash_with_older_parameters_is_upgraded_at_sign_in(world: World) -> None:
    enrollment = await world.register()
    stronger = SecretHasher(Argon2Parameters(time_cost=2, memory_kib=16, parallelism=1))
    world.service._passwords = stronger
    await world.service.sign_in("alice", PASSWORD, make_csr())
    assert "t=2" in world.accounts.records[enrollment.tenant_id].password_hash
    await world.service.sign_in("alice", PASSWORD, make_csr())  # still signs in afterwards


async def test_an_overlong_password_is_refused_before_hashing(world: World) -> None:
    with pytest.raises(InvalidInput, match="at most 256 bytes"):
        await world.service.sign_in("alice", "x" * 257, make_csr())


async def test_the_login_can_be_changed_and_the_old_one_is_freed(world: World) -> None:
    enrollment = await world.register("alice")
    assert await world.service.update_login(enrollment.tenant_id, "alice.b") == "alice.b"
    assert (await world.service.get_account(enrollment.tenant_id)).login == "alice.b"
    with pytest.raises(BadCredentials):
        await world.service.sign_in("alice", PASSWORD, make_csr())
    await world.service.sign_in("alice.b", PASSWORD, make_csr())
    other = await world.register("alice")  # the old login is free again
    assert other.tenant_id != enrollment.tenant_id


async def test_changing_to_the_same_login_is_a_no_op(world: World) -> None:
    enrollment = await world.register("alice")
    assert await world.service.update_login(enrollment.tenant_id, "alice") == "alice"


async def test_changing_to_a_taken_login_is_already_exists(world: World) -> None:
    alice = await world.register("alice")
    await world.register("bob")
    with pytest.raises(AlreadyExists, match="'bob' is taken"):
        await world.service.update_login(alice.tenant_id, "bob")
    assert (await world.service.get_account(alice.tenant_id)).login == "alice"
    with pytest.raises(InvalidInput):
        await world.service.update_login(alice.tenant_id, "B")


async def test_a_missing_account_is_not_found(world: World) -> None:
    with pytest.raises(NotFound, match="no longer exists"):
        await world.service.get_account(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        await world.service.update_login(str(uuid.uuid4()), "carol")


async def test_changing_the_password_needs_the_current_one(world: World) -> None:
    enrollment = await world.register()
    tenant = enrollment.tenant_id
    with pytest.raises(BadCredentials, match="current password is wrong"):
        await world.service.change_password(tenant, "not it", "a brand new password")
    with pytest.raises(InvalidInput, match="12 to 256"):
        await world.service.change_password(tenant, PASSWORD, "short")
    await world.service.change_password(tenant, PASSWORD, "a brand new password")
    with pytest.raises(BadCredentials):
        await world.service.sign_in("alice", PASSWORD, make_csr())
    await world.service.sign_in("alice", "a brand new password", make_csr())


async def test_verify_password_answers_yes_or_no_for_other_services(world: World) -> None:
    enrollment = await world.register()
    assert await world.service.verify_password(enrollment.tenant_id, PASSWORD)
    assert not await world.service.verify_password(enrollment.tenant_id, "nope nope nope")
    assert not await world.service.verify_password(str(uuid.uuid4()), PASSWORD)


async def test_revoking_an_install_revokes_all_its_certificates(world: World) -> None:
    phone = await world.register()
    tablet = await world.service.sign_in("alice", PASSWORD, make_csr(), "tablet")
    world.clock.advance(timedelta(minutes=5))
    revoked_at = await world.service.revoke_install(
        phone.tenant_id, tablet.principal_id, app(phone)
    )
    assert revoked_at == START + timedelta(minutes=5)
    assert [i.install_id for i in await world.service.list_installs(phone.tenant_id)] == [
        phone.principal_id
    ]
    (event,) = world.events.of(CertificateRevoked)
    assert event == CertificateRevoked(
        Subject(PrincipalKind.APP, phone.tenant_id, tablet.principal_id),
        (tablet.certificate.serial_hex,),
        all_certificates=True,
        reason=RevocationReason.OWNER_REQUEST,
        not_after=(tablet.certificate.not_after,),
    )
    assert world.events.published[-1].actor == app(phone)


async def test_another_tenants_install_is_not_found_like_a_missing_one(world: World) -> None:
    alice = await world.register("alice")
    bob = await world.register("bob")
    with pytest.raises(NotFound) as foreign:
        await world.service.revoke_install(alice.tenant_id, bob.principal_id)
    with pytest.raises(NotFound) as missing:
        await world.service.revoke_install(alice.tenant_id, str(uuid.uuid4()))
    assert str(foreign.value) == str(missing.value)
    assert bob.principal_id in world.installs.records
    with pytest.raises(InvalidInput, match="install_id"):
        await world.service.revoke_install(alice.tenant_id, "../../etc")


@pytest.mark.parametrize("failing_event", [AccountRegistered, AppInstallEnrolled])
async def test_registration_that_cannot_publish_leaves_nothing_and_may_be_retried(
    world: World, monkeypatch: pytest.MonkeyPatch, failing_event: type
) -> None:
    """Kafka away mid-registration: no half-made account keeps the login or lists an
    install nobody got, so the caller's retry succeeds once Kafka is back."""
    publish = world.events.publish

    async def kafka_away(event: object) -> None:
        if isinstance(getattr(event, "body", None), failing_event):
            raise ConnectionError("kafka is restarting")
        await publish(event)  # type: ignore[arg-type]

    monkeypatch.setattr(world.events, "publish", kafka_away)
    with pytest.raises(ConnectionError):
        await world.service.register_account("alice", PASSWORD, make_csr(), "Pixel 8")
    monkeypatch.setattr(world.events, "publish", publish)
    enrollment = await world.service.register_account("alice", PASSWORD, make_csr(), "Pixel 8")
    (listed,) = await world.service.list_installs(
        enrollment.tenant_id, current_install_id=enrollment.principal_id
    )
    assert listed.install_id == enrollment.principal_id


async def test_registration_cut_short_with_its_undoing_is_resumed_by_its_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka away for the publish and for the undoing too: the login stays claimed by an
    account with no install. The caller's retry (same password) goes on from there; anyone
    else is told the login is taken."""
    publish = world.events.publish

    async def kafka_away(*_: object) -> None:
        raise ConnectionError("kafka is restarting")

    monkeypatch.setattr(world.events, "publish", kafka_away)
    monkeypatch.setattr(world.accounts, "release_login", kafka_away)  # nor can it undo
    with pytest.raises(ConnectionError):
        await world.service.register_account("alice", PASSWORD, make_csr(), "Pixel 8")
    monkeypatch.setattr(world.events, "publish", publish)
    with pytest.raises(AlreadyExists):
        await world.service.register_account("alice", "another long passphrase", make_csr())
    enrollment = await world.service.register_account("alice", PASSWORD, make_csr(), "Pixel 8")
    assert (await world.service.get_account(enrollment.tenant_id)).login == "alice"
    with pytest.raises(AlreadyExists):  # now it has an install: taken, even with the password
        await world.service.register_account("alice", PASSWORD, make_csr())
