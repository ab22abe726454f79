"""Wiring for the device_auth domain specs: the service over in-memory test fakes,
a throwaway CA, a fake clock and cheap argon2 parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privacam_core.identity import PrincipalKind
from services.common.clock import FakeClock
from services.common.pki import Authority, create_intermediate, create_root, new_private_key
from services.device_auth.domain.certificates import CertificateIssuer
from services.device_auth.domain.passwords import Argon2Parameters, SecretHasher, Verification
from services.device_auth.domain.records import Subject
from services.device_auth.domain.service import DeviceAuth, DeviceAuthConfig, Enrollment
from tests.unit.device_auth.fakes import (
    MemoryAccounts,
    MemoryCameras,
    MemoryClaimTokens,
    MemoryGrants,
    MemoryInstalls,
    MemoryPasswordAttempts,
    MemoryPinAttempts,
    RecordedEvents,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
TRUST_DOMAIN = "privacam.test"
CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)
"""Far below production: unit tests check behaviour, not cost."""
PASSWORD = "correct horse battery staple"


DEVICE_KEY = new_private_key()
"""The key of every test camera and app that does not make its own."""


def make_csr(
    key: ec.EllipticCurvePrivateKey | None = None,
    common_name: str = "whatever the device asks for",
    uris: tuple[str, ...] = (),
) -> bytes:
    """A PKCS#10 request in DER, signed by `key` (by default DEVICE_KEY: a camera renews
    with the key it paired with, so the tests' cameras all share one)."""
    key = key or DEVICE_KEY
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class CountingHasher(SecretHasher):
    """Counts real hash verifications: how many PIN or password guesses were checked
    (`verify_nothing`, the unknown-login path, goes through `verify` too)."""

    def __init__(self) -> None:
        super().__init__(CHEAP)
        self.verifications = 0

    def verify(self, stored: str, secret: str) -> Verification:
        self.verifications += 1
        return super().verify(stored, secret)


@dataclass
class World:
    clock: FakeClock
    authority: Authority
    accounts: MemoryAccounts = field(default_factory=MemoryAccounts)
    installs: MemoryInstalls = field(default_factory=MemoryInstalls)
    cameras: MemoryCameras = field(default_factory=MemoryCameras)
    grants: MemoryGrants = field(default_factory=MemoryGrants)
    tokens: MemoryClaimTokens = field(default_factory=MemoryClaimTokens)
    attempts: MemoryPinAttempts = field(default_factory=MemoryPinAttempts)
    events: RecordedEvents = field(default_factory=RecordedEvents)
    pin_hasher: CountingHasher = field(default_factory=CountingHasher)
    password_hasher: CountingHasher = field(default_factory=CountingHasher)
    config: DeviceAuthConfig = field(default_factory=DeviceAuthConfig)

    def __post_init__(self) -> None:
        self.passwords = MemoryPasswordAttempts(self.clock)
        self.issuer = CertificateIssuer(
            self.authority,
            TRUST_DOMAIN,
            self.clock,
            camera_lifetime=timedelta(days=30),
            app_lifetime=timedelta(days=20),
        )
        self.service = DeviceAuth(
            accounts=self.accounts,
            installs=self.installs,
            cameras=self.cameras,
            grants=self.grants,
            claim_tokens=self.tokens,
            pin_attempts=self.attempts,
            password_attempts=self.passwords,
            events=self.events,
            issuer=self.issuer,
            clock=self.clock,
            password_hasher=self.password_hasher,
            pin_hasher=self.pin_hasher,
            config=self.config,
        )

    async def register(self, login: str = "alice") -> Enrollment:
        return await self.service.register_account(login, PASSWORD, make_csr(), "phone")

    async def pair_camera(self, tenant_id: str, serial: str = "SN-0001") -> Enrollment:
        claim = await self.service.create_claim_token(tenant_id)
        return await self.service.enroll_camera(claim.token, make_csr(), serial)


def app(enrollment: Enrollment) -> Subject:
    return Subject(PrincipalKind.APP, enrollment.tenant_id, enrollment.principal_id)


def camera(enrollment: Enrollment) -> Subject:
    return Subject(PrincipalKind.CAMERA, enrollment.tenant_id, enrollment.principal_id)


@pytest.fixture(scope="session")
def authority() -> Authority:
    root = create_root("Test Root", START - timedelta(days=1), timedelta(days=3650))
    return create_intermediate(
        root,
        "Test Issuing",
        START - timedelta(days=1),
        timedelta(days=730),
        (PrincipalKind.CAMERA, PrincipalKind.APP),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def world(clock: FakeClock, authority: Authority) -> World:
    return World(clock, authority)
