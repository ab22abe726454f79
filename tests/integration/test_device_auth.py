"""device_auth over real mutual TLS, Kafka and Redis: the paths of a camera's identity."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from privacam.accesslog.v1 import access_log_service_pb2 as access_log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as access_log_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.clips.v1 import clip_service_pb2 as clips_pb
from privacam.clips.v1 import clip_service_pb2_grpc as clips_grpc
from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import identity_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import principal_from_pem
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import list_clips, upload_clip
from privacam_sdk.enrollment import new_key_and_csr
from tests.harness import Platform
from tests.media import make_mp4

PASSWORD = "a long enough passphrase"


@dataclass
class Household:
    owner: Profile
    tenant: str
    camera: Profile
    device: str
    login: str


@pytest.fixture
async def household(platform: Platform, profiles_home: Path) -> Household:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    owner, tenant = await enrollment.register_account(
        f"owner-{suffix}", f"owner-{suffix}", PASSWORD
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(pb.CreateClaimTokenRequest())
    camera, device = await enrollment.enroll_camera(
        f"cam-{suffix}", token.claim_token, f"SN-{suffix}"
    )
    return Household(owner, tenant, camera, device, f"owner-{suffix}")


async def _call_code(awaitable: object) -> grpc.StatusCode:
    try:
        await awaitable  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_register_sign_in_and_a_wrong_password(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    enrollment = platform.enrollment(profiles_home)
    second, tenant = await enrollment.sign_in("second-phone", household.login, PASSWORD)
    assert tenant == household.tenant
    async with PrivacamClient(second) as app:
        installs = await app.device_auth().ListAppInstalls(pb.ListAppInstallsRequest())
    assert len(installs.installs) == 2
    for login, password in (
        (household.login, "not the passphrase"),
        ("nobody-" + secrets.token_hex(3), PASSWORD),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await enrollment.sign_in("x", login, password)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await enrollment.register_account("y", household.login, PASSWORD)
    assert taken.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_claim_tokens_are_single_use_and_csrs_must_be_p256(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    async with PrivacamClient(household.owner) as app:
        token = (await app.device_auth().CreateClaimToken(pb.CreateClaimTokenRequest())).claim_token
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(rsa_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    channel = grpc.aio.secure_channel(
        platform.endpoints()["device_auth_enrollment"],
        grpc.ssl_channel_credentials(platform.pki.ca_file.read_bytes()),
    )
    async with channel:
        from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc

        stub = pb_grpc.DeviceAuthServiceStub(channel)
        bad = await _call_code(
            stub.EnrollCamera(
                pb.EnrollCameraRequest(claim_token=token, csr=rsa_csr, serial="SN-RSA"), timeout=10
            )
        )
        assert bad is grpc.StatusCode.INVALID_ARGUMENT
        # The bad CSR did not spend the token; the first good use does.
        _, csr = new_key_and_csr()
        ok = await stub.EnrollCamera(
            pb.EnrollCameraRequest(claim_token=token, csr=csr, serial="SN-GOOD"), timeout=10
        )
        assert ok.device_id
        again = await _call_code(
            stub.EnrollCamera(
                pb.EnrollCameraRequest(claim_token=token, csr=csr, serial="SN-AGAIN"), timeout=10
            )
        )
        assert again is grpc.StatusCode.UNAUTHENTICATED
        # App-only RPCs are not served without a certificate.
        anonymous = await _call_code(stub.ListCameras(pb.ListCamerasRequest(), timeout=10))
        assert anonymous is grpc.StatusCode.UNAUTHENTICATED


async def test_enrollment_rpcs_are_refused_on_the_mtls_port(household: Household) -> None:
    async with PrivacamClient(household.owner) as app:
        _, csr = new_key_and_csr()
        code = await _call_code(
            app.device_auth().SignIn(
                pb.SignInRequest(login=household.login, password=PASSWORD, csr=csr), timeout=10
            )
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_camera_renews_itself_but_cannot_act_as_an_app(household: Household) -> None:
    async with PrivacamClient(household.camera) as camera:
        # With its own key: the key is pinned at pairing (another is PERMISSION_DENIED).
        renewed = await camera.device_auth().RenewCertificate(
            pb.RenewCertificateRequest(csr=_renewal_csr(household.camera)), timeout=10
        )
        assert renewed.certificate.serial_number
        code = await _call_code(
            camera.device_auth().ListCameras(pb.ListCamerasRequest(), timeout=10)
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_sharing_shows_the_camera_to_the_grantee_only(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    member, _ = await enrollment.register_account(f"m-{suffix}", f"member-{suffix}", PASSWORD)
    stranger, _ = await enrollment.register_account(f"s-{suffix}", f"stranger-{suffix}", PASSWORD)
    async with PrivacamClient(household.owner) as app:
        await app.device_auth().CreateGrant(
            pb.CreateGrantRequest(
                device_id=household.device,
                grantee_login=f"member-{suffix}",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
            ),
            timeout=10,
        )
    async with PrivacamClient(member) as app:
        seen = await app.device_auth().GetCamera(
            pb.GetCameraRequest(device_id=household.device), timeout=10
        )
        assert seen.camera.role == identity_pb2.CAMERA_ROLE_VIEWER
        settings = await _call_code(
            app.device_auth().UpdateCameraSettings(
                pb.UpdateCameraSettingsRequest(
                    device_id=household.device, activity_alerts_enabled=True
                ),
                timeout=10,
            )
        )
        # The grantee sees the camera, so its existence is no secret: not hers to change.
        assert settings is grpc.StatusCode.PERMISSION_DENIED
    async with PrivacamClient(stranger) as app:
        code = await _call_code(
            app.device_auth().GetCamera(pb.GetCameraRequest(device_id=household.device), timeout=10)
        )
        missing = await _call_code(
            app.device_auth().GetCamera(
                pb.GetCameraRequest(device_id="00000000-0000-4000-8000-000000000000"), timeout=10
            )
        )
    # Another household's camera and a camera that does not exist look the same.
    assert code is missing is grpc.StatusCode.NOT_FOUND


async def test_revoking_a_camera_reaches_clip_ingest_within_2_seconds(
    household: Household,
) -> None:
    async with PrivacamClient(household.camera) as camera:
        uploads = clips_grpc.ClipIngestServiceStub(camera.channel("clip_ingest"))

        async def upload_code() -> grpc.StatusCode:
            async def one() -> AsyncIterator[clips_pb.UploadClipRequest]:
                yield clips_pb.UploadClipRequest()

            return await _call_code(uploads.UploadClip(one(), timeout=5))

        # In: the empty upload reaches clip_ingest's own validation.
        assert await upload_code() is grpc.StatusCode.INVALID_ARGUMENT
        async with PrivacamClient(household.owner) as app:
            await app.device_auth().RevokeCamera(
                pb.RevokeCameraRequest(device_id=household.device), timeout=10
            )
        revoked_at = time.monotonic()
        while (code := await upload_code()) is not grpc.StatusCode.UNAUTHENTICATED:
            assert code is grpc.StatusCode.INVALID_ARGUMENT
            assert time.monotonic() - revoked_at < 2, "camera still accepted after 2 s"
            await asyncio.sleep(0.05)


REFUSALS = {
    grpc.StatusCode.PERMISSION_DENIED: "wrong",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "refused",
}


async def test_a_10000_guess_pin_attack_is_locked_out(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    async with PrivacamClient(household.owner) as app:
        await app.device_auth().SetPin(
            pb.SetPinRequest(device_id=household.device, pin="7310"), timeout=10
        )
    relay = platform.profile("as-relay", platform.pki.service("relay_broker"), profiles_home)
    checks = {"wrong": 0, "ok": 0, "refused": 0}
    viewer = _principal_pb(household.owner)
    async with PrivacamClient(relay) as service:
        stub = service.device_auth()
        for guess in range(10_000):
            # As relay_broker asks before a live view: may the owner's app watch, PIN given.
            try:
                await stub.AuthorizeCameraAccess(
                    pb.AuthorizeCameraAccessRequest(
                        device_id=household.device,
                        viewer=viewer,
                        scope=identity_pb2.GRANT_SCOPE_LIVE,
                        check_pin=True,
                        pin=f"{guess:04d}",
                    ),
                    timeout=10,
                )
                checks["ok"] += 1
            except grpc.aio.AioRpcError as error:
                # A wrong PIN is PERMISSION_DENIED, a lockout RESOURCE_EXHAUSTED (else KeyError).
                checks[REFUSALS[error.code()]] += 1
    assert checks["ok"] == 0
    assert checks["wrong"] <= 10
    assert checks["refused"] >= 9_990


def _principal_pb(profile: Profile) -> types_pb2.Principal:
    """The app's identity as a calling service names it (from the app's own certificate)."""
    principal = principal_from_pem(profile.cert_file.read_bytes(), profile.trust_domain)
    return types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=principal.tenant_id or "", id=principal.name
    )


async def test_services_ask_device_auth_who_may_view_a_camera(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    member, member_tenant = await enrollment.register_account(
        f"v-{suffix}", f"viewer-{suffix}", PASSWORD
    )
    stranger, _ = await enrollment.register_account(f"x-{suffix}", f"other-{suffix}", PASSWORD)
    async with PrivacamClient(household.owner) as app:
        await app.device_auth().CreateGrant(
            pb.CreateGrantRequest(
                device_id=household.device,
                grantee_login=f"viewer-{suffix}",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
            ),
            timeout=10,
        )
        await app.device_auth().SetPin(
            pb.SetPinRequest(device_id=household.device, pin="4826"), timeout=10
        )
    clips = platform.profile("as-clips", platform.pki.service("clip_ingest"), profiles_home)
    async with PrivacamClient(clips) as service:
        stub = service.device_auth()

        def ask(
            viewer: Profile, scope: int, pin: str | None
        ) -> Awaitable[pb.AuthorizeCameraAccessResponse]:
            return stub.AuthorizeCameraAccess(
                pb.AuthorizeCameraAccessRequest(
                    device_id=household.device,
                    viewer=_principal_pb(viewer),
                    scope=scope,  # type: ignore[arg-type]
                    check_pin=pin is not None,
                    pin=pin or "",
                ),
                timeout=10,
            )

        allowed = await ask(member, identity_pb2.GRANT_SCOPE_LIVE, "4826")
        assert (allowed.owner_tenant_id, allowed.is_owner) == (household.tenant, False)
        assert list(allowed.household_tenant_ids) == [household.tenant, member_tenant]
        assert allowed.pin_check == pb.PIN_CHECK_RESULT_OK
        assert allowed.settings.pin_set
        assert await _call_code(ask(member, identity_pb2.GRANT_SCOPE_LIVE, "0000")) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert await _call_code(ask(member, identity_pb2.GRANT_SCOPE_CLIPS, None)) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert await _call_code(ask(stranger, identity_pb2.GRANT_SCOPE_LIVE, "4826")) is (
            grpc.StatusCode.NOT_FOUND
        )
        owner = await ask(household.owner, identity_pb2.GRANT_SCOPE_CLIPS, None)
        assert owner.is_owner
        assert owner.pin_check == pb.PIN_CHECK_RESULT_NOT_SET
    # A household's export is retention's to ask for, and only retention's.
    exporter = platform.profile("as-retention", platform.pki.service("retention"), profiles_home)
    async with PrivacamClient(exporter) as service:
        export = await service.device_auth().ExportTenant(
            pb.ExportTenantRequest(tenant_id=household.tenant, export_id=str(uuid.uuid4())),
            timeout=10,
        )
        assert [c.device_id for c in export.cameras] == [household.device]
        assert [g.grantee_tenant_id for g in export.grants_given] == [member_tenant]
    # Apps cannot ask on anyone's behalf, not even their own.
    async with PrivacamClient(household.owner) as app:
        code = await _call_code(
            app.device_auth().AuthorizeCameraAccess(
                pb.AuthorizeCameraAccessRequest(
                    device_id=household.device,
                    viewer=_principal_pb(household.owner),
                    scope=identity_pb2.GRANT_SCOPE_LIVE,
                ),
                timeout=10,
            )
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_sharing_and_pin_changes_land_in_the_households_log(household: Household) -> None:
    async with PrivacamClient(household.owner) as app:
        await app.device_auth().SetPin(
            pb.SetPinRequest(device_id=household.device, pin="1357"), timeout=10
        )
        log = access_log_grpc.AccessLogServiceStub(app.channel("access_log"))
        purposes: list[int] = []
        for _ in range(100):
            reply = await log.ListEntries(
                access_log_pb.ListEntriesRequest(device_id=household.device), timeout=10
            )
            records = [log_pb2.AccessRecord.FromString(e.record) for e in reply.entries]
            purposes = [r.purpose for r in records if r.service == "device_auth"]
            if types_pb2.ACCESS_PURPOSE_PIN_CHANGE in purposes:
                break
            await asyncio.sleep(0.1)
    assert types_pb2.ACCESS_PURPOSE_PIN_CHANGE in purposes
    (pin_change,) = [r for r in records if r.purpose == types_pb2.ACCESS_PURPOSE_PIN_CHANGE]
    # Who did it: the owner's own app install, as its certificate names it.
    owner = principal_from_pem(household.owner.cert_file.read_bytes(), "privacam.local")
    assert (pin_change.principal.tenant_id, pin_change.principal.id) == (
        household.tenant,
        owner.name,
    )


def _renewal_csr(profile: Profile, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """A CSR for the profile's own key (a renewal keeps it) or for `key`."""
    if key is None:
        loaded = serialization.load_pem_private_key(profile.key_file.read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        key = loaded
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def _renewed_profile(old: Profile, issued: pb.IssuedCertificate, home: Path) -> Profile:
    """The same key and endpoints with the renewed certificate, as a device stores it."""
    chain = b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in issued.certificate_chain
    )
    return Profile.create(
        f"{old.name}-renewed-{secrets.token_hex(2)}",
        old.ca_file.read_bytes(),
        chain,
        old.key_file.read_bytes(),
        old.endpoints,
        old.trust_domain,
        home,
    )


def _leaf(profile: Profile) -> x509.Certificate:
    return x509.load_pem_x509_certificate(profile.cert_file.read_bytes())


async def test_renewed_certificate_used(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    """A renewed camera certificate and a renewed app certificate make real mTLS calls
    that succeed (a clip uploaded to clip_ingest, listed and renewed again at device_auth).

    What happens to the certificate a renewal supersedes, as designed (device_auth's README
    and `renew_certificate`): it stays valid until it expires, so a camera whose renewal
    answer was lost keeps working (asserted: it still uploads), it cannot move the camera to
    another key (PERMISSION_DENIED, the key is pinned at pairing), and when the camera
    itself is superseded, paired again under the same serial (a factory reset), every
    certificate it ever had, renewed ones included, is refused by every service within 2 s.
    """
    async with PrivacamClient(household.owner) as app:
        await app.device_auth().UpdateCameraSettings(
            pb.UpdateCameraSettingsRequest(
                device_id=household.device, activity_alerts_enabled=True
            ),
            timeout=10,
        )
        serial = (
            await app.device_auth().GetCamera(
                pb.GetCameraRequest(device_id=household.device), timeout=10
            )
        ).camera.serial
        renewed_app = await app.device_auth().RenewCertificate(
            pb.RenewCertificateRequest(csr=_renewal_csr(household.owner)), timeout=10
        )
    async with PrivacamClient(household.camera) as camera:
        renewed_camera = await camera.device_auth().RenewCertificate(
            pb.RenewCertificateRequest(csr=_renewal_csr(household.camera)), timeout=10
        )
    old_camera, old_app = household.camera, household.owner
    new_camera = _renewed_profile(old_camera, renewed_camera.certificate, profiles_home)
    new_app = _renewed_profile(old_app, renewed_app.certificate, profiles_home)
    for old, new in ((old_camera, new_camera), (old_app, new_app)):
        before, after = _leaf(old), _leaf(new)
        assert after.serial_number != before.serial_number
        assert after.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ) == before.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert after.public_key() == before.public_key()
        assert after.not_valid_after_utc >= before.not_valid_after_utc
        print(
            f"{old.name}: serial {before.serial_number:x} until {before.not_valid_after_utc:%F %T}"
            f" renewed as {after.serial_number:x} until {after.not_valid_after_utc:%F %T}"
        )

    # The renewed certificates at work: the camera uploads, the app lists the clip, the
    # camera renews again from its renewed certificate (device_auth knows it as current).
    async with PrivacamClient(new_camera) as camera:
        uploaded = await upload_clip(camera, make_mp4(6.0, seed=23), "renewed-cert-clip")
        assert uploaded.created
        again = await camera.device_auth().RenewCertificate(
            pb.RenewCertificateRequest(csr=_renewal_csr(new_camera)), timeout=10
        )
        assert again.certificate.certificate_chain
    async with PrivacamClient(new_app) as app:
        listed = [c.clip_id async for c in list_clips(app, household.device)]
    assert uploaded.clip_id in listed
    # The superseded certificate: valid until it expires, and only with the pinned key.
    async with PrivacamClient(old_camera) as camera:
        assert (await upload_clip(camera, make_mp4(6.0, seed=24), "old-cert-clip")).created
        other_key, _ = new_key_and_csr()
        moved = await _call_code(
            camera.device_auth().RenewCertificate(
                pb.RenewCertificateRequest(csr=_renewal_csr(old_camera, other_key)), timeout=10
            )
        )
    assert moved is grpc.StatusCode.PERMISSION_DENIED

    # The camera paired again under its serial: the old identity is superseded.
    async with PrivacamClient(household.owner) as app:
        token = await app.device_auth().CreateClaimToken(pb.CreateClaimTokenRequest())
    repaired, repaired_device = await platform.enrollment(profiles_home).enroll_camera(
        f"repaired-{secrets.token_hex(3)}", token.claim_token, serial
    )
    assert repaired_device != household.device

    async def codes(profile: Profile) -> tuple[grpc.StatusCode, grpc.StatusCode]:
        async with PrivacamClient(profile) as camera:
            upload = await _call_code(upload_clip(camera, make_mp4(6.0, seed=25), "late"))
            renew = await _call_code(
                camera.device_auth().RenewCertificate(
                    pb.RenewCertificateRequest(csr=_renewal_csr(profile)), timeout=10
                )
            )
        return upload, renew

    superseded_at = time.monotonic()
    refused = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED)
    for profile in (old_camera, new_camera):
        while (outcome := await codes(profile)) != refused:
            assert time.monotonic() - superseded_at < 2, f"{profile.name} still in: {outcome}"
            await asyncio.sleep(0.05)
        print(f"{profile.name} after re-pairing: upload {outcome[0].name}, renew {outcome[1].name}")
    async with PrivacamClient(repaired) as camera:
        fresh = await camera.device_auth().RenewCertificate(
            pb.RenewCertificateRequest(csr=_renewal_csr(repaired)), timeout=10
        )
    assert fresh.certificate.certificate_chain
