"""The DeviceAuthService servicer: validates messages, calls DeviceAuth, builds replies.

Who may reach each RPC is enforced before this code runs (see policies.py). The
caller is taken only from `current_principal()`, i.e. from its verified
certificate: an app acts on its own tenant, a camera renews its own identity, and
only services name the tenant or camera in the request. RegisterAccount, SignIn and
EnrollCamera are served on the enrollment port, where no client certificate exists,
so they never look for a caller. Domain errors become statuses through the shared
table registered below; handlers carry no try/except.
"""

from __future__ import annotations

from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from privacam_core.identity import Principal, PrincipalKind
from privacam_core.timestamps import to_timestamp
from services.common.auth import current_principal
from services.common.errors import InvalidArgument, PermissionDenied, map_domain_error
from services.common.memo import DerivedCache
from services.device_auth.adapters.events import watch_rule_name
from services.device_auth.api import convert
from services.device_auth.domain.certificates import IssuedCertificate
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
)
from services.device_auth.domain.exports import TenantExporter
from services.device_auth.domain.privacy import PrivacyModes
from services.device_auth.domain.records import Subject
from services.device_auth.domain.service import CameraView, DeviceAuth

# Messages of TooManyAttempts and LockedOut already say when to try again
# ("try again in 4 s", "locked for 3600 s"), so the status message carries it.
for _error, _status in (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (BadCredentials, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (WrongPin, grpc.StatusCode.PERMISSION_DENIED),
    (PreconditionFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (TooManyAttempts, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LockedOut, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Conflict, grpc.StatusCode.ABORTED),
):
    map_domain_error(_error, _status)


def _subject(principal: Principal) -> Subject:
    return Subject(principal.kind, principal.tenant_id, principal.name)


def _app() -> tuple[str, Subject]:
    """The calling app install's tenant and identity (the actor of what it does)."""
    principal = current_principal()
    return _app_tenant(principal), _subject(principal)


def _app_tenant(principal: Principal | None = None) -> str:
    """The calling app install's tenant."""
    principal = principal or current_principal()
    if principal.kind is not PrincipalKind.APP or principal.tenant_id is None:
        raise PermissionDenied("only app identities may call this method")
    return principal.tenant_id


def _service() -> Subject:
    principal = current_principal()
    if principal.kind is not PrincipalKind.SERVICE:
        raise PermissionDenied("only service identities may call this method")
    return _subject(principal)


def _caller_key(context: Any) -> ec.EllipticCurvePublicKey | None:
    """The public key of the client certificate this call came with (mTLS verified it)."""
    pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
    if pem is None:
        return None
    key = x509.load_pem_x509_certificate(pem).public_key()
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


class DeviceAuthServicer(pb_grpc.DeviceAuthServiceServicer):
    def __init__(
        self,
        auth: DeviceAuth,
        access_log_keys: list[pb.AccessLogKey],
        exporter: TenantExporter,
        privacy: PrivacyModes,
    ) -> None:
        self._auth = auth
        self._exporter = exporter
        self._privacy = privacy
        self._log_keys = access_log_keys
        # GetCamera's reply per caller and camera, made once per view (owners' views are
        # themselves made once per camera record): building the message was most of the call.
        self._camera_replies: DerivedCache[tuple[str, str], CameraView, pb.GetCameraResponse] = (
            DerivedCache(lambda view: pb.GetCameraResponse(camera=convert.camera_pb(view)))
        )

    def _certificate(self, certificate: IssuedCertificate) -> pb.IssuedCertificate:
        issued = convert.certificate_pb(certificate)
        issued.access_log_keys.extend(self._log_keys)
        return issued

    # --- accounts and app installs (the first two: no client certificate) ----------

    async def RegisterAccount(
        self, request: pb.RegisterAccountRequest, context: Any
    ) -> pb.RegisterAccountResponse:
        enrollment = await self._auth.register_account(
            request.login, request.password, convert.csr(request.csr), request.install_label
        )
        return pb.RegisterAccountResponse(
            tenant_id=enrollment.tenant_id,
            install_id=enrollment.principal_id,
            certificate=self._certificate(enrollment.certificate),
        )

    async def SignIn(self, request: pb.SignInRequest, context: Any) -> pb.SignInResponse:
        enrollment = await self._auth.sign_in(
            request.login, request.password, convert.csr(request.csr), request.install_label
        )
        return pb.SignInResponse(
            tenant_id=enrollment.tenant_id,
            install_id=enrollment.principal_id,
            certificate=self._certificate(enrollment.certificate),
        )

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Any
    ) -> pb.GetAccountResponse:
        tenant_id, _ = _app()
        return convert.account_pb(await self._auth.get_account(tenant_id))

    async def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: Any
    ) -> pb.UpdateAccountResponse:
        tenant_id, _ = _app()
        if request.HasField("login"):
            login = await self._auth.update_login(tenant_id, request.login)
        else:
            login = (await self._auth.get_account(tenant_id)).login
        return pb.UpdateAccountResponse(login=login)

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Any
    ) -> pb.ChangePasswordResponse:
        tenant_id, _ = _app()
        await self._auth.change_password(tenant_id, request.current_password, request.new_password)
        return pb.ChangePasswordResponse()

    async def ListAppInstalls(
        self, request: pb.ListAppInstallsRequest, context: Any
    ) -> pb.ListAppInstallsResponse:
        tenant_id, caller = _app()
        installs = await self._auth.list_installs(tenant_id, current_install_id=caller.name)
        return pb.ListAppInstallsResponse(installs=[convert.install_pb(i) for i in installs])

    async def RevokeAppInstall(
        self, request: pb.RevokeAppInstallRequest, context: Any
    ) -> pb.RevokeAppInstallResponse:
        tenant_id, caller = _app()
        revoked_at = await self._auth.revoke_install(
            tenant_id, convert.identifier(request.install_id, "install_id"), caller
        )
        return pb.RevokeAppInstallResponse(revoked_at=to_timestamp(revoked_at))

    # --- camera pairing and certificates ----------------------------------------------

    async def CreateClaimToken(
        self, request: pb.CreateClaimTokenRequest, context: Any
    ) -> pb.CreateClaimTokenResponse:
        tenant_id, caller = _app()
        issued = await self._auth.create_claim_token(tenant_id, caller)
        return pb.CreateClaimTokenResponse(
            claim_token=issued.token, expires_at=to_timestamp(issued.expires_at)
        )

    async def EnrollCamera(
        self, request: pb.EnrollCameraRequest, context: Any
    ) -> pb.EnrollCameraResponse:
        # No client certificate here: the claim token is the only credential.
        enrollment = await self._auth.enroll_camera(
            request.claim_token, convert.csr(request.csr), request.serial
        )
        return pb.EnrollCameraResponse(
            tenant_id=enrollment.tenant_id,
            device_id=enrollment.principal_id,
            certificate=self._certificate(enrollment.certificate),
        )

    async def RenewCertificate(
        self, request: pb.RenewCertificateRequest, context: Any
    ) -> pb.RenewCertificateResponse:
        der = convert.csr(request.csr)
        principal = current_principal()
        certificate = await self._auth.renew_certificate(
            _subject(principal), principal.certificate_serial, der
        )
        return pb.RenewCertificateResponse(certificate=self._certificate(certificate))

    async def ListCameras(
        self, request: pb.ListCamerasRequest, context: Any
    ) -> pb.ListCamerasResponse:
        tenant_id, _ = _app()
        cameras = await self._auth.list_cameras(tenant_id)
        return pb.ListCamerasResponse(cameras=[convert.camera_pb(c) for c in cameras])

    async def GetCamera(self, request: pb.GetCameraRequest, context: Any) -> pb.GetCameraResponse:
        tenant_id = _app_tenant()
        # The domain checks the id (INVALID_ARGUMENT naming device_id); once is enough here.
        view = await self._auth.get_camera(tenant_id, request.device_id)
        return self._camera_replies.get((tenant_id, view.device_id), view)

    async def RevokeCamera(
        self, request: pb.RevokeCameraRequest, context: Any
    ) -> pb.RevokeCameraResponse:
        tenant_id, caller = _app()
        revoked_at = await self._auth.revoke_camera(
            tenant_id, convert.identifier(request.device_id, "device_id"), caller
        )
        return pb.RevokeCameraResponse(revoked_at=to_timestamp(revoked_at))

    # --- camera settings ----------------------------------------------------------------

    async def GetCameraSettings(
        self, request: pb.GetCameraSettingsRequest, context: Any
    ) -> pb.GetCameraSettingsResponse:
        device_id = convert.identifier(request.device_id, "device_id")
        principal = current_principal()
        if principal.kind is PrincipalKind.SERVICE:
            settings = await self._auth.settings_for_service(device_id)
        else:
            tenant_id, _ = _app()
            settings = await self._auth.get_camera_settings(tenant_id, device_id)
        return pb.GetCameraSettingsResponse(settings=convert.settings_pb(settings))

    async def UpdateCameraSettings(
        self, request: pb.UpdateCameraSettingsRequest, context: Any
    ) -> pb.UpdateCameraSettingsResponse:
        tenant_id, caller = _app()
        settings = await self._auth.update_camera_settings(
            tenant_id,
            convert.identifier(request.device_id, "device_id"),
            activity_alerts_enabled=request.activity_alerts_enabled
            if request.HasField("activity_alerts_enabled")
            else None,
            retention_days=request.retention_days if request.HasField("retention_days") else None,
            label=request.label if request.HasField("label") else None,
            mute_watch_rules=[watch_rule_name(r) for r in request.mute_watch_rules],
            unmute_watch_rules=[watch_rule_name(r) for r in request.unmute_watch_rules],
            watch_burst_count=request.watch_burst_count
            if request.HasField("watch_burst_count")
            else None,
            actor=caller,
        )
        return pb.UpdateCameraSettingsResponse(settings=convert.settings_pb(settings))

    async def SetPrivacyMode(
        self, request: pb.SetPrivacyModeRequest, context: Any
    ) -> pb.SetPrivacyModeResponse:
        tenant_id, caller = _app()
        settings = await self._privacy.set(
            tenant_id, caller.name, request.statement, _caller_key(context)
        )
        return pb.SetPrivacyModeResponse(settings=convert.settings_pb(settings))

    # --- camera PIN -------------------------------------------------------------------

    async def SetPin(self, request: pb.SetPinRequest, context: Any) -> pb.SetPinResponse:
        tenant_id, caller = _app()
        await self._auth.set_pin(
            tenant_id, convert.identifier(request.device_id, "device_id"), request.pin, caller
        )
        return pb.SetPinResponse()

    async def ChangePin(self, request: pb.ChangePinRequest, context: Any) -> pb.ChangePinResponse:
        tenant_id, caller = _app()
        await self._auth.change_pin(
            tenant_id,
            convert.identifier(request.device_id, "device_id"),
            request.current_pin,
            request.new_pin,
            caller,
        )
        return pb.ChangePinResponse()

    async def ClearPin(self, request: pb.ClearPinRequest, context: Any) -> pb.ClearPinResponse:
        tenant_id, caller = _app()
        proof = request.WhichOneof("proof")
        await self._auth.clear_pin(
            tenant_id,
            convert.identifier(request.device_id, "device_id"),
            current_pin=request.current_pin if proof == "current_pin" else None,
            password=request.password if proof == "password" else None,
            actor=caller,
        )
        return pb.ClearPinResponse()

    # --- sharing ------------------------------------------------------------------------

    async def CreateGrant(
        self, request: pb.CreateGrantRequest, context: Any
    ) -> pb.CreateGrantResponse:
        tenant_id, caller = _app()
        view = await self._auth.create_grant(
            tenant_id,
            convert.identifier(request.device_id, "device_id"),
            request.grantee_login,
            convert.scopes(request.scopes),
            convert.moment(request.expires_at, "expires_at")
            if request.HasField("expires_at")
            else None,
            caller,
        )
        return pb.CreateGrantResponse(grant=convert.grant_pb(view))

    async def ListGrants(
        self, request: pb.ListGrantsRequest, context: Any
    ) -> pb.ListGrantsResponse:
        tenant_id, _ = _app()
        views = await self._auth.list_grants(
            tenant_id,
            convert.direction(request.direction),
            convert.optional_identifier(request.device_id, "device_id"),
        )
        return pb.ListGrantsResponse(grants=[convert.grant_pb(v) for v in views])

    async def RevokeGrant(
        self, request: pb.RevokeGrantRequest, context: Any
    ) -> pb.RevokeGrantResponse:
        tenant_id, caller = _app()
        revoked_at = await self._auth.revoke_grant(
            tenant_id, convert.identifier(request.grant_id, "grant_id"), caller
        )
        return pb.RevokeGrantResponse(revoked_at=to_timestamp(revoked_at))

    # --- internal (service certificates only) -------------------------------------------

    async def VerifyPassword(
        self, request: pb.VerifyPasswordRequest, context: Any
    ) -> pb.VerifyPasswordResponse:
        _service()
        valid = await self._auth.verify_password(
            convert.identifier(request.tenant_id, "tenant_id"), request.password
        )
        return pb.VerifyPasswordResponse(valid=valid)

    async def PurgeTenant(
        self, request: pb.PurgeTenantRequest, context: Any
    ) -> pb.PurgeTenantResponse:
        caller = _service()
        report = await self._auth.purge_tenant(
            convert.identifier(request.tenant_id, "tenant_id"),
            convert.identifier(request.cancellation_id, "cancellation_id"),
            caller,
        )
        return pb.PurgeTenantResponse(
            cameras_removed=report.cameras_removed,
            app_installs_removed=report.installs_removed,
            grants_removed=report.grants_removed,
            certificates_revoked=report.certificates_revoked,
            completed_at=to_timestamp(report.completed_at),
        )

    async def AuthorizeCameraAccess(
        self, request: pb.AuthorizeCameraAccessRequest, context: Any
    ) -> pb.AuthorizeCameraAccessResponse:
        _service()
        viewer = convert.on_behalf_of(request.viewer, "viewer")
        if viewer.kind is not PrincipalKind.APP or viewer.tenant_id is None:
            raise InvalidArgument("viewer.kind must be PRINCIPAL_KIND_APP: only apps view cameras")
        (scope,) = convert.scopes([request.scope], "scope")
        decision = await self._auth.authorize_viewing(
            viewer.tenant_id,
            convert.identifier(request.device_id, "device_id"),
            scope,
            pin=request.pin if request.check_pin else None,
            actor=viewer,
        )
        return pb.AuthorizeCameraAccessResponse(
            owner_tenant_id=decision.owner_tenant_id,
            is_owner=decision.grant_id is None,
            grant_id=decision.grant_id or "",
            settings=convert.settings_pb(decision.settings),
            household_tenant_ids=decision.household_tenant_ids,
            pin_check=pb.PIN_CHECK_RESULT_OK
            if decision.pin_checked
            else pb.PIN_CHECK_RESULT_NOT_SET,
        )

    async def ExportTenant(
        self, request: pb.ExportTenantRequest, context: Any
    ) -> pb.ExportTenantResponse:
        reader = _service().name.replace("-", "_")
        export = await self._exporter.export(
            convert.identifier(request.tenant_id, "tenant_id"),
            convert.identifier(request.export_id, "export_id"),
            reader,
        )
        return pb.ExportTenantResponse(
            tenant_id=export.account.tenant_id,
            login=export.account.login,
            created_at=to_timestamp(export.account.created_at),
            app_installs=[convert.install_pb(i) for i in export.installs],
            cameras=[convert.camera_pb(c) for c in export.cameras],
            grants_given=[convert.grant_pb(g) for g in export.grants_given],
            grants_received=[convert.grant_pb(g) for g in export.grants_received],
        )
