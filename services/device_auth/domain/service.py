"""device_auth use cases: accounts, installs, camera pairing, certificates, settings,
PINs, sharing grants and tenant purge.

Plain Python over the ports in ports.py; time from the injected clock. Every
call validates all its input before it writes anything, and every change
other services need is published as an IdentityEvent. Callers are named by
their tenant (the servicer takes it from the verified certificate); another
tenant's camera, install or grant is `NotFound`, exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from privacam_core.identity import PrincipalKind
from services.common.clock import Clock
from services.common.memo import DerivedCache
from services.device_auth.domain import validation, watch
from services.device_auth.domain.certificates import (
    CertificateIssuer,
    IssuedCertificate,
    key_digest,
    validate_csr,
)
from services.device_auth.domain.claim_tokens import DEFAULT_TTL, hash_token, new_token, well_formed
from services.device_auth.domain.errors import (
    AlreadyExists,
    BadCredentials,
    Conflict,
    Forbidden,
    InvalidInput,
    LockedOut,
    NotFound,
    PreconditionFailed,
    TooManyAttempts,
    WrongPin,
    seconds,
)
from services.device_auth.domain.events import (
    AccountDeleted,
    AccountRegistered,
    AppInstallEnrolled,
    CameraEnrolled,
    CameraSettingsChanged,
    CertificateRenewed,
    CertificateRevoked,
    EventBody,
    GrantCreated,
    GrantEndReason,
    GrantRevoked,
    IdentityEvent,
    PinChange,
    PinChanged,
    PinLockedOut,
    PrivacyModeChanged,
    RevocationReason,
)
from services.device_auth.domain.password_attempts import (
    PasswordGuard,
    PasswordPolicy,
    login_key,
    tenant_key,
)
from services.device_auth.domain.passwords import SecretHasher, Verification
from services.device_auth.domain.pins import PinCheck, PinCheckResult, PinGuard, PinPolicy
from services.device_auth.domain.ports import (
    Accounts,
    Cameras,
    ClaimTokens,
    Grants,
    IdentityEvents,
    Installs,
    PasswordAttempts,
    PinAttempts,
    RecordStore,
)
from services.device_auth.domain.records import (
    Account,
    AppInstall,
    Camera,
    CameraSettings,
    CertificateRef,
    ClaimToken,
    Grant,
    GrantScope,
    SettingsView,
    Subject,
)

R = TypeVar("R")
Certified = TypeVar("Certified", Camera, AppInstall)

_CAS_TRIES = 8
# Deterministic ids for the AccountDeleted of one cancellation: a retried purge
# republishes the same event, which consumers recognise by its id.
_EVENT_NAMESPACE = uuid.UUID("5f1d7c52-4c0e-4a39-9d6b-6b4a3e0c2a11")
_SCOPE_WORDS = {
    GrantScope.LIVE: "live view",
    GrantScope.CLIPS: "its clips",
    GrantScope.TALK: "talk-back (the talk scope)",
}

_WRONG_LOGIN = "login or password is wrong"
_UNUSABLE_CLAIM = "claim token is unknown, used or expired; create a new one in the owner's app"
_NO_CAMERA = "no camera with this id on your account"


@dataclass(frozen=True)
class DeviceAuthConfig:
    claim_token_ttl: timedelta = DEFAULT_TTL
    default_retention_days: int = 7
    min_retention_days: int = 1
    """Operator's lower bound on a camera's retention."""
    max_retention_days: int = 30
    """Operator's upper bound on a camera's retention."""
    max_grants_per_camera: int = 100
    pin_policy: PinPolicy = field(default_factory=PinPolicy)
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    grant_expiry_batch: int = 500
    """Most expired grants one sweep revokes (the next sweep takes the rest)."""

    def __post_init__(self) -> None:
        if not (
            1 <= self.min_retention_days <= self.default_retention_days <= self.max_retention_days
        ):
            raise ValueError("retention bounds must satisfy 1 <= min <= default <= max")
        if not timedelta(minutes=1) <= self.claim_token_ttl <= timedelta(hours=1):
            raise ValueError("claim_token_ttl must be 1 to 60 minutes")
        if self.grant_expiry_batch < 1:
            raise ValueError("grant_expiry_batch must be at least 1")


class CameraRole(enum.Enum):
    OWNER = "owner"
    VIEWER = "viewer"


class GrantDirection(enum.Enum):
    GIVEN = "given"
    RECEIVED = "received"


@dataclass(frozen=True)
class Enrollment:
    """A new app install (registration, sign-in) or camera (pairing) and its certificate."""

    tenant_id: str
    principal_id: str
    """The install id or device id, also in the certificate's URI SAN."""
    certificate: IssuedCertificate


@dataclass(frozen=True)
class AccountView:
    tenant_id: str
    login: str
    created_at: datetime


@dataclass(frozen=True)
class InstallView:
    install_id: str
    label: str
    enrolled_at: datetime
    certificate_not_after: datetime
    current: bool


@dataclass(frozen=True)
class CameraView:
    device_id: str
    owner_tenant_id: str
    serial: str
    """Shown to the owner only; empty for viewers."""
    enrolled_at: datetime
    certificate_not_after: datetime
    role: CameraRole
    scopes: frozenset[GrantScope]
    """For viewers, what their grant allows; empty for the owner, who may do everything."""
    settings: SettingsView
    key_sha256: str
    """The camera's pinned public key (hex SHA-256 of its SubjectPublicKeyInfo)."""


@dataclass(frozen=True)
class GrantView:
    grant: Grant
    grantee_login: str
    """Shown to the owner only; empty for the grantee's own listing."""


@dataclass(frozen=True)
class IssuedClaimToken:
    token: str
    """Shown only here; the service keeps its hash."""
    expires_at: datetime


@dataclass(frozen=True)
class ViewingDecision:
    """Why an app may view a camera: what clip_ingest and relay_broker act on."""

    owner_tenant_id: str
    grant_id: str | None
    """None for the owner."""
    settings: SettingsView
    household_tenant_ids: tuple[str, ...]
    """The owner, then every tenant with an active grant on the camera."""
    pin_checked: bool


@dataclass(frozen=True)
class TenantExport:
    """Everything kept about a tenant that is the tenant's to see; no secrets or hashes."""

    account: AccountView
    installs: list[InstallView]
    cameras: list[CameraView]
    grants_given: list[GrantView]
    grants_received: list[GrantView]


@dataclass(frozen=True)
class PurgeReport:
    cameras_removed: int
    installs_removed: int
    grants_removed: int
    certificates_revoked: int
    completed_at: datetime


class DeviceAuth:
    def __init__(
        self,
        *,
        accounts: Accounts,
        installs: Installs,
        cameras: Cameras,
        grants: Grants,
        claim_tokens: ClaimTokens,
        pin_attempts: PinAttempts,
        password_attempts: PasswordAttempts,
        events: IdentityEvents,
        issuer: CertificateIssuer,
        clock: Clock,
        password_hasher: SecretHasher,
        pin_hasher: SecretHasher | None = None,
        config: DeviceAuthConfig | None = None,
    ) -> None:
        self._accounts = accounts
        self._installs = installs
        self._cameras = cameras
        self._grants = grants
        self._tokens = claim_tokens
        self._events = events
        self._issuer = issuer
        self._clock = clock
        self._passwords = password_hasher
        self._config = config or DeviceAuthConfig()
        self._pins = PinGuard(
            pin_attempts, pin_hasher or password_hasher, clock, self._config.pin_policy
        )
        self._password_guard = PasswordGuard(password_attempts, self._config.password_policy)
        # What owners see of a camera, made once per version of its record (GetCamera is
        # the hottest read there is).
        self._owner_views: DerivedCache[str, Camera, CameraView] = DerivedCache(
            lambda camera: self._make_camera_view(camera, None)
        )

    # --- accounts and app installs ------------------------------------------------

    async def register_account(
        self, login: str, password: str, csr: bytes, install_label: str = ""
    ) -> Enrollment:
        """Create an account (its own tenant) and enroll the calling app install."""
        validation.login(login)
        validation.new_password(password)
        validation.label(install_label, "install_label")
        public_key = validate_csr(csr)
        taken = f"the login {login!r} is taken; choose another"
        held_by = await self._accounts.tenant_for_login(login)
        if held_by is not None:
            return await self._resume(held_by, password, install_label, public_key, taken)
        password_hash = await asyncio.to_thread(self._passwords.hash, password)
        account = Account(str(uuid.uuid4()), login, password_hash, self._clock.now())
        if not await self._accounts.create(account):
            raise Conflict("could not create the account; try again")
        try:
            if await self._accounts.claim_login(login, account.tenant_id):
                await self._publish(account.tenant_id, AccountRegistered(), None)
                return await self._enroll_install(account.tenant_id, install_label, public_key)
        except BaseException:
            # Kafka away, or the caller gone: no half-made account holds the login against
            # the caller's retry (the login first: an account no login reaches is inert).
            await self._accounts.release_login(login, account.tenant_id)
            await self._accounts.delete(account.tenant_id)
            raise
        await self._accounts.delete(account.tenant_id)  # lost a race for the login
        raise AlreadyExists(taken)

    async def _resume(
        self,
        tenant_id: str,
        password: str,
        install_label: str,
        public_key: ec.EllipticCurvePublicKey,
        taken: str,
    ) -> Enrollment:
        """A registration retried after one cut short where not even its undoing could be
        recorded (the event bus away): the login leads to an account with no install yet,
        and the password is this one, so it goes on from there. Anyone else is told the
        login is taken (a password checked here counts toward the account's limit)."""
        account = await self._accounts.get(tenant_id)
        half_made = (
            account is not None
            and not await self._installs.list_for_tenant(tenant_id)
            and await self._password_matches(tenant_key(tenant_id), account, password)
        )
        if not half_made:
            raise AlreadyExists(taken)
        await self._publish(tenant_id, AccountRegistered(), None)
        return await self._enroll_install(tenant_id, install_label, public_key)

    async def sign_in(
        self, login: str, password: str, csr: bytes, install_label: str = ""
    ) -> Enrollment:
        """Enroll a new app install under an existing account, given its password.

        Wrong passwords count toward the account's limit (password_attempts.py); a
        login no account holds is counted under its hash, with the same answers."""
        validation.login(login)
        validation.given_password(password)
        validation.label(install_label, "install_label")
        public_key = validate_csr(csr)
        tenant_id = await self._accounts.tenant_for_login(login)
        account = await self._accounts.get(tenant_id) if tenant_id is not None else None
        key = login_key(login) if tenant_id is None else tenant_key(tenant_id)
        if not await self._password_matches(key, account, password):
            raise BadCredentials(_WRONG_LOGIN)
        assert account is not None
        return await self._enroll_install(account.tenant_id, install_label, public_key)

    async def get_account(self, tenant_id: str) -> AccountView:
        account = await self._account(tenant_id)
        return AccountView(account.tenant_id, account.login, account.created_at)

    async def update_login(self, tenant_id: str, new_login: str) -> str:
        """Change the account's login; a taken login is AlreadyExists."""
        validation.login(new_login)
        account = await self._account(tenant_id)
        if account.login == new_login:
            return new_login
        if not await self._accounts.claim_login(new_login, tenant_id):
            raise AlreadyExists(f"the login {new_login!r} is taken; choose another")
        try:
            previous = await self._modify(
                self._accounts, tenant_id, lambda a: replace(a, login=new_login), self._no_account
            )
        except BaseException:
            await self._accounts.release_login(new_login, tenant_id)
            raise
        await self._accounts.release_login(previous.login, tenant_id)
        return new_login

    async def change_password(self, tenant_id: str, current: str, new: str) -> None:
        validation.given_password(current, "current_password")
        validation.new_password(new)
        account = await self._account(tenant_id)
        if not await self._password_matches(tenant_key(tenant_id), account, current):
            raise BadCredentials("the current password is wrong")
        new_hash = await asyncio.to_thread(self._passwords.hash, new)
        if not await self._accounts.replace(account, replace(account, password_hash=new_hash)):
            raise Conflict("the account changed during this request; try again")

    async def verify_password(self, tenant_id: str, password: str) -> bool:
        """Re-check a password for a destructive request relayed by another service.
        Counts toward the account's limit like SignIn: TooManyAttempts once it is spent."""
        validation.given_password(password)
        account = await self._accounts.get(tenant_id)
        return await self._password_matches(tenant_key(tenant_id), account, password)

    async def list_installs(
        self, tenant_id: str, current_install_id: str | None = None
    ) -> list[InstallView]:
        installs = await self._installs.list_for_tenant(tenant_id)
        return [
            InstallView(
                install.install_id,
                install.label,
                install.enrolled_at,
                install.certificate_not_after,
                install.install_id == current_install_id,
            )
            for install in sorted(installs, key=lambda i: i.enrolled_at)
        ]

    async def revoke_install(
        self, tenant_id: str, install_id: str, actor: Subject | None = None
    ) -> datetime:
        """Sign an install out (the caller's own or a lost phone): revoke its certificates."""
        validation.identifier(install_id, "install_id")
        install = await self._installs.get(install_id)
        if install is None or install.tenant_id != tenant_id:
            raise NotFound("no app install with this id on your account")
        await self._remove_install(install, RevocationReason.OWNER_REQUEST, actor)
        return self._clock.now()

    # --- camera pairing and certificates --------------------------------------------

    async def create_claim_token(
        self, tenant_id: str, actor: Subject | None = None
    ) -> IssuedClaimToken:
        await self._account(tenant_id)
        token, token_hash = new_token()
        now = self._clock.now()
        expires_at = now + self._config.claim_token_ttl
        await self._tokens.put(ClaimToken(token_hash, tenant_id, now, expires_at, actor))
        return IssuedClaimToken(token, expires_at)

    async def enroll_camera(self, claim_token: str, csr: bytes, serial: str) -> Enrollment:
        """Pair a camera with the account that made the claim token.

        The token is spent only once everything else is valid, so a malformed CSR
        does not cost the owner a new token. Pairing a serial the account already has
        replaces that camera (a factory reset): the old record, certificates and grants
        go. The same serial under another account is left alone: a serial is only what
        the camera says, so it may neither block nor evict another account's camera.
        """
        validation.serial(serial)
        if not well_formed(claim_token):
            raise InvalidInput("claim_token must be the 43-character code from the owner's app")
        public_key = validate_csr(csr)
        token = await self._tokens.take(hash_token(claim_token))
        now = self._clock.now()
        if token is None or now >= token.expires_at:
            raise BadCredentials(_UNUSABLE_CLAIM)
        tenant_id = token.tenant_id
        if await self._accounts.get(tenant_id) is None:
            raise BadCredentials(_UNUSABLE_CLAIM)
        previous = await self._cameras.find_serial(tenant_id, serial)
        if previous is not None:
            await self._remove_camera(previous, RevocationReason.SUPERSEDED, None)
        device_id = str(uuid.uuid4())
        certificate = self._issuer.issue_camera(tenant_id, device_id, public_key)
        camera = Camera(
            device_id=device_id,
            tenant_id=tenant_id,
            serial=serial,
            enrolled_at=now,
            certificates=(CertificateRef(certificate.serial, certificate.not_after),),
            settings=CameraSettings(
                activity_alerts_enabled=False,
                retention_days=self._config.default_retention_days,
            ),
            key_sha256=key_digest(public_key),
        )
        if not await self._cameras.create(camera):
            raise Conflict("could not record the camera; pair it again")
        actor = Subject(PrincipalKind.CAMERA, tenant_id, device_id)
        await self._publish(
            tenant_id,
            CameraEnrolled(device_id, certificate.serial_hex, certificate.not_after),
            actor,
        )
        await self._publish(
            tenant_id, CameraSettingsChanged(device_id, camera.settings_view()), actor
        )
        return Enrollment(tenant_id, device_id, certificate)

    async def renew_certificate(
        self, subject: Subject, presented_serial: int, csr: bytes
    ) -> IssuedCertificate:
        """A new certificate for the caller's own identity (from its current certificate,
        never from the CSR). The previous one stays valid until it expires."""
        public_key = validate_csr(csr)
        if subject.kind not in (PrincipalKind.CAMERA, PrincipalKind.APP) or not subject.tenant_id:
            raise Forbidden("only cameras and app installs renew certificates here")
        tenant_id = subject.tenant_id
        gone = BadCredentials(
            "this certificate can no longer be renewed (revoked or replaced); "
            "pair the camera or sign the app in again"
        )
        record: Camera | AppInstall | None
        if subject.kind is PrincipalKind.CAMERA:
            record = await self._cameras.get(subject.name)
        else:
            record = await self._installs.get(subject.name)
        if (
            record is None
            or record.tenant_id != tenant_id
            or all(c.serial != presented_serial for c in record.certificates)
        ):
            raise gone
        pinned = key_digest(public_key)
        if isinstance(record, Camera) and record.key_sha256 not in ("", pinned):
            raise Forbidden(
                "a camera renews its certificate with the key it paired with; "
                "to change keys, pair it again"
            )
        certificate = self._issuer.issue(subject.kind, tenant_id, subject.name, public_key)
        ref = CertificateRef(certificate.serial, certificate.not_after)
        now = self._clock.now()

        def add(certificates: tuple[CertificateRef, ...]) -> tuple[CertificateRef, ...]:
            return (*(c for c in certificates if c.not_after > now), ref)

        def missing() -> Exception:
            return gone

        if subject.kind is PrincipalKind.CAMERA:
            await self._modify(
                self._cameras,
                subject.name,
                lambda c: replace(c, certificates=add(c.certificates), key_sha256=pinned),
                missing,
            )
        else:
            await self._modify(
                self._installs,
                subject.name,
                lambda i: replace(i, certificates=add(i.certificates)),
                missing,
            )
        await self._publish(
            tenant_id,
            CertificateRenewed(subject, certificate.serial_hex, certificate.not_after),
            subject,
        )
        return certificate

    async def list_cameras(self, tenant_id: str) -> list[CameraView]:
        """Cameras the tenant owns (oldest first), then those shared with it."""
        owned = sorted(await self._cameras.list_for_tenant(tenant_id), key=lambda c: c.enrolled_at)
        views = [self._camera_view(camera, None) for camera in owned]
        now = self._clock.now()
        for grant in sorted(
            await self._grants.list_received(tenant_id), key=lambda g: g.created_at
        ):
            camera = await self._cameras.get(grant.device_id)
            if grant.active(now) and camera is not None and camera.tenant_id != tenant_id:
                views.append(self._camera_view(camera, grant))
        return views

    async def get_camera(self, tenant_id: str, device_id: str) -> CameraView:
        camera, grant = await self._access(tenant_id, device_id)
        return self._camera_view(camera, grant)

    async def revoke_camera(
        self, tenant_id: str, device_id: str, actor: Subject | None = None
    ) -> datetime:
        """Remove a camera: revoke its certificates and its grants. Owner only."""
        camera = await self._owned(tenant_id, device_id)
        await self._remove_camera(camera, RevocationReason.OWNER_REQUEST, actor)
        return self._clock.now()

    # --- camera settings ---------------------------------------------------------

    async def get_camera_settings(self, tenant_id: str, device_id: str) -> SettingsView:
        """For the owner and grantees (read only)."""
        camera, _ = await self._access(tenant_id, device_id)
        return camera.settings_view()

    async def settings_for_service(self, device_id: str) -> SettingsView:
        """For internal services, which act across tenants."""
        return (await self._camera(device_id)).settings_view()

    async def update_camera_settings(
        self,
        tenant_id: str,
        device_id: str,
        *,
        activity_alerts_enabled: bool | None = None,
        retention_days: int | None = None,
        label: str | None = None,
        mute_watch_rules: Iterable[str] = (),
        unmute_watch_rules: Iterable[str] = (),
        watch_burst_count: int | None = None,
        actor: Subject | None = None,
    ) -> SettingsView:
        """Change what is given (None leaves it; the watch's rules are muted and unmuted
        by name, domain/watch.py); publishes the complete new settings."""
        config = self._config
        if retention_days is not None and not (
            config.min_retention_days <= retention_days <= config.max_retention_days
        ):
            raise InvalidInput(
                f"retention_days must be {config.min_retention_days} to "
                f"{config.max_retention_days} on this platform"
            )
        if label is not None:
            validation.label(label)
        mute, unmute = tuple(mute_watch_rules), tuple(unmute_watch_rules)
        watch.tuned((), mute, unmute)  # refuses a bad request before any lookup
        if watch_burst_count is not None:
            watch.burst_count(watch_burst_count)
        before = await self._owned(tenant_id, device_id)

        def change(camera: Camera) -> Camera:
            settings = camera.settings
            return replace(
                camera,
                settings=replace(
                    settings,
                    activity_alerts_enabled=settings.activity_alerts_enabled
                    if activity_alerts_enabled is None
                    else activity_alerts_enabled,
                    retention_days=settings.retention_days
                    if retention_days is None
                    else retention_days,
                    label=settings.label if label is None else label,
                    watch_muted=watch.tuned(settings.watch_muted, mute, unmute),
                    watch_burst_count=settings.watch_burst_count
                    if watch_burst_count is None
                    else watch_burst_count,
                ),
            )

        previous = await self._modify(self._cameras, before.device_id, change, self._no_camera)
        after = change(previous)
        if after.settings != previous.settings:
            await self._publish(
                tenant_id, CameraSettingsChanged(device_id, after.settings_view()), actor
            )
        return after.settings_view()

    # --- privacy mode (the checks and the log: domain/privacy.py) -------------------

    async def privacy_target(
        self, tenant_id: str, device_id: str
    ) -> tuple[Camera, tuple[str, ...]]:
        """The owner's camera (a grantee is refused, anyone else NOT_FOUND) and its
        household: the owner and every tenant with an active grant on it."""
        camera = await self._owned(tenant_id, device_id)
        return camera, await self._household(camera)

    async def set_privacy(
        self,
        camera: Camera,
        statement: bytes,
        still_newer: Callable[[bytes], None],
        household: tuple[str, ...],
        actor: Subject,
    ) -> SettingsView:
        """Store the owner's statement (``still_newer`` raises if a newer one won a race)
        and publish it: settings for the services, PrivacyModeChanged for the camera."""

        def change(current: Camera) -> Camera:
            still_newer(current.privacy)
            return replace(current, privacy=statement)

        after = change(await self._modify(self._cameras, camera.device_id, change, self._no_camera))
        await self._publish_settings(after, actor)
        await self._publish(
            camera.tenant_id, PrivacyModeChanged(camera.device_id, statement, household), actor
        )
        return after.settings_view()

    # --- camera PIN --------------------------------------------------------------

    async def set_pin(
        self, tenant_id: str, device_id: str, pin: str, actor: Subject | None = None
    ) -> None:
        """Set a PIN on a camera that has none. Owner only."""
        validation.pin(pin)
        camera = await self._owned(tenant_id, device_id)
        if camera.pin_hash is not None:
            raise PreconditionFailed("this camera already has a PIN; change or clear it instead")
        pin_hash = await asyncio.to_thread(self._pins.hash, pin)
        camera = await self._swap_pin(camera, pin_hash)
        await self._pins.reset(device_id)
        await self._publish(tenant_id, PinChanged(device_id, PinChange.SET), actor)
        await self._publish_settings(camera, actor)

    async def change_pin(
        self,
        tenant_id: str,
        device_id: str,
        current_pin: str,
        new_pin: str,
        actor: Subject | None = None,
    ) -> None:
        """Replace the PIN. A wrong current PIN counts toward the lockout. Owner only."""
        validation.pin(current_pin, "current_pin")
        validation.pin(new_pin, "new_pin")
        camera = await self._pinned_camera(tenant_id, device_id)
        await self._require_pin(camera, current_pin, actor)
        pin_hash = await asyncio.to_thread(self._pins.hash, new_pin)
        await self._swap_pin(camera, pin_hash)
        await self._pins.reset(device_id)
        await self._publish(tenant_id, PinChanged(device_id, PinChange.CHANGED), actor)

    async def clear_pin(
        self,
        tenant_id: str,
        device_id: str,
        *,
        current_pin: str | None = None,
        password: str | None = None,
        actor: Subject | None = None,
    ) -> None:
        """Remove the PIN, proven by the current PIN or (forgotten PIN, or a lockout)
        the account password. Owner only."""
        if (current_pin is None) == (password is None):
            raise InvalidInput("give either the current PIN or the account password")
        if current_pin is not None:
            validation.pin(current_pin, "current_pin")
        if password is not None:
            validation.given_password(password)
        camera = await self._pinned_camera(tenant_id, device_id)
        if current_pin is not None:
            await self._require_pin(camera, current_pin, actor)
        elif not await self._password_matches(
            tenant_key(tenant_id), await self._accounts.get(tenant_id), password or ""
        ):
            raise BadCredentials("the account password is wrong")
        camera = await self._swap_pin(camera, None)
        await self._pins.reset(device_id)
        await self._publish(tenant_id, PinChanged(device_id, PinChange.CLEARED), actor)
        await self._publish_settings(camera, actor)

    async def check_pin(
        self, device_id: str, pin: str, on_behalf_of: Subject | None = None
    ) -> PinCheck:
        """Check a PIN, counting a wrong try; anything but 4 digits is a wrong try, and
        refusals and lockouts come back as results, not errors. No RPC calls this: viewing
        checks the PIN in `authorize_viewing`, which raises instead."""
        camera = await self._camera(device_id)
        if camera.pin_hash is None:
            return PinCheck(PinCheckResult.NOT_SET)
        check = await self._pins.check(device_id, camera.pin_hash, pin)
        await self._report_lockout(camera, check, on_behalf_of)
        return check

    # --- sharing -----------------------------------------------------------------

    async def create_grant(
        self,
        owner_tenant_id: str,
        device_id: str,
        grantee_login: str,
        scopes: Iterable[GrantScope],
        expires_at: datetime | None = None,
        actor: Subject | None = None,
    ) -> GrantView:
        """Give another account viewer rights on a camera. Owner only."""
        validation.login(grantee_login)
        chosen = list(scopes)
        if not chosen or len(set(chosen)) != len(chosen):
            raise InvalidInput("scopes must name live, clips and/or talk, each at most once")
        now = self._clock.now()
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
            raise InvalidInput("expires_at must be a moment in the future (with a time zone)")
        camera = await self._owned(owner_tenant_id, device_id)
        grantee = await self._accounts.tenant_for_login(grantee_login)
        if grantee is None:
            raise NotFound(f"no account has the login {grantee_login!r}")
        if grantee == owner_tenant_id:
            raise InvalidInput("you own this camera already; share it with another account")
        existing = [g for g in await self._grants.list_for_device(device_id) if g.active(now)]
        if any(g.grantee_tenant_id == grantee for g in existing):
            raise AlreadyExists(
                "this camera is already shared with that account; revoke that grant to change it"
            )
        if len(existing) >= self._config.max_grants_per_camera:
            raise PreconditionFailed(
                f"a camera can be shared with at most {self._config.max_grants_per_camera} "
                "accounts; revoke a grant first"
            )
        grant = Grant(
            grant_id=str(uuid.uuid4()),
            device_id=camera.device_id,
            owner_tenant_id=owner_tenant_id,
            grantee_tenant_id=grantee,
            scopes=frozenset(chosen),
            created_at=now,
            expires_at=expires_at,
        )
        if not await self._grants.create(grant):
            raise Conflict("could not record the grant; try again")
        await self._publish(owner_tenant_id, GrantCreated(grant), actor)
        return GrantView(grant, grantee_login)

    async def list_grants(
        self,
        tenant_id: str,
        direction: GrantDirection | None = None,
        device_id: str | None = None,
    ) -> list[GrantView]:
        """Active grants the tenant made and/or received (None: both), newest first."""
        now = self._clock.now()
        views: list[GrantView] = []
        if direction in (None, GrantDirection.GIVEN):
            for grant in await self._grants.list_given(tenant_id):
                grantee = await self._accounts.get(grant.grantee_tenant_id)
                views.append(GrantView(grant, grantee.login if grantee else ""))
        if direction in (None, GrantDirection.RECEIVED):
            views += [GrantView(g, "") for g in await self._grants.list_received(tenant_id)]
        views = [
            v
            for v in views
            if v.grant.active(now) and (device_id is None or v.grant.device_id == device_id)
        ]
        return sorted(views, key=lambda v: v.grant.created_at, reverse=True)

    async def revoke_grant(
        self, tenant_id: str, grant_id: str, actor: Subject | None = None
    ) -> datetime:
        """End a grant: its owner revokes it or its grantee gives it up."""
        validation.identifier(grant_id, "grant_id")
        grant = await self._grants.get(grant_id)
        if grant is None or tenant_id not in (grant.owner_tenant_id, grant.grantee_tenant_id):
            raise NotFound("no grant with this id made or received by your account")
        await self._remove_grant(grant, actor)
        return self._clock.now()

    async def expire_grants(self) -> int:
        """Revoke grants whose expiry has passed, announcing each with GrantRevoked
        (reason EXPIRED, no actor); how many. Reads already ignore expired grants; this
        tells other services and drops the records.

        Safe on every replica at once: a grant already removed is skipped, and one
        grant's expiry is always announced with the same event id and time, so a
        repeat from another replica (or a retry after a crash between the event and
        the delete) is the same event to every consumer."""
        expired = await self._grants.list_expired(
            self._clock.now(), self._config.grant_expiry_batch
        )
        removed = 0
        for grant in expired:
            if grant.expires_at is None or await self._grants.get(grant.grant_id) is None:
                continue  # removed meanwhile: by its owner, or by another replica's sweep
            event_id = uuid.uuid5(_EVENT_NAMESPACE, f"grant-expired/{grant.grant_id}")
            await self._remove_grant(
                grant,
                None,
                GrantEndReason.EXPIRED,
                event_id=str(event_id),
                occurred_at=grant.expires_at,
            )
            removed += 1
        return removed

    async def authorize_viewing(
        self,
        viewer_tenant_id: str,
        device_id: str,
        scope: GrantScope,
        *,
        pin: str | None,
        actor: Subject | None = None,
    ) -> ViewingDecision:
        """May this tenant's app view the camera (live or clips)? With `pin` given, a camera
        that has a PIN needs it to match; a wrong one counts toward the lockout."""
        camera, grant = await self._access(viewer_tenant_id, device_id)
        if grant is not None and scope not in grant.scopes:
            what = _SCOPE_WORDS[scope]
            raise Forbidden(f"your grant on this camera does not include {what}")
        pin_checked = False
        if pin is not None and camera.pin_hash is not None:
            if not pin:
                raise WrongPin("this camera has a PIN: enter it to continue")
            await self._require_pin(camera, pin, actor)
            pin_checked = True
        return ViewingDecision(
            owner_tenant_id=camera.tenant_id,
            grant_id=grant.grant_id if grant else None,
            settings=camera.settings_view(),
            household_tenant_ids=await self._household(camera),
            pin_checked=pin_checked,
        )

    async def _household(self, camera: Camera) -> tuple[str, ...]:
        now = self._clock.now()
        grantees = [
            g.grantee_tenant_id
            for g in await self._grants.list_for_device(camera.device_id)
            if g.active(now) and g.grantee_tenant_id != camera.tenant_id
        ]
        return (camera.tenant_id, *dict.fromkeys(grantees))

    async def export_tenant(self, tenant_id: str) -> TenantExport:
        """For the tenant's data export (retention service)."""
        validation.identifier(tenant_id, "tenant_id")
        account = await self.get_account(tenant_id)
        cameras = [c for c in await self.list_cameras(tenant_id) if c.role is CameraRole.OWNER]
        return TenantExport(
            account=account,
            installs=await self.list_installs(tenant_id),
            cameras=cameras,
            grants_given=await self.list_grants(tenant_id, GrantDirection.GIVEN),
            grants_received=await self.list_grants(tenant_id, GrantDirection.RECEIVED),
        )

    async def can_view(self, tenant_id: str, device_id: str, scope: GrantScope) -> bool:
        """Whether the tenant owns the camera or holds an active grant with this scope."""
        try:
            _, grant = await self._access(tenant_id, device_id)
        except (NotFound, InvalidInput):
            return False
        return grant is None or scope in grant.scopes

    # --- account deletion ------------------------------------------------------------

    async def purge_tenant(
        self, tenant_id: str, cancellation_id: str, actor: Subject | None = None
    ) -> PurgeReport:
        """Delete everything of the tenant and revoke every certificate. Idempotent: a
        retry removes what is left (nothing, after a complete run) and republishes the
        same AccountDeleted."""
        validation.identifier(tenant_id, "tenant_id")
        validation.identifier(cancellation_id, "cancellation_id")
        reason = RevocationReason.ACCOUNT_DELETED
        cameras = grants = certificates = 0
        for camera in await self._cameras.list_for_tenant(tenant_id):
            grants += await self._remove_camera(camera, reason, actor)
            certificates += len(camera.certificates)
            cameras += 1
        installs = await self._installs.list_for_tenant(tenant_id)
        for install in installs:
            await self._remove_install(install, reason, actor)
            certificates += len(install.certificates)
        for grant in await self._grants.list_received(tenant_id):
            await self._remove_grant(grant, actor)
            grants += 1
        for grant in await self._grants.list_given(tenant_id):  # cameras already gone
            await self._remove_grant(grant, actor)
            grants += 1
        await self._tokens.delete_for_tenant(tenant_id)
        account = await self._accounts.get(tenant_id)
        if account is not None:
            await self._accounts.release_login(account.login, tenant_id)
            await self._accounts.delete(tenant_id)
        event_id = uuid.uuid5(_EVENT_NAMESPACE, f"{tenant_id}/{cancellation_id}")
        await self._publish(tenant_id, AccountDeleted(cancellation_id), actor, str(event_id))
        return PurgeReport(cameras, len(installs), grants, certificates, self._clock.now())

    # --- helpers -----------------------------------------------------------------------

    async def _password_matches(self, key: str, account: Account | None, password: str) -> bool:
        """Check a password at the same cost whether or not the account exists, counted
        under `key` (TooManyAttempts, and nothing checked, once its budget is spent)."""
        await self._password_guard.admit(key)
        if account is None:
            await asyncio.to_thread(self._passwords.verify_nothing, password)
            return False
        verification: Verification = await asyncio.to_thread(
            self._passwords.verify, account.password_hash, password
        )
        if verification.ok and verification.rehashed is not None:
            # Upgrade to the current parameters; losing a race here only delays it.
            await self._accounts.replace(
                account, replace(account, password_hash=verification.rehashed)
            )
        if verification.ok:
            await self._password_guard.succeeded(key)
        return verification.ok

    async def _enroll_install(
        self, tenant_id: str, label: str, public_key: ec.EllipticCurvePublicKey
    ) -> Enrollment:
        install_id = str(uuid.uuid4())
        certificate = self._issuer.issue_app(tenant_id, install_id, public_key)
        install = AppInstall(
            install_id=install_id,
            tenant_id=tenant_id,
            label=label,
            enrolled_at=self._clock.now(),
            certificates=(CertificateRef(certificate.serial, certificate.not_after),),
        )
        if not await self._installs.create(install):
            raise Conflict("could not record the app install; try again")
        try:
            await self._publish(
                tenant_id,
                AppInstallEnrolled(install_id, certificate.serial_hex, certificate.not_after),
                Subject(PrincipalKind.APP, tenant_id, install_id),
            )
        except BaseException:
            # Not enrolled after all: the certificate never leaves here, and the account
            # lists no install its owner never got.
            await self._installs.delete(install_id)
            raise
        return Enrollment(tenant_id, install_id, certificate)

    async def _account(self, tenant_id: str) -> Account:
        account = await self._accounts.get(tenant_id)
        if account is None:
            raise self._no_account()
        return account

    @staticmethod
    def _no_account() -> Exception:
        return NotFound("this account no longer exists")

    @staticmethod
    def _no_camera() -> Exception:
        return NotFound(_NO_CAMERA)

    async def _camera(self, device_id: str) -> Camera:
        validation.identifier(device_id, "device_id")
        camera = await self._cameras.get(device_id)
        if camera is None:
            raise NotFound("no camera with this id")
        return camera

    async def _access(self, tenant_id: str, device_id: str) -> tuple[Camera, Grant | None]:
        """The camera and, for a viewer, the grant that lets the tenant see it."""
        validation.identifier(device_id, "device_id")
        camera = await self._cameras.get(device_id)
        if camera is None:
            raise NotFound(_NO_CAMERA)
        if camera.tenant_id == tenant_id:
            return camera, None
        now = self._clock.now()
        for grant in await self._grants.list_received(tenant_id):
            if grant.device_id == device_id and grant.active(now):
                return camera, grant
        raise NotFound(_NO_CAMERA)

    async def _owned(self, tenant_id: str, device_id: str) -> Camera:
        camera, grant = await self._access(tenant_id, device_id)
        if grant is not None:
            raise Forbidden("only the camera's owner can do this; your grant lets you view it")
        return camera

    async def _pinned_camera(self, tenant_id: str, device_id: str) -> Camera:
        camera = await self._owned(tenant_id, device_id)
        if camera.pin_hash is None:
            raise PreconditionFailed("this camera has no PIN; set one first")
        return camera

    async def _require_pin(self, camera: Camera, pin: str, actor: Subject | None) -> None:
        assert camera.pin_hash is not None
        check = await self._pins.check(camera.device_id, camera.pin_hash, pin)
        await self._report_lockout(camera, check, actor)
        if check.result is PinCheckResult.OK:
            return
        wait = check.retry_after
        if check.result is PinCheckResult.LOCKED_OUT:
            if check.locked:
                raise LockedOut(
                    f"too many wrong PINs: PIN checks on this camera are locked for "
                    f"{seconds(wait)}; clear the PIN with the account password to end it",
                    wait,
                )
            raise TooManyAttempts(f"too many wrong PINs; try again in {seconds(wait)}", wait)
        later = f"; the next try is accepted in {seconds(wait)}" if wait else ""
        raise WrongPin(f"the current PIN is wrong{later}")

    async def _report_lockout(
        self, camera: Camera, check: PinCheck, last_attempt_by: Subject | None
    ) -> None:
        if check.lockout_started:
            await self._publish(
                camera.tenant_id,
                PinLockedOut(camera.device_id, check.failures, check.retry_after, last_attempt_by),
                last_attempt_by,
            )

    async def _swap_pin(self, camera: Camera, pin_hash: str | None) -> Camera:
        """Replace the PIN only if it is still the one this request saw; the camera after."""

        def swap(current: Camera) -> Camera:
            if current.pin_hash != camera.pin_hash:
                raise Conflict("the PIN was changed by another request; check it and try again")
            return replace(current, pin_hash=pin_hash)

        return swap(await self._modify(self._cameras, camera.device_id, swap, self._no_camera))

    async def _publish_settings(self, camera: Camera, actor: Subject | None) -> None:
        await self._publish(
            camera.tenant_id, CameraSettingsChanged(camera.device_id, camera.settings_view()), actor
        )

    async def _remove_camera(
        self, camera: Camera, reason: RevocationReason, actor: Subject | None
    ) -> int:
        """Revoke a camera's grants and certificates, then forget it; the grants removed.

        Events go first: if this stops half-way, the camera is still there and a
        retry does the rest, and no certificate outlives its record unrevoked.
        """
        grants = await self._grants.list_for_device(camera.device_id)
        for grant in grants:
            await self._remove_grant(grant, actor)
        subject = Subject(PrincipalKind.CAMERA, camera.tenant_id, camera.device_id)
        await self._revoke_and_delete(
            self._cameras, camera.device_id, camera, subject, reason, actor
        )
        await self._pins.reset(camera.device_id)
        return len(grants)

    async def _remove_install(
        self, install: AppInstall, reason: RevocationReason, actor: Subject | None
    ) -> None:
        subject = Subject(PrincipalKind.APP, install.tenant_id, install.install_id)
        await self._revoke_and_delete(
            self._installs, install.install_id, install, subject, reason, actor
        )

    async def _revoke_and_delete(
        self,
        store: RecordStore[Certified],
        record_id: str,
        record: Certified,
        subject: Subject,
        reason: RevocationReason,
        actor: Subject | None,
    ) -> None:
        """Revoke every certificate of a camera or install, then forget the record.

        A renewal landing between the read and the delete adds a certificate the
        revocation did not list (its subject is revoked all the same, but not for
        long enough: `covers_until` is the latest listed expiry). So the record is read
        again before the delete, and the revocation rewritten with what it missed.
        """
        revoked: tuple[CertificateRef, ...] = record.certificates
        await self._revoke(subject, revoked, reason, actor)
        for _ in range(_CAS_TRIES):
            current = await store.get(record_id)
            if current is None:
                return  # removed meanwhile (a concurrent removal or purge)
            missed: tuple[CertificateRef, ...] = tuple(
                c for c in current.certificates if c not in revoked
            )
            if not missed:
                await store.delete(record_id)
                return
            revoked = (*revoked, *missed)
            await self._revoke(subject, revoked, reason, actor)
        raise Conflict("this identity kept renewing while it was being revoked; try again")

    async def _revoke(
        self,
        subject: Subject,
        certificates: tuple[CertificateRef, ...],
        reason: RevocationReason,
        actor: Subject | None,
    ) -> None:
        assert subject.tenant_id is not None
        await self._publish(
            subject.tenant_id,
            CertificateRevoked(
                subject,
                tuple(c.serial_hex for c in certificates),
                all_certificates=True,
                reason=reason,
                not_after=tuple(c.not_after for c in certificates),
            ),
            actor,
        )

    async def _remove_grant(
        self,
        grant: Grant,
        actor: Subject | None,
        reason: GrantEndReason = GrantEndReason.REVOKED,
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        await self._publish(
            grant.owner_tenant_id,
            GrantRevoked(grant.grant_id, grant.device_id, grant.grantee_tenant_id, reason),
            actor,
            event_id,
            occurred_at,
        )
        await self._grants.delete(grant.grant_id)

    def _camera_view(self, camera: Camera, grant: Grant | None) -> CameraView:
        if grant is None:
            return self._owner_views.get(camera.device_id, camera)
        return self._make_camera_view(camera, grant)

    def _make_camera_view(self, camera: Camera, grant: Grant | None) -> CameraView:
        return CameraView(
            device_id=camera.device_id,
            owner_tenant_id=camera.tenant_id,
            serial=camera.serial if grant is None else "",
            enrolled_at=camera.enrolled_at,
            certificate_not_after=camera.certificate_not_after,
            role=CameraRole.OWNER if grant is None else CameraRole.VIEWER,
            scopes=frozenset() if grant is None else grant.scopes,
            settings=camera.settings_view(),
            key_sha256=camera.key_sha256,
        )

    async def _modify(
        self,
        store: RecordStore[R],
        record_id: str,
        change: Callable[[R], R],
        missing: Callable[[], Exception],
    ) -> R:
        """Apply `change` with compare-and-set, re-reading on a lost race; the record
        as it was just before the change that won."""
        for _ in range(_CAS_TRIES):
            current = await store.get(record_id)
            if current is None:
                raise missing()
            if await store.replace(current, change(current)):
                return current
        raise Conflict("this record is being changed by many requests at once; try again")

    async def _publish(
        self,
        tenant_id: str,
        body: EventBody,
        actor: Subject | None,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        await self._events.publish(
            IdentityEvent(
                event_id=event_id or str(uuid.uuid4()),
                tenant_id=tenant_id,
                occurred_at=occurred_at or self._clock.now(),
                actor=actor,
                body=body,
            )
        )
