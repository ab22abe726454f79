"""The DeviceAuthService servicer, called in-process: each handler runs as a simulated
caller (set_current_principal) over the domain with in-memory fakes, no network.

Statuses are checked the way the shared interceptor computes them: `status_for` of the
exception a handler raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, TypeVar

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import Principal, PrincipalKind, principal_from_pem
from services.common.auth import set_current_principal
from services.common.errors import Unavailable, status_for
from services.device_auth.adapters.events import identity_event_pb
from services.device_auth.api.policies import SERVICE_DESCRIPTOR
from services.device_auth.api.servicer import DeviceAuthServicer
from services.device_auth.domain import errors
from services.device_auth.domain.events import (
    CameraSettingsChanged,
    CertificateRevoked,
    PinLockedOut,
)
from services.device_auth.domain.exports import TenantExporter
from services.device_auth.domain.privacy import PrivacyModes
from services.device_auth.domain.records import Subject
from tests.unit.device_auth.conftest import PASSWORD, START, TRUST_DOMAIN, World, make_csr

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Req, Any], Coroutine[Any, Any, Resp]]

CODE = grpc.StatusCode
RETENTION = Principal(
    PrincipalKind.SERVICE, "retention", None, TRUST_DOMAIN, 7, START + timedelta(days=365)
)
CANCELLATION = "0c5d8a2e-7f41-4b6a-9e3d-2a1b0c9d8e7f"
LIVE, CLIPS = identity_pb2.GRANT_SCOPE_LIVE, identity_pb2.GRANT_SCOPE_CLIPS


class FakeContext:
    """The little of grpc.aio.ServicerContext a handler could touch (these touch none)."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def invocation_metadata(self) -> tuple[()]:
        return ()


async def call(principal: Principal | None, handler: Handler[Req, Resp], request: Req) -> Resp:
    """Run one handler as `principal`, in a fresh context. None is the enrollment port:
    no client certificate, so current_principal() raises there."""
    context = contextvars.Context()
    if principal is not None:
        context.run(set_current_principal, principal)
    return await asyncio.create_task(handler(request, FakeContext()), context=context)


async def status_of(call_result: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    """The status and message the interceptor would send for this failing call."""
    try:
        await call_result
    except Exception as error:
        return status_for(error)
    raise AssertionError("the call succeeded; expected an error status")


def principal_of(certificate: pb.IssuedCertificate) -> Principal:
    """The caller the issued certificate makes, as the interceptor would parse it."""
    leaf = x509.load_der_x509_certificate(certificate.certificate_chain[0])
    return principal_from_pem(leaf.public_bytes(serialization.Encoding.PEM), TRUST_DOMAIN)


def rsa_csr() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def stamp(moment: Any) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def app_viewer(app: Principal | None) -> types_pb2.Principal:
    """An app as the service acting for it names it to AuthorizeCameraAccess."""
    assert app is not None
    assert app.tenant_id is not None
    return types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=app.tenant_id, id=app.name
    )


def live_view(device_id: str, app: Principal | None, pin: str) -> pb.AuthorizeCameraAccessRequest:
    """A live view as relay_broker asks for it: the PIN checked if the camera has one."""
    return pb.AuthorizeCameraAccessRequest(
        device_id=device_id, viewer=app_viewer(app), scope=LIVE, check_pin=True, pin=pin
    )


@dataclass
class Api:
    world: World
    servicer: DeviceAuthServicer

    async def register(self, login: str) -> tuple[pb.RegisterAccountResponse, Principal]:
        response = await call(
            None,
            self.servicer.RegisterAccount,
            pb.RegisterAccountRequest(
                login=login, password=PASSWORD, csr=make_csr(), install_label="phone"
            ),
        )
        return response, principal_of(response.certificate)

    async def pair(
        self, owner: Principal, serial: str = "SN-0001"
    ) -> tuple[pb.EnrollCameraResponse, Principal]:
        token = await call(owner, self.servicer.CreateClaimToken, pb.CreateClaimTokenRequest())
        response = await call(
            None,
            self.servicer.EnrollCamera,
            pb.EnrollCameraRequest(claim_token=token.claim_token, csr=make_csr(), serial=serial),
        )
        return response, principal_of(response.certificate)

    async def grant(
        self,
        owner: Principal,
        device_id: str,
        login: str,
        *scopes: identity_pb2.GrantScope.ValueType,
    ) -> identity_pb2.Grant:
        response = await call(
            owner,
            self.servicer.CreateGrant,
            pb.CreateGrantRequest(
                device_id=device_id,
                grantee_login=login,
                scopes=list(scopes) or [identity_pb2.GRANT_SCOPE_LIVE],
            ),
        )
        return response.grant


class LoggedReads:
    """The household's log as the exporter sees it: each read it was told of, in order."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str, str]] = []
        self.down = False

    async def record_export_read(self, tenant_id: str, export_id: str, reader: str) -> None:
        if self.down:
            raise Unavailable("the access log service is unavailable; retry later")
        self.reads.append((tenant_id, export_id, reader))

    async def record_privacy_change(
        self, tenant_id: str, device_id: str, install_id: str, statement_sha256: bytes
    ) -> None:
        if self.down:
            raise Unavailable("the access log service is unavailable; retry later")
        self.reads.append((tenant_id, device_id, install_id))


@pytest.fixture
def reads() -> LoggedReads:
    return LoggedReads()


@pytest.fixture
def api(world: World, reads: LoggedReads) -> Api:
    return Api(
        world,
        DeviceAuthServicer(
            world.service,
            [LOG_KEY],
            TenantExporter(world.service, reads),
            PrivacyModes(world.service, reads, world.clock),
        ),
    )


LOG_KEY = pb.AccessLogKey(key_id="log-1", public_key=bytes(range(32)))
"""The access log key every certificate in these tests is issued with."""


# --- shape -------------------------------------------------------------------------------


def test_every_rpc_of_the_service_is_implemented() -> None:
    for method in SERVICE_DESCRIPTOR.methods:
        assert method.name in vars(DeviceAuthServicer), method.name


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidInput("x"), CODE.INVALID_ARGUMENT),
        (errors.NotFound("x"), CODE.NOT_FOUND),
        (errors.AlreadyExists("x"), CODE.ALREADY_EXISTS),
        (errors.BadCredentials("x"), CODE.UNAUTHENTICATED),
        (errors.Forbidden("x"), CODE.PERMISSION_DENIED),
        (errors.WrongPin("x"), CODE.PERMISSION_DENIED),
        (errors.PreconditionFailed("x"), CODE.FAILED_PRECONDITION),
        (errors.TooManyAttempts("x", timedelta(seconds=4)), CODE.RESOURCE_EXHAUSTED),
        (errors.LockedOut("x", timedelta(hours=1)), CODE.RESOURCE_EXHAUSTED),
        (errors.Conflict("x"), CODE.ABORTED),
    ],
)
def test_each_domain_error_has_its_status(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error) == (code, "x")


# --- the whole journey ---------------------------------------------------------------------


async def test_register_pair_share_renew_revoke_and_purge(api: Api) -> None:
    svc, world = api.servicer, api.world

    # Register (enrollment port: no caller at all).
    registered, alice = await api.register("alice")
    tenant = registered.tenant_id
    assert (alice.kind, alice.tenant_id, alice.name) == (
        PrincipalKind.APP,
        tenant,
        registered.install_id,
    )
    chain = registered.certificate.certificate_chain
    assert len(chain) == 2
    leaf = x509.load_der_x509_certificate(chain[0])
    assert chain[1] == world.authority.certificate.public_bytes(serialization.Encoding.DER)
    assert leaf.issuer == world.authority.certificate.subject
    assert registered.certificate.serial_number == format(leaf.serial_number, "x")
    assert registered.certificate.not_before.ToDatetime(tzinfo=UTC) == leaf.not_valid_before_utc
    assert registered.certificate.not_after.ToDatetime(tzinfo=UTC) == START + timedelta(days=20)
    assert list(registered.certificate.access_log_keys) == [LOG_KEY]  # pinned by the app

    # Sign in on a second phone; both installs are listed, the caller marked current.
    signed_in = await call(
        None,
        svc.SignIn,
        pb.SignInRequest(login="alice", password=PASSWORD, csr=make_csr(), install_label="tablet"),
    )
    assert signed_in.tenant_id == tenant
    tablet = principal_of(signed_in.certificate)
    installs = (await call(tablet, svc.ListAppInstalls, pb.ListAppInstallsRequest())).installs
    assert [(i.label, i.current) for i in installs] == [("phone", False), ("tablet", True)]
    account = await call(alice, svc.GetAccount, pb.GetAccountRequest())
    assert (account.tenant_id, account.login) == (tenant, "alice")
    assert account.created_at.ToDatetime(tzinfo=UTC) == START

    # Pair a camera with a claim token and a P-256 CSR made "on the camera".
    token = await call(alice, svc.CreateClaimToken, pb.CreateClaimTokenRequest())
    assert len(token.claim_token) == 43
    assert token.expires_at.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=10)
    camera_key = ec.generate_private_key(ec.SECP256R1())
    enrolled = await call(
        None,
        svc.EnrollCamera,
        pb.EnrollCameraRequest(
            claim_token=token.claim_token, csr=make_csr(camera_key), serial="SN-0001"
        ),
    )
    device = enrolled.device_id
    cam = principal_of(enrolled.certificate)
    assert (cam.kind, cam.tenant_id, cam.name) == (PrincipalKind.CAMERA, tenant, device)
    camera_leaf = x509.load_der_x509_certificate(enrolled.certificate.certificate_chain[0])
    assert camera_leaf.public_key() == camera_key.public_key()
    assert list(enrolled.certificate.access_log_keys) == [LOG_KEY]  # the camera checks receipts

    # List and get it as the owner.
    (listed,) = (await call(alice, svc.ListCameras, pb.ListCamerasRequest())).cameras
    got = (await call(alice, svc.GetCamera, pb.GetCameraRequest(device_id=device))).camera
    assert listed == got
    assert (got.device_id, got.owner_tenant_id, got.serial, got.role) == (
        device,
        tenant,
        "SN-0001",
        identity_pb2.CAMERA_ROLE_OWNER,
    )
    assert list(got.scopes) == []
    assert got.enrolled_at.ToDatetime(tzinfo=UTC) == START
    assert got.certificate_not_after.ToDatetime(tzinfo=UTC) == START + timedelta(days=30)
    assert got.settings == identity_pb2.CameraSettings(retention_days=7)

    # Settings: alerts on, a label; read back by the owner and by a service.
    updated = await call(
        alice,
        svc.UpdateCameraSettings,
        pb.UpdateCameraSettingsRequest(
            device_id=device, activity_alerts_enabled=True, label="Front door"
        ),
    )
    expected = identity_pb2.CameraSettings(
        activity_alerts_enabled=True, retention_days=7, label="Front door"
    )
    assert updated.settings == expected
    settings_request = pb.GetCameraSettingsRequest(device_id=device)
    assert (await call(alice, svc.GetCameraSettings, settings_request)).settings == expected
    assert (await call(RETENTION, svc.GetCameraSettings, settings_request)).settings == expected

    # PIN: set it; a service asking for the app's live view has it checked.
    await call(alice, svc.SetPin, pb.SetPinRequest(device_id=device, pin="2468"))
    checked = await call(RETENTION, svc.AuthorizeCameraAccess, live_view(device, alice, "2468"))
    assert checked.pin_check == pb.PIN_CHECK_RESULT_OK
    assert (checked.owner_tenant_id, checked.is_owner) == (tenant, True)
    code, _ = await status_of(
        call(
            alice,
            svc.ChangePin,
            pb.ChangePinRequest(device_id=device, current_pin="1111", new_pin="1357"),
        )
    )
    assert code is CODE.PERMISSION_DENIED
    pinned = await call(alice, svc.GetCameraSettings, settings_request)
    assert pinned.settings.pin_set

    # Share with bob: he sees the camera as a viewer (no serial); carol sees nothing.
    _, bob = await api.register("bob")
    _, carol = await api.register("carol")
    grant = await api.grant(
        alice, device, "bob", identity_pb2.GRANT_SCOPE_CLIPS, identity_pb2.GRANT_SCOPE_LIVE
    )
    assert (grant.device_id, grant.owner_tenant_id, grant.grantee_tenant_id) == (
        device,
        tenant,
        bob.tenant_id,
    )
    assert grant.grantee_login == "bob"
    assert list(grant.scopes) == [identity_pb2.GRANT_SCOPE_LIVE, identity_pb2.GRANT_SCOPE_CLIPS]
    assert not grant.HasField("expires_at")
    (shared,) = (await call(bob, svc.ListCameras, pb.ListCamerasRequest())).cameras
    assert (shared.device_id, shared.serial, shared.role) == (
        device,
        "",
        identity_pb2.CAMERA_ROLE_VIEWER,
    )
    assert list(shared.scopes) == [identity_pb2.GRANT_SCOPE_LIVE, identity_pb2.GRANT_SCOPE_CLIPS]
    assert (await call(bob, svc.GetCameraSettings, settings_request)).settings == pinned.settings
    assert (await call(carol, svc.ListCameras, pb.ListCamerasRequest())).cameras == []
    code, message = await status_of(
        call(carol, svc.GetCamera, pb.GetCameraRequest(device_id=device))
    )
    assert code is CODE.NOT_FOUND
    assert device not in message
    code, _ = await status_of(call(carol, svc.GetCameraSettings, settings_request))
    assert code is CODE.NOT_FOUND

    # The owner's listing names the grantee; the grantee's own does not.
    given = await call(
        alice, svc.ListGrants, pb.ListGrantsRequest(direction=pb.GRANT_DIRECTION_GIVEN)
    )
    received = await call(
        bob, svc.ListGrants, pb.ListGrantsRequest(direction=pb.GRANT_DIRECTION_RECEIVED)
    )
    assert [g.grantee_login for g in given.grants] == ["bob"]
    assert [(g.grant_id, g.grantee_login) for g in received.grants] == [(grant.grant_id, "")]

    # Revoke the grant: bob loses the camera.
    revoked = await call(alice, svc.RevokeGrant, pb.RevokeGrantRequest(grant_id=grant.grant_id))
    assert revoked.revoked_at.ToDatetime(tzinfo=UTC) == START
    code, _ = await status_of(call(bob, svc.GetCamera, pb.GetCameraRequest(device_id=device)))
    assert code is CODE.NOT_FOUND
    assert (await call(bob, svc.ListCameras, pb.ListCamerasRequest())).cameras == []

    # The camera renews its own certificate: same identity and key, new serial. The key is
    # the one it paired with: another one is refused (a stolen certificate cannot move the
    # camera to an attacker's key), and GetCamera shows the pinned key to the apps.
    new_key = ec.generate_private_key(ec.SECP256R1())
    code, message = await status_of(
        call(cam, svc.RenewCertificate, pb.RenewCertificateRequest(csr=make_csr(new_key)))
    )
    assert (code, message.split(";")[0]) == (
        CODE.PERMISSION_DENIED,
        "a camera renews its certificate with the key it paired with",
    )
    shown = await call(alice, svc.GetCamera, pb.GetCameraRequest(device_id=device))
    assert (
        shown.camera.key_sha256
        == hashlib.sha256(
            camera_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
    )
    renewed = await call(
        cam, svc.RenewCertificate, pb.RenewCertificateRequest(csr=make_csr(camera_key))
    )
    renewed_cam = principal_of(renewed.certificate)
    assert (renewed_cam.kind, renewed_cam.tenant_id, renewed_cam.name) == (
        PrincipalKind.CAMERA,
        tenant,
        device,
    )
    assert renewed_cam.certificate_serial != cam.certificate_serial
    renewed_leaf = x509.load_der_x509_certificate(renewed.certificate.certificate_chain[0])
    assert renewed_leaf.public_key() == camera_key.public_key()

    # Remove the camera: its certificates are revoked, by alice, and it is gone.
    removed = await call(alice, svc.RevokeCamera, pb.RevokeCameraRequest(device_id=device))
    assert removed.revoked_at.ToDatetime(tzinfo=UTC) == START
    (revocation,) = world.events.of(CertificateRevoked)
    assert revocation.subject == Subject(PrincipalKind.CAMERA, tenant, device)
    assert world.events.published[-1].actor == Subject(PrincipalKind.APP, tenant, alice.name)
    code, _ = await status_of(call(alice, svc.GetCamera, pb.GetCameraRequest(device_id=device)))
    assert code is CODE.NOT_FOUND
    code, _ = await status_of(
        call(renewed_cam, svc.RenewCertificate, pb.RenewCertificateRequest(csr=make_csr()))
    )
    assert code is CODE.UNAUTHENTICATED

    # Purge the tenant (a service, naming the tenant); a retry is a no-op.
    await api.pair(alice, "SN-0002")
    purge = pb.PurgeTenantRequest(tenant_id=tenant, cancellation_id=CANCELLATION)
    report = await call(RETENTION, svc.PurgeTenant, purge)
    assert (
        report.cameras_removed,
        report.app_installs_removed,
        report.grants_removed,
        report.certificates_revoked,
    ) == (1, 2, 0, 3)
    assert report.completed_at.ToDatetime(tzinfo=UTC) == START
    again = await call(RETENTION, svc.PurgeTenant, purge)
    assert (again.cameras_removed, again.app_installs_removed) == (0, 0)
    code, _ = await status_of(call(alice, svc.GetAccount, pb.GetAccountRequest()))
    assert code is CODE.NOT_FOUND
    code, _ = await status_of(
        call(
            None,
            svc.SignIn,
            pb.SignInRequest(login="alice", password=PASSWORD, csr=make_csr()),
        )
    )
    assert code is CODE.UNAUTHENTICATED
    assert (await call(bob, svc.GetAccount, pb.GetAccountRequest())).login == "bob"


# --- PINs ------------------------------------------------------------------------------------


async def test_wrong_pins_back_off_then_lock_out_and_the_password_clears(api: Api) -> None:
    svc, clock = api.servicer, api.world.clock
    _, alice = await api.register("alice")
    camera, _ = await api.pair(alice)
    device = camera.device_id

    def view(pin: str) -> Awaitable[pb.AuthorizeCameraAccessResponse]:
        """alice's live view, asked for by a service: the PIN counts like any other try."""
        return call(RETENTION, svc.AuthorizeCameraAccess, live_view(device, alice, pin))

    def change(current: str) -> pb.ChangePinRequest:
        return pb.ChangePinRequest(device_id=device, current_pin=current, new_pin="9999")

    assert (await view("1234")).pin_check == pb.PIN_CHECK_RESULT_NOT_SET
    code, _ = await status_of(call(alice, svc.ChangePin, change("1234")))
    assert code is CODE.FAILED_PRECONDITION
    await call(alice, svc.SetPin, pb.SetPinRequest(device_id=device, pin="1234"))
    code, _ = await status_of(
        call(alice, svc.SetPin, pb.SetPinRequest(device_id=device, pin="4321"))
    )
    assert code is CODE.FAILED_PRECONDITION

    # Free wrong tries (a malformed PIN is just a wrong try), then backoff; viewing and
    # ChangePin count toward the same backoff.
    code, message = await status_of(view("0000"))
    assert code is CODE.PERMISSION_DENIED
    assert "next try" not in message  # a free try: no wait
    code, message = await status_of(view("12345"))
    assert code is CODE.PERMISSION_DENIED
    assert "next try" not in message
    code, message = await status_of(call(alice, svc.ChangePin, change("0001")))
    assert code is CODE.PERMISSION_DENIED
    assert "1 s" in message
    code, message = await status_of(call(alice, svc.ChangePin, change("1234")))
    assert code is CODE.RESOURCE_EXHAUSTED
    assert "try again in 1 s" in message
    code, message = await status_of(view("1234"))  # even the right PIN waits
    assert code is CODE.RESOURCE_EXHAUSTED
    assert "try again in 1 s" in message

    # Keep guessing past each backoff until the 10th wrong try locks the camera.
    for _ in range(7):
        clock.advance(timedelta(seconds=61))
        code, message = await status_of(view("0000"))
        assert code is CODE.PERMISSION_DENIED
    assert "next try is accepted in 3600 s" in message
    (lockout,) = api.world.events.of(PinLockedOut)
    assert lockout.failed_attempts == 10
    assert lockout.last_attempt_by == Subject(PrincipalKind.APP, alice.tenant_id, alice.name)

    code, message = await status_of(view("1234"))
    assert code is CODE.RESOURCE_EXHAUSTED
    assert "locked for 3600 s" in message
    code, message = await status_of(call(alice, svc.ChangePin, change("1234")))
    assert code is CODE.RESOURCE_EXHAUSTED
    assert "3600 s" in message

    # The owner clears the PIN with the account password (a wrong one is refused).
    code, _ = await status_of(
        call(
            alice,
            svc.ClearPin,
            pb.ClearPinRequest(device_id=device, password="not the password at all"),
        )
    )
    assert code is CODE.UNAUTHENTICATED
    await call(alice, svc.ClearPin, pb.ClearPinRequest(device_id=device, password=PASSWORD))
    settings = await call(
        alice, svc.GetCameraSettings, pb.GetCameraSettingsRequest(device_id=device)
    )
    assert not settings.settings.pin_set
    assert (await view("1234")).pin_check == pb.PIN_CHECK_RESULT_NOT_SET


async def test_pin_changes_and_clears_with_the_current_pin(api: Api) -> None:
    svc = api.servicer
    _, alice = await api.register("alice")
    camera, _ = await api.pair(alice)
    device = camera.device_id
    await call(alice, svc.SetPin, pb.SetPinRequest(device_id=device, pin="1234"))
    await call(
        alice,
        svc.ChangePin,
        pb.ChangePinRequest(device_id=device, current_pin="1234", new_pin="5678"),
    )
    view = live_view(device, alice, "5678")
    answer = await call(RETENTION, svc.AuthorizeCameraAccess, view)
    assert answer.pin_check == pb.PIN_CHECK_RESULT_OK
    code, _ = await status_of(call(alice, svc.ClearPin, pb.ClearPinRequest(device_id=device)))
    assert code is CODE.INVALID_ARGUMENT
    await call(alice, svc.ClearPin, pb.ClearPinRequest(device_id=device, current_pin="5678"))
    answer = await call(RETENTION, svc.AuthorizeCameraAccess, view)
    assert answer.pin_check == pb.PIN_CHECK_RESULT_NOT_SET


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SetPinRequest(pin="123"), "pin"),
        (pb.SetPinRequest(pin="12a4"), "pin"),
        (pb.SetPinRequest(pin="١٢٣٤"), "pin"),  # non-ASCII digits
    ],
)
async def test_a_pin_must_be_four_ascii_digits(
    api: Api, request_: pb.SetPinRequest, field: str
) -> None:
    _, alice = await api.register("alice")
    camera, _ = await api.pair(alice)
    request_.device_id = camera.device_id
    code, message = await status_of(call(alice, api.servicer.SetPin, request_))
    assert code is CODE.INVALID_ARGUMENT
    assert field in message


async def test_the_owner_mutes_and_tunes_the_watch_per_camera(api: Api) -> None:
    svc = api.servicer
    _, alice = await api.register("alice")
    camera, _ = await api.pair(alice)
    device = camera.device_id
    burst, grant = watch_pb2.WATCH_RULE_BURST, watch_pb2.WATCH_RULE_NEW_GRANT

    async def update(**fields: Any) -> identity_pb2.CameraSettings:
        request = pb.UpdateCameraSettingsRequest(device_id=device, **fields)
        return (await call(alice, svc.UpdateCameraSettings, request)).settings

    api.world.events.clear()
    muted = await update(mute_watch_rules=[grant, burst, burst], watch_burst_count=12)
    assert muted.watch == identity_pb2.CameraWatchSettings(
        muted_rules=[burst, grant], burst_count=12
    )
    assert muted.retention_days == 7  # the rest unchanged
    (changed,) = api.world.events.of(CameraSettingsChanged)
    assert identity_event_pb(api.world.events.published[0]).camera_settings_changed.settings == (
        muted
    )
    assert changed.device_id == device
    again = await update(unmute_watch_rules=[burst], watch_burst_count=0)
    assert again.watch == identity_pb2.CameraWatchSettings(muted_rules=[grant])
    got = await call(alice, svc.GetCameraSettings, pb.GetCameraSettingsRequest(device_id=device))
    assert got.settings == again


async def test_a_grantee_may_not_manage_the_pin_or_settings(api: Api) -> None:
    svc = api.servicer
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    camera, _ = await api.pair(alice)
    device = camera.device_id
    await api.grant(alice, device, "bob")
    for handler, request in (
        (svc.SetPin, pb.SetPinRequest(device_id=device, pin="1234")),
        (svc.UpdateCameraSettings, pb.UpdateCameraSettingsRequest(device_id=device, label="x")),
        (svc.RevokeCamera, pb.RevokeCameraRequest(device_id=device)),
        (
            svc.CreateGrant,
            pb.CreateGrantRequest(device_id=device, grantee_login="alice", scopes=[LIVE]),
        ),
    ):
        code, _ = await status_of(call(bob, handler, request))  # type: ignore[arg-type]
        assert code is CODE.PERMISSION_DENIED, handler.__name__


# --- bad input, per RPC ------------------------------------------------------------------------


@dataclass
class Scene:
    """alice owns a camera shared with bob; carol has nothing to do with it."""

    callers: dict[str, Principal | None]
    device: str
    grant_id: str
    bob_install: str


@pytest.fixture
async def scene(api: Api) -> Scene:
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    _, carol = await api.register("carol")
    camera, camera_principal = await api.pair(alice)
    grant = await api.grant(alice, camera.device_id, "bob")
    return Scene(
        {
            "none": None,
            "alice": alice,
            "bob": bob,
            "carol": carol,
            "camera": camera_principal,
            "service": RETENTION,
        },
        camera.device_id,
        grant.grant_id,
        bob.name,
    )


UNKNOWN = str(uuid.uuid4())
TOO_BIG_CSR = b"\x30" * 4097
LONG_PASSWORD = "p" * 257


def p384_csr() -> bytes:
    return make_csr(ec.generate_private_key(ec.SECP384R1()))


Case = tuple[str, str, Callable[[Scene], Message], grpc.StatusCode, str]

BAD_INPUT: dict[str, Case] = {
    # RegisterAccount: no caller (enrollment port).
    "register/garbage-csr": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password=PASSWORD, csr=b"not a csr"),
        CODE.INVALID_ARGUMENT,
        "csr",
    ),
    "register/rsa-csr": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password=PASSWORD, csr=rsa_csr()),
        CODE.INVALID_ARGUMENT,
        "RSA",
    ),
    "register/p384-csr": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password=PASSWORD, csr=p384_csr()),
        CODE.INVALID_ARGUMENT,
        "P-256",
    ),
    "register/oversized-csr": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password=PASSWORD, csr=TOO_BIG_CSR),
        CODE.INVALID_ARGUMENT,
        "4 KiB",
    ),
    "register/empty-csr": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password=PASSWORD),
        CODE.INVALID_ARGUMENT,
        "csr",
    ),
    "register/short-login": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="da", password=PASSWORD, csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "login",
    ),
    "register/long-login": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="d" * 65, password=PASSWORD, csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "login",
    ),
    "register/upper-case-login": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="Dave", password=PASSWORD, csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "login",
    ),
    "register/short-password": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password="short", csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "password",
    ),
    "register/long-password": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="dave", password=LONG_PASSWORD, csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "password",
    ),
    "register/long-label": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(
            login="dave", password=PASSWORD, csr=make_csr(), install_label="l" * 65
        ),
        CODE.INVALID_ARGUMENT,
        "install_label",
    ),
    "register/control-char-label": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(
            login="dave", password=PASSWORD, csr=make_csr(), install_label="tab\tlet"
        ),
        CODE.INVALID_ARGUMENT,
        "install_label",
    ),
    "register/taken-login": (
        "none",
        "RegisterAccount",
        lambda s: pb.RegisterAccountRequest(login="alice", password=PASSWORD, csr=make_csr()),
        CODE.ALREADY_EXISTS,
        "taken",
    ),
    # SignIn: a wrong password and an unknown login look the same.
    "sign-in/wrong-password": (
        "none",
        "SignIn",
        lambda s: pb.SignInRequest(login="alice", password="wrong password!", csr=make_csr()),
        CODE.UNAUTHENTICATED,
        "login or password is wrong",
    ),
    "sign-in/unknown-login": (
        "none",
        "SignIn",
        lambda s: pb.SignInRequest(login="nobody", password=PASSWORD, csr=make_csr()),
        CODE.UNAUTHENTICATED,
        "login or password is wrong",
    ),
    "sign-in/long-password": (
        "none",
        "SignIn",
        lambda s: pb.SignInRequest(login="alice", password=LONG_PASSWORD, csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "password",
    ),
    "sign-in/rsa-csr": (
        "none",
        "SignIn",
        lambda s: pb.SignInRequest(login="alice", password=PASSWORD, csr=rsa_csr()),
        CODE.INVALID_ARGUMENT,
        "RSA",
    ),
    "sign-in/oversized-csr": (
        "none",
        "SignIn",
        lambda s: pb.SignInRequest(login="alice", password=PASSWORD, csr=TOO_BIG_CSR),
        CODE.INVALID_ARGUMENT,
        "csr",
    ),
    # Account management.
    "update-account/taken-login": (
        "alice",
        "UpdateAccount",
        lambda s: pb.UpdateAccountRequest(login="bob"),
        CODE.ALREADY_EXISTS,
        "taken",
    ),
    "update-account/bad-login": (
        "alice",
        "UpdateAccount",
        lambda s: pb.UpdateAccountRequest(login="Not Valid"),
        CODE.INVALID_ARGUMENT,
        "login",
    ),
    "change-password/wrong-current": (
        "alice",
        "ChangePassword",
        lambda s: pb.ChangePasswordRequest(
            current_password="not my password", new_password="a brand new password"
        ),
        CODE.UNAUTHENTICATED,
        "current password",
    ),
    "change-password/short-new": (
        "alice",
        "ChangePassword",
        lambda s: pb.ChangePasswordRequest(current_password=PASSWORD, new_password="short"),
        CODE.INVALID_ARGUMENT,
        "password",
    ),
    "change-password/long-current": (
        "alice",
        "ChangePassword",
        lambda s: pb.ChangePasswordRequest(
            current_password=LONG_PASSWORD, new_password="a brand new password"
        ),
        CODE.INVALID_ARGUMENT,
        "current_password",
    ),
    "revoke-install/empty-id": (
        "alice",
        "RevokeAppInstall",
        lambda s: pb.RevokeAppInstallRequest(),
        CODE.INVALID_ARGUMENT,
        "install_id",
    ),
    "revoke-install/malformed-id": (
        "alice",
        "RevokeAppInstall",
        lambda s: pb.RevokeAppInstallRequest(install_id="../Other"),
        CODE.INVALID_ARGUMENT,
        "install_id",
    ),
    "revoke-install/unknown-id": (
        "alice",
        "RevokeAppInstall",
        lambda s: pb.RevokeAppInstallRequest(install_id=UNKNOWN),
        CODE.NOT_FOUND,
        "install",
    ),
    "revoke-install/another-tenants": (
        "alice",
        "RevokeAppInstall",
        lambda s: pb.RevokeAppInstallRequest(install_id=s.bob_install),
        CODE.NOT_FOUND,
        "install",
    ),
    # Pairing and renewal.
    "enroll/malformed-token": (
        "none",
        "EnrollCamera",
        lambda s: pb.EnrollCameraRequest(claim_token="short", csr=make_csr(), serial="SN-9"),
        CODE.INVALID_ARGUMENT,
        "claim_token",
    ),
    "enroll/unknown-token": (
        "none",
        "EnrollCamera",
        lambda s: pb.EnrollCameraRequest(claim_token="A" * 43, csr=make_csr(), serial="SN-9"),
        CODE.UNAUTHENTICATED,
        "claim token",
    ),
    "enroll/empty-serial": (
        "none",
        "EnrollCamera",
        lambda s: pb.EnrollCameraRequest(claim_token="A" * 43, csr=make_csr()),
        CODE.INVALID_ARGUMENT,
        "serial",
    ),
    "enroll/long-serial": (
        "none",
        "EnrollCamera",
        lambda s: pb.EnrollCameraRequest(claim_token="A" * 43, csr=make_csr(), serial="S" * 65),
        CODE.INVALID_ARGUMENT,
        "serial",
    ),
    "enroll/odd-serial": (
        "none",
        "EnrollCamera",
        lambda s: pb.EnrollCameraRequest(claim_token="A" * 43, csr=make_csr(), serial="SN 1/2"),
        CODE.INVALID_ARGUMENT,
        "serial",
    ),
    "enroll/oversized-csr": (
        "none",
        "EnrollCamera",
        lambda s: pb.EnrollCameraRequest(claim_token="A" * 43, csr=TOO_BIG_CSR, serial="SN-9"),
        CODE.INVALID_ARGUMENT,
        "csr",
    ),
    "renew/garbage-csr": (
        "camera",
        "RenewCertificate",
        lambda s: pb.RenewCertificateRequest(csr=b"\x30\x03\x02\x01\x00"),
        CODE.INVALID_ARGUMENT,
        "csr",
    ),
    "renew/rsa-csr": (
        "camera",
        "RenewCertificate",
        lambda s: pb.RenewCertificateRequest(csr=rsa_csr()),
        CODE.INVALID_ARGUMENT,
        "RSA",
    ),
    "renew/oversized-csr": (
        "camera",
        "RenewCertificate",
        lambda s: pb.RenewCertificateRequest(csr=TOO_BIG_CSR),
        CODE.INVALID_ARGUMENT,
        "4 KiB",
    ),
    "renew/by-a-service": (
        "service",
        "RenewCertificate",
        lambda s: pb.RenewCertificateRequest(csr=make_csr()),
        CODE.PERMISSION_DENIED,
        "renew",
    ),
    # Cameras.
    "get-camera/empty-id": (
        "alice",
        "GetCamera",
        lambda s: pb.GetCameraRequest(),
        CODE.INVALID_ARGUMENT,
        "device_id",
    ),
    "get-camera/malformed-id": (
        "alice",
        "GetCamera",
        lambda s: pb.GetCameraRequest(device_id="CAMERA-1"),
        CODE.INVALID_ARGUMENT,
        "device_id",
    ),
    "get-camera/long-id": (
        "alice",
        "GetCamera",
        lambda s: pb.GetCameraRequest(device_id="a" * 64),
        CODE.INVALID_ARGUMENT,
        "device_id",
    ),
    "get-camera/unknown-id": (
        "alice",
        "GetCamera",
        lambda s: pb.GetCameraRequest(device_id=UNKNOWN),
        CODE.NOT_FOUND,
        "camera",
    ),
    "get-camera/another-tenants": (
        "carol",
        "GetCamera",
        lambda s: pb.GetCameraRequest(device_id=s.device),
        CODE.NOT_FOUND,
        "camera",
    ),
    "revoke-camera/unknown-id": (
        "alice",
        "RevokeCamera",
        lambda s: pb.RevokeCameraRequest(device_id=UNKNOWN),
        CODE.NOT_FOUND,
        "camera",
    ),
    "revoke-camera/another-tenants": (
        "carol",
        "RevokeCamera",
        lambda s: pb.RevokeCameraRequest(device_id=s.device),
        CODE.NOT_FOUND,
        "camera",
    ),
    # Settings.
    "get-settings/service-unknown-id": (
        "service",
        "GetCameraSettings",
        lambda s: pb.GetCameraSettingsRequest(device_id=UNKNOWN),
        CODE.NOT_FOUND,
        "camera",
    ),
    "get-settings/service-malformed-id": (
        "service",
        "GetCameraSettings",
        lambda s: pb.GetCameraSettingsRequest(device_id="x/y"),
        CODE.INVALID_ARGUMENT,
        "device_id",
    ),
    "update-settings/retention-zero": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, retention_days=0),
        CODE.INVALID_ARGUMENT,
        "retention_days",
    ),
    "update-settings/retention-too-long": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, retention_days=31),
        CODE.INVALID_ARGUMENT,
        "retention_days",
    ),
    "update-settings/long-label": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, label="l" * 65),
        CODE.INVALID_ARGUMENT,
        "label",
    ),
    "update-settings/control-char-label": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, label="bell\x07"),
        CODE.INVALID_ARGUMENT,
        "label",
    ),
    "update-settings/mute-app-install": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(
            device_id=s.device, mute_watch_rules=[watch_pb2.WATCH_RULE_NEW_APP_INSTALL]
        ),
        CODE.INVALID_ARGUMENT,
        "cannot be muted on a camera",
    ),
    "update-settings/mute-unspecified": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(
            device_id=s.device, mute_watch_rules=[watch_pb2.WATCH_RULE_UNSPECIFIED]
        ),
        CODE.INVALID_ARGUMENT,
        "watch rule",
    ),
    "update-settings/mute-and-unmute": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(
            device_id=s.device,
            mute_watch_rules=[watch_pb2.WATCH_RULE_BURST],
            unmute_watch_rules=[watch_pb2.WATCH_RULE_BURST],
        ),
        CODE.INVALID_ARGUMENT,
        "both muted and unmuted",
    ),
    "update-settings/burst-count-one": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, watch_burst_count=1),
        CODE.INVALID_ARGUMENT,
        "watch_burst_count must be 2 to 1000",
    ),
    "update-settings/burst-count-huge": (
        "alice",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, watch_burst_count=1001),
        CODE.INVALID_ARGUMENT,
        "watch_burst_count",
    ),
    "update-settings/another-tenants-watch": (
        "carol",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(
            device_id=s.device, mute_watch_rules=[watch_pb2.WATCH_RULE_BURST]
        ),
        CODE.NOT_FOUND,
        "camera",
    ),
    "update-settings/another-tenants": (
        "carol",
        "UpdateCameraSettings",
        lambda s: pb.UpdateCameraSettingsRequest(device_id=s.device, label="mine"),
        CODE.NOT_FOUND,
        "camera",
    ),
    # PINs.
    "change-pin/bad-new-pin": (
        "alice",
        "ChangePin",
        lambda s: pb.ChangePinRequest(device_id=s.device, current_pin="1234", new_pin="12"),
        CODE.INVALID_ARGUMENT,
        "new_pin",
    ),
    "clear-pin/no-pin-set": (
        "alice",
        "ClearPin",
        lambda s: pb.ClearPinRequest(device_id=s.device, current_pin="1234"),
        CODE.FAILED_PRECONDITION,
        "no PIN",
    ),
    "view-with-pin/malformed-id": (
        "service",
        "AuthorizeCameraAccess",
        lambda s: live_view("", s.callers["alice"], "1234"),
        CODE.INVALID_ARGUMENT,
        "device_id",
    ),
    "view-with-pin/unknown-id": (
        "service",
        "AuthorizeCameraAccess",
        lambda s: live_view(UNKNOWN, s.callers["alice"], "1234"),
        CODE.NOT_FOUND,
        "camera",
    ),
    "view-with-pin/viewer-a-service": (
        "service",
        "AuthorizeCameraAccess",
        lambda s: pb.AuthorizeCameraAccessRequest(
            device_id=s.device,
            viewer=types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_SERVICE, id="relay"),
            scope=LIVE,
            check_pin=True,
            pin="1234",
        ),
        CODE.INVALID_ARGUMENT,
        "viewer.kind",
    ),
    "view-with-pin/viewer-bad-tenant": (
        "service",
        "AuthorizeCameraAccess",
        lambda s: pb.AuthorizeCameraAccessRequest(
            device_id=s.device,
            viewer=types_pb2.Principal(
                kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id="T", id=UNKNOWN
            ),
            scope=LIVE,
            check_pin=True,
            pin="1234",
        ),
        CODE.INVALID_ARGUMENT,
        "viewer.tenant_id",
    ),
    # Grants.
    "grant/unknown-login": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(device_id=s.device, grantee_login="nobody", scopes=[LIVE]),
        CODE.NOT_FOUND,
        "nobody",
    ),
    "grant/bad-login": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(device_id=s.device, grantee_login="B", scopes=[LIVE]),
        CODE.INVALID_ARGUMENT,
        "login",
    ),
    "grant/to-oneself": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(device_id=s.device, grantee_login="alice", scopes=[LIVE]),
        CODE.INVALID_ARGUMENT,
        "own",
    ),
    "grant/already-shared": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(device_id=s.device, grantee_login="bob", scopes=[CLIPS]),
        CODE.ALREADY_EXISTS,
        "already shared",
    ),
    "grant/no-scopes": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(device_id=s.device, grantee_login="carol"),
        CODE.INVALID_ARGUMENT,
        "scopes",
    ),
    "grant/unspecified-scope": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(
            device_id=s.device,
            grantee_login="carol",
            scopes=[LIVE, identity_pb2.GRANT_SCOPE_UNSPECIFIED],
        ),
        CODE.INVALID_ARGUMENT,
        "scopes[1]",
    ),
    "grant/unknown-scope": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(
            device_id=s.device, grantee_login="carol", scopes=[identity_pb2.GrantScope.ValueType(7)]
        ),
        CODE.INVALID_ARGUMENT,
        "scopes[0]",
    ),
    "grant/duplicate-scope": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(
            device_id=s.device, grantee_login="carol", scopes=[LIVE, LIVE]
        ),
        CODE.INVALID_ARGUMENT,
        "scopes",
    ),
    "grant/expires-in-the-past": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(
            device_id=s.device,
            grantee_login="carol",
            scopes=[LIVE],
            expires_at=stamp(START - timedelta(seconds=1)),
        ),
        CODE.INVALID_ARGUMENT,
        "expires_at",
    ),
    "grant/expiry-out-of-range": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(
            device_id=s.device,
            grantee_login="carol",
            scopes=[LIVE],
            expires_at=Timestamp(seconds=2**62),
        ),
        CODE.INVALID_ARGUMENT,
        "expires_at",
    ),
    "grant/unknown-camera": (
        "alice",
        "CreateGrant",
        lambda s: pb.CreateGrantRequest(device_id=UNKNOWN, grantee_login="carol", scopes=[LIVE]),
        CODE.NOT_FOUND,
        "camera",
    ),
    "list-grants/unknown-direction": (
        "alice",
        "ListGrants",
        lambda s: pb.ListGrantsRequest(direction=pb.GrantDirection.ValueType(9)),
        CODE.INVALID_ARGUMENT,
        "direction",
    ),
    "list-grants/malformed-device": (
        "alice",
        "ListGrants",
        lambda s: pb.ListGrantsRequest(device_id="Front Door"),
        CODE.INVALID_ARGUMENT,
        "device_id",
    ),
    "revoke-grant/malformed-id": (
        "alice",
        "RevokeGrant",
        lambda s: pb.RevokeGrantRequest(grant_id="-"),
        CODE.INVALID_ARGUMENT,
        "grant_id",
    ),
    "revoke-grant/unknown-id": (
        "alice",
        "RevokeGrant",
        lambda s: pb.RevokeGrantRequest(grant_id=UNKNOWN),
        CODE.NOT_FOUND,
        "grant",
    ),
    "revoke-grant/a-stranger": (
        "carol",
        "RevokeGrant",
        lambda s: pb.RevokeGrantRequest(grant_id=s.grant_id),
        CODE.NOT_FOUND,
        "grant",
    ),
    # Internal.
    "verify-password/empty-tenant": (
        "service",
        "VerifyPassword",
        lambda s: pb.VerifyPasswordRequest(password=PASSWORD),
        CODE.INVALID_ARGUMENT,
        "tenant_id",
    ),
    "verify-password/long-password": (
        "service",
        "VerifyPassword",
        lambda s: pb.VerifyPasswordRequest(tenant_id=UNKNOWN, password=LONG_PASSWORD),
        CODE.INVALID_ARGUMENT,
        "password",
    ),
    "purge/malformed-tenant": (
        "service",
        "PurgeTenant",
        lambda s: pb.PurgeTenantRequest(tenant_id="Tenant", cancellation_id=CANCELLATION),
        CODE.INVALID_ARGUMENT,
        "tenant_id",
    ),
    "purge/no-cancellation": (
        "service",
        "PurgeTenant",
        lambda s: pb.PurgeTenantRequest(tenant_id=UNKNOWN),
        CODE.INVALID_ARGUMENT,
        "cancellation_id",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT.values(), ids=BAD_INPUT.keys())
async def test_bad_input_gets_the_right_status(api: Api, scene: Scene, case: Case) -> None:
    caller, method, make_request, expected, fragment = case
    handler = getattr(api.servicer, method)
    code, message = await status_of(call(scene.callers[caller], handler, make_request(scene)))
    assert code is expected, message
    assert fragment in message
    assert "argon2" not in message


# --- callers ------------------------------------------------------------------------------------

APP_ONLY = [
    ("GetAccount", pb.GetAccountRequest()),
    ("UpdateAccount", pb.UpdateAccountRequest()),
    ("ChangePassword", pb.ChangePasswordRequest()),
    ("ListAppInstalls", pb.ListAppInstallsRequest()),
    ("RevokeAppInstall", pb.RevokeAppInstallRequest(install_id=UNKNOWN)),
    ("CreateClaimToken", pb.CreateClaimTokenRequest()),
    ("ListCameras", pb.ListCamerasRequest()),
    ("GetCamera", pb.GetCameraRequest(device_id=UNKNOWN)),
    ("RevokeCamera", pb.RevokeCameraRequest(device_id=UNKNOWN)),
    ("UpdateCameraSettings", pb.UpdateCameraSettingsRequest(device_id=UNKNOWN)),
    ("SetPin", pb.SetPinRequest(device_id=UNKNOWN, pin="1234")),
    ("ChangePin", pb.ChangePinRequest(device_id=UNKNOWN)),
    ("ClearPin", pb.ClearPinRequest(device_id=UNKNOWN)),
    ("CreateGrant", pb.CreateGrantRequest(device_id=UNKNOWN)),
    ("ListGrants", pb.ListGrantsRequest()),
    ("RevokeGrant", pb.RevokeGrantRequest(grant_id=UNKNOWN)),
]
SERVICE_ONLY = [
    ("AuthorizeCameraAccess", pb.AuthorizeCameraAccessRequest(device_id=UNKNOWN)),
    ("VerifyPassword", pb.VerifyPasswordRequest(tenant_id=UNKNOWN)),
    ("PurgeTenant", pb.PurgeTenantRequest(tenant_id=UNKNOWN, cancellation_id=CANCELLATION)),
]


@pytest.mark.parametrize(("method", "request_"), APP_ONLY, ids=[m for m, _ in APP_ONLY])
async def test_app_rpcs_never_act_for_a_service_or_camera(
    api: Api, scene: Scene, method: str, request_: Message
) -> None:
    """The policy table keeps them out; the servicer refuses too rather than act on
    a tenant-less or wrong-kind identity."""
    for caller in ("service", "camera"):
        code, _ = await status_of(
            call(scene.callers[caller], getattr(api.servicer, method), request_)
        )
        assert code is CODE.PERMISSION_DENIED, caller


@pytest.mark.parametrize(("method", "request_"), SERVICE_ONLY, ids=[m for m, _ in SERVICE_ONLY])
async def test_service_rpcs_never_act_for_an_app(
    api: Api, scene: Scene, method: str, request_: Message
) -> None:
    code, _ = await status_of(call(scene.callers["alice"], getattr(api.servicer, method), request_))
    assert code is CODE.PERMISSION_DENIED


async def test_app_rpcs_need_an_authenticated_caller(api: Api) -> None:
    code, _ = await status_of(call(None, api.servicer.GetAccount, pb.GetAccountRequest()))
    assert code is CODE.UNAUTHENTICATED


async def test_the_tenant_comes_from_the_certificate_not_the_request(
    api: Api, scene: Scene
) -> None:
    """App RPCs carry no tenant at all (each app sees its own account); only a service
    names the tenant it acts on."""
    svc, alice = api.servicer, scene.callers["alice"]
    assert alice is not None
    assert (await call(scene.callers["bob"], svc.GetAccount, pb.GetAccountRequest())).login == "bob"
    right = pb.VerifyPasswordRequest(tenant_id=alice.tenant_id or "", password=PASSWORD)
    wrong = pb.VerifyPasswordRequest(tenant_id=alice.tenant_id or "", password="nope, not it")
    unknown = pb.VerifyPasswordRequest(tenant_id=UNKNOWN, password=PASSWORD)
    assert (await call(RETENTION, svc.VerifyPassword, right)).valid
    assert not (await call(RETENTION, svc.VerifyPassword, wrong)).valid
    assert not (await call(RETENTION, svc.VerifyPassword, unknown)).valid


# --- accounts and installs ------------------------------------------------------------------------


async def test_account_login_and_password_changes(api: Api) -> None:
    svc = api.servicer
    _, alice = await api.register("alice")
    unchanged = await call(alice, svc.UpdateAccount, pb.UpdateAccountRequest())
    assert unchanged.login == "alice"
    renamed = await call(alice, svc.UpdateAccount, pb.UpdateAccountRequest(login="alice.b"))
    assert renamed.login == "alice.b"
    assert (await call(alice, svc.GetAccount, pb.GetAccountRequest())).login == "alice.b"
    new_password = "an even better passphrase"
    await call(
        alice,
        svc.ChangePassword,
        pb.ChangePasswordRequest(current_password=PASSWORD, new_password=new_password),
    )
    code, _ = await status_of(
        call(None, svc.SignIn, pb.SignInRequest(login="alice.b", password=PASSWORD, csr=make_csr()))
    )
    assert code is CODE.UNAUTHENTICATED
    signed_in = await call(
        None,
        svc.SignIn,
        pb.SignInRequest(login="alice.b", password=new_password, csr=make_csr()),
    )
    assert signed_in.tenant_id == alice.tenant_id
    assert signed_in.install_id != alice.name


async def test_an_install_is_revoked_and_its_certificate_cannot_renew(api: Api) -> None:
    svc = api.servicer
    _, phone = await api.register("alice")
    tablet = principal_of(
        (
            await call(
                None,
                svc.SignIn,
                pb.SignInRequest(login="alice", password=PASSWORD, csr=make_csr()),
            )
        ).certificate
    )
    renewed = await call(phone, svc.RenewCertificate, pb.RenewCertificateRequest(csr=make_csr()))
    assert principal_of(renewed.certificate).name == phone.name
    revoked = await call(
        phone, svc.RevokeAppInstall, pb.RevokeAppInstallRequest(install_id=tablet.name)
    )
    assert revoked.revoked_at.ToDatetime(tzinfo=UTC) == START
    installs = (await call(phone, svc.ListAppInstalls, pb.ListAppInstallsRequest())).installs
    assert [(i.install_id, i.current) for i in installs] == [(phone.name, True)]
    assert installs[0].certificate_not_after.ToDatetime(tzinfo=UTC) == START + timedelta(days=20)
    code, _ = await status_of(
        call(tablet, svc.RenewCertificate, pb.RenewCertificateRequest(csr=make_csr()))
    )
    assert code is CODE.UNAUTHENTICATED


# --- pairing -------------------------------------------------------------------------------------


async def test_a_bad_csr_does_not_spend_the_claim_token_but_pairing_does(api: Api) -> None:
    svc = api.servicer
    registered, alice = await api.register("alice")
    token = (await call(alice, svc.CreateClaimToken, pb.CreateClaimTokenRequest())).claim_token
    code, message = await status_of(
        call(
            None,
            svc.EnrollCamera,
            pb.EnrollCameraRequest(claim_token=token, csr=rsa_csr(), serial="SN-1"),
        )
    )
    assert code is CODE.INVALID_ARGUMENT
    assert "P-256" in message
    request = pb.EnrollCameraRequest(claim_token=token, csr=make_csr(), serial="SN-1")
    enrolled = await call(None, svc.EnrollCamera, request)
    assert enrolled.tenant_id == registered.tenant_id
    code, _ = await status_of(call(None, svc.EnrollCamera, request))
    assert code is CODE.UNAUTHENTICATED


async def test_an_expired_claim_token_is_refused(api: Api) -> None:
    _, alice = await api.register("alice")
    token = await call(alice, api.servicer.CreateClaimToken, pb.CreateClaimTokenRequest())
    api.world.clock.advance(timedelta(minutes=10))
    code, _ = await status_of(
        call(
            None,
            api.servicer.EnrollCamera,
            pb.EnrollCameraRequest(claim_token=token.claim_token, csr=make_csr(), serial="SN-1"),
        )
    )
    assert code is CODE.UNAUTHENTICATED


# --- grants --------------------------------------------------------------------------------------


async def test_grants_filter_by_side_and_camera_and_end_by_themselves(api: Api) -> None:
    svc, clock = api.servicer, api.world.clock
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    front, _ = await api.pair(alice, "SN-1")
    back, _ = await api.pair(alice, "SN-2")
    bobs, _ = await api.pair(bob, "SN-3")
    until = START + timedelta(days=1)
    to_bob = (
        await call(
            alice,
            svc.CreateGrant,
            pb.CreateGrantRequest(
                device_id=front.device_id,
                grantee_login="bob",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
                expires_at=stamp(until),
            ),
        )
    ).grant
    assert to_bob.expires_at.ToDatetime(tzinfo=UTC) == until
    clock.advance(timedelta(seconds=1))
    await api.grant(alice, back.device_id, "bob", identity_pb2.GRANT_SCOPE_CLIPS)
    clock.advance(timedelta(seconds=1))
    to_alice = await api.grant(bob, bobs.device_id, "alice")

    both = await call(alice, svc.ListGrants, pb.ListGrantsRequest())
    assert [g.device_id for g in both.grants] == [bobs.device_id, back.device_id, front.device_id]
    assert [g.grantee_login for g in both.grants] == ["", "bob", "bob"]
    only_front = await call(alice, svc.ListGrants, pb.ListGrantsRequest(device_id=front.device_id))
    assert [g.grant_id for g in only_front.grants] == [to_bob.grant_id]
    received = await call(
        alice, svc.ListGrants, pb.ListGrantsRequest(direction=pb.GRANT_DIRECTION_RECEIVED)
    )
    assert [g.grant_id for g in received.grants] == [to_alice.grant_id]

    # The grantee gives one up; the timed one ends by itself.
    await call(alice, svc.RevokeGrant, pb.RevokeGrantRequest(grant_id=to_alice.grant_id))
    mine = (await call(alice, svc.ListCameras, pb.ListCamerasRequest())).cameras
    assert [c.device_id for c in mine] == [front.device_id, back.device_id]
    seen = [
        c.device_id for c in (await call(bob, svc.ListCameras, pb.ListCamerasRequest())).cameras
    ]
    assert seen == [bobs.device_id, front.device_id, back.device_id]
    clock.advance(timedelta(days=1))
    seen = [
        c.device_id for c in (await call(bob, svc.ListCameras, pb.ListCamerasRequest())).cameras
    ]
    assert seen == [bobs.device_id, back.device_id]


# --- secrets -------------------------------------------------------------------------------------


async def test_no_reply_carries_a_hash_and_only_create_claim_token_a_token(api: Api) -> None:
    svc = api.servicer
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    token = await call(alice, svc.CreateClaimToken, pb.CreateClaimTokenRequest())
    enrolled = await call(
        None,
        svc.EnrollCamera,
        pb.EnrollCameraRequest(claim_token=token.claim_token, csr=make_csr(), serial="SN-1"),
    )
    device = enrolled.device_id
    await call(alice, svc.SetPin, pb.SetPinRequest(device_id=device, pin="1234"))
    await api.grant(alice, device, "bob")
    replies: list[Message] = [
        enrolled,
        await call(alice, svc.GetAccount, pb.GetAccountRequest()),
        await call(alice, svc.ListAppInstalls, pb.ListAppInstallsRequest()),
        await call(alice, svc.ListCameras, pb.ListCamerasRequest()),
        await call(bob, svc.ListCameras, pb.ListCamerasRequest()),
        await call(alice, svc.GetCamera, pb.GetCameraRequest(device_id=device)),
        await call(alice, svc.ListGrants, pb.ListGrantsRequest()),
        await call(bob, svc.ListGrants, pb.ListGrantsRequest()),
        await call(RETENTION, svc.GetCameraSettings, pb.GetCameraSettingsRequest(device_id=device)),
    ]
    assert api.world.tokens.tokens == {}  # spent by the pairing
    for reply in replies:
        wire = reply.SerializeToString()
        assert b"argon2" not in wire, type(reply).__name__
        assert token.claim_token.encode() not in wire
        assert PASSWORD.encode() not in wire


async def test_password_guessing_is_resource_exhausted_on_every_password_rpc(api: Api) -> None:
    """SignIn (enrollment port), ChangePassword and ClearPin (a stolen app certificate) and
    VerifyPassword (a service relaying a cancellation) share the account's budget."""
    svc = api.servicer
    _, alice = await api.register("alice")
    _, door = await api.pair(alice)
    await call(alice, svc.SetPin, pb.SetPinRequest(device_id=door.name, pin="2468"))
    tenant = alice.tenant_id or ""
    wrong = "a wrong guess, again"

    def sign_in(password: str) -> Awaitable[object]:
        request = pb.SignInRequest(login="alice", password=password, csr=make_csr())
        return call(None, svc.SignIn, request)

    def verify(password: str) -> Awaitable[pb.VerifyPasswordResponse]:
        request = pb.VerifyPasswordRequest(tenant_id=tenant, password=password)
        return call(RETENTION, svc.VerifyPassword, request)

    def change(password: str) -> Awaitable[object]:
        request = pb.ChangePasswordRequest(current_password=password, new_password="n3w password!")
        return call(alice, svc.ChangePassword, request)

    def clear(password: str) -> Awaitable[object]:
        return call(alice, svc.ClearPin, pb.ClearPinRequest(device_id=door.name, password=password))

    assert (await status_of(sign_in(wrong)))[0] is CODE.UNAUTHENTICATED
    assert (await status_of(change(wrong)))[0] is CODE.UNAUTHENTICATED
    assert (await status_of(clear(wrong)))[0] is CODE.UNAUTHENTICATED
    assert not (await verify(wrong)).valid
    assert not (await verify(wrong)).valid
    attempts: list[Callable[[str], Awaitable[object]]] = [sign_in, verify, change, clear]
    for attempt in attempts:
        code, message = await status_of(attempt(PASSWORD))
        assert code is CODE.RESOURCE_EXHAUSTED
        assert message == "too many wrong passwords; try again in 900 s"

    # Another account, and the PIN, are untouched; after the window all works again.
    _, bob = await api.register("bob")
    assert bob.tenant_id != tenant
    api.world.clock.advance(timedelta(minutes=15))
    assert (await verify(PASSWORD)).valid
    await clear(PASSWORD)
    settings = await call(
        alice, svc.GetCameraSettings, pb.GetCameraSettingsRequest(device_id=door.name)
    )
    assert not settings.settings.pin_set


# --- a household's account, read for its export ------------------------------------------


async def test_export_read_is_logged_before_it_is_answered(api: Api, reads: LoggedReads) -> None:
    _, owner = await api.register("export-owner")
    assert owner.tenant_id is not None
    export_id = str(uuid.uuid4())
    request = pb.ExportTenantRequest(tenant_id=owner.tenant_id, export_id=export_id)
    answer = await call(RETENTION, api.servicer.ExportTenant, request)
    assert answer.login == "export-owner"
    assert reads.reads == [(owner.tenant_id, export_id, "retention")]


async def test_export_read_needs_the_log(api: Api, reads: LoggedReads) -> None:
    _, owner = await api.register("export-down")
    assert owner.tenant_id is not None
    reads.down = True
    request = pb.ExportTenantRequest(tenant_id=owner.tenant_id, export_id=str(uuid.uuid4()))
    code, _ = await status_of(call(RETENTION, api.servicer.ExportTenant, request))
    assert code is CODE.UNAVAILABLE


async def test_export_read_of_an_unknown_household_logs_nothing(
    api: Api, reads: LoggedReads
) -> None:
    request = pb.ExportTenantRequest(tenant_id=str(uuid.uuid4()), export_id=str(uuid.uuid4()))
    code, _ = await status_of(call(RETENTION, api.servicer.ExportTenant, request))
    assert code is CODE.NOT_FOUND
    assert reads.reads == []
    missing = pb.ExportTenantRequest(tenant_id=str(uuid.uuid4()))
    code, message = await status_of(call(RETENTION, api.servicer.ExportTenant, missing))
    assert code is CODE.INVALID_ARGUMENT
    assert "export_id" in message
