"""Conversions between the identity API's messages and device_auth's domain values.

Request side: each reader checks what the proto promises and raises `InvalidArgument`
naming the field. Reply side: views become messages with nothing the RPC does not
promise (no hashes, no tokens, no login outside the owner's own grant listing).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import identity_pb2, privacy_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import ID_PATTERN, PrincipalKind
from privacam_core.timestamps import to_timestamp
from services.common.errors import InvalidArgument
from services.device_auth.adapters.events import watch_settings_pb
from services.device_auth.domain.certificates import CSR_MAX_BYTES, IssuedCertificate
from services.device_auth.domain.records import GrantScope, SettingsView, Subject
from services.device_auth.domain.service import (
    AccountView,
    CameraRole,
    CameraView,
    GrantDirection,
    GrantView,
    InstallView,
)

_SCOPES: dict[int, GrantScope] = {
    identity_pb2.GRANT_SCOPE_LIVE: GrantScope.LIVE,
    identity_pb2.GRANT_SCOPE_CLIPS: GrantScope.CLIPS,
    identity_pb2.GRANT_SCOPE_TALK: GrantScope.TALK,
}
_SCOPES_PB = {
    GrantScope.LIVE: identity_pb2.GRANT_SCOPE_LIVE,
    GrantScope.CLIPS: identity_pb2.GRANT_SCOPE_CLIPS,
    GrantScope.TALK: identity_pb2.GRANT_SCOPE_TALK,
}
_ROLES_PB = {
    CameraRole.OWNER: identity_pb2.CAMERA_ROLE_OWNER,
    CameraRole.VIEWER: identity_pb2.CAMERA_ROLE_VIEWER,
}
_DIRECTIONS: dict[int, GrantDirection | None] = {
    pb.GRANT_DIRECTION_UNSPECIFIED: None,  # both sides
    pb.GRANT_DIRECTION_GIVEN: GrantDirection.GIVEN,
    pb.GRANT_DIRECTION_RECEIVED: GrantDirection.RECEIVED,
}
_SUBJECT_KINDS = {
    types_pb2.PRINCIPAL_KIND_APP: PrincipalKind.APP,
    types_pb2.PRINCIPAL_KIND_CAMERA: PrincipalKind.CAMERA,
}

# --- request side -----------------------------------------------------------------


def identifier(value: str, field: str) -> str:
    """A server-generated id (UUID), required."""
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"{field} must be an id issued by this service "
            "(1 to 63 lower-case letters, digits or '-')"
        )
    return value


def optional_identifier(value: str, field: str) -> str | None:
    """An id where empty means "none"."""
    return identifier(value, field) if value else None


def csr(der: bytes, field: str = "csr") -> bytes:
    """The size promised by the proto, checked before anything parses the request."""
    if not der:
        raise InvalidArgument(f"{field} is empty: send a PKCS#10 certificate request in DER")
    if len(der) > CSR_MAX_BYTES:
        raise InvalidArgument(
            f"{field} is {len(der)} bytes; at most {CSR_MAX_BYTES} (4 KiB) are accepted"
        )
    return der


def scopes(values: Iterable[int], field: str = "scopes") -> list[GrantScope]:
    """Each scope named (duplicates and emptiness are the domain's to refuse)."""
    chosen = []
    for index, value in enumerate(values):
        scope = _SCOPES.get(value)
        if scope is None:
            raise InvalidArgument(
                f"{field}[{index}] must be GRANT_SCOPE_LIVE, GRANT_SCOPE_CLIPS or GRANT_SCOPE_TALK"
            )
        chosen.append(scope)
    return chosen


def direction(value: int) -> GrantDirection | None:
    """UNSPECIFIED lists both sides."""
    if value not in _DIRECTIONS:
        raise InvalidArgument(
            "direction must be GRANT_DIRECTION_GIVEN, GRANT_DIRECTION_RECEIVED or unspecified"
        )
    return _DIRECTIONS[value]


def moment(stamp: Timestamp, field: str) -> datetime:
    """A request timestamp as an aware UTC datetime."""
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{field} is not a valid timestamp") from None


def on_behalf_of(message: types_pb2.Principal, field: str = "on_behalf_of") -> Subject:
    """The app (or camera) a service acts for: kind, tenant and id all well-formed."""
    kind = _SUBJECT_KINDS.get(message.kind)
    if kind is None:
        raise InvalidArgument(f"{field}.kind must be PRINCIPAL_KIND_APP or PRINCIPAL_KIND_CAMERA")
    return Subject(
        kind,
        identifier(message.tenant_id, f"{field}.tenant_id"),
        identifier(message.id, f"{field}.id"),
    )


# --- reply side ---------------------------------------------------------------------


def certificate_pb(certificate: IssuedCertificate) -> pb.IssuedCertificate:
    """DER certificates, leaf first, ending with the issuing CA; serial in lower-case hex."""
    return pb.IssuedCertificate(
        certificate_chain=list(certificate.chain_der),
        not_before=to_timestamp(certificate.not_before),
        not_after=to_timestamp(certificate.not_after),
        serial_number=certificate.serial_hex,
    )


def settings_pb(settings: SettingsView) -> identity_pb2.CameraSettings:
    return identity_pb2.CameraSettings(
        activity_alerts_enabled=settings.activity_alerts_enabled,
        retention_days=settings.retention_days,
        pin_set=settings.pin_set,
        label=settings.label,
        privacy=privacy_pb2.SignedPrivacyStatement.FromString(settings.privacy)
        if settings.privacy
        else None,
        watch=watch_settings_pb(settings),
    )


def scopes_pb(values: Iterable[GrantScope]) -> list[identity_pb2.GrantScope.ValueType]:
    """In enum order, so replies do not depend on set iteration order."""
    return sorted(_SCOPES_PB[scope] for scope in values)


def camera_pb(view: CameraView) -> identity_pb2.Camera:
    return identity_pb2.Camera(
        device_id=view.device_id,
        owner_tenant_id=view.owner_tenant_id,
        serial=view.serial,
        enrolled_at=to_timestamp(view.enrolled_at),
        certificate_not_after=to_timestamp(view.certificate_not_after),
        role=_ROLES_PB[view.role],
        scopes=scopes_pb(view.scopes),
        settings=settings_pb(view.settings),
        key_sha256=bytes.fromhex(view.key_sha256),
    )


def grant_pb(view: GrantView) -> identity_pb2.Grant:
    grant = view.grant
    message = identity_pb2.Grant(
        grant_id=grant.grant_id,
        device_id=grant.device_id,
        owner_tenant_id=grant.owner_tenant_id,
        grantee_tenant_id=grant.grantee_tenant_id,
        grantee_login=view.grantee_login,
        scopes=scopes_pb(grant.scopes),
        created_at=to_timestamp(grant.created_at),
    )
    if grant.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(grant.expires_at))
    return message


def install_pb(view: InstallView) -> identity_pb2.AppInstall:
    return identity_pb2.AppInstall(
        install_id=view.install_id,
        label=view.label,
        enrolled_at=to_timestamp(view.enrolled_at),
        certificate_not_after=to_timestamp(view.certificate_not_after),
        current=view.current,
    )


def account_pb(view: AccountView) -> pb.GetAccountResponse:
    return pb.GetAccountResponse(
        tenant_id=view.tenant_id, login=view.login, created_at=to_timestamp(view.created_at)
    )
