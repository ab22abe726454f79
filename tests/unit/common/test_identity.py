from __future__ import annotations

import pytest

from privacam_core.identity import (
    IdentityRejected,
    Principal,
    PrincipalKind,
    parse_spiffe_uri,
    principal_from_pem,
    spiffe_uri,
)
from services.common.auth import APP, Authorizer, NoRevocations, Policy, services
from services.common.errors import PermissionDenied, Unauthenticated
from tests.pki_helpers import PkiFactory


def test_camera_identity_round_trips() -> None:
    uri = spiffe_uri("privacam.local", PrincipalKind.CAMERA, "cam-1", "tenant-a")
    assert uri == "spiffe://privacam.local/tenant/tenant-a/camera/cam-1"
    assert parse_spiffe_uri(uri, "privacam.local") == (PrincipalKind.CAMERA, "cam-1", "tenant-a")


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://other.domain/service/clip-ingest",
        "spiffe://privacam.local/tenant/t/printer/p",
        "spiffe://privacam.local/service/clip-ingest/extra",
        "spiffe://privacam.local/tenant/T_UPPER/camera/c",
        "spiffe://privacam.local/service/",
    ],
)
def test_foreign_or_malformed_identities_are_unauthenticated(uri: str) -> None:
    with pytest.raises(IdentityRejected):
        parse_spiffe_uri(uri, "privacam.local")


def test_ids_cannot_smuggle_paths() -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        spiffe_uri("privacam.local", PrincipalKind.CAMERA, "../other", "tenant-a")


def test_principal_comes_from_the_certificate(pki: PkiFactory) -> None:
    camera = pki.camera("tenant-a", "cam-1")
    principal = principal_from_pem(
        camera.cert_file.read_bytes().split(b"-----END")[0] + b"-----END CERTIFICATE-----\n",
        "privacam.local",
    )
    assert principal.kind is PrincipalKind.CAMERA
    assert (principal.tenant_id, principal.name) == ("tenant-a", "cam-1")
    assert principal.uri == "spiffe://privacam.local/tenant/tenant-a/camera/cam-1"


def _principal(kind: PrincipalKind) -> Principal:
    from datetime import UTC, datetime

    tenant = "t" if kind in (PrincipalKind.CAMERA, PrincipalKind.APP) else None
    return Principal(kind, "x", tenant, "privacam.local", 1, datetime.now(UTC))


def test_authorizer_allows_only_declared_kinds() -> None:
    authorizer = Authorizer({"/a.B/C": APP, "/a.B/D": services("x")}, NoRevocations())
    authorizer.authorize(_principal(PrincipalKind.APP), "/a.B/C")
    with pytest.raises(PermissionDenied, match="only app identities"):
        authorizer.authorize(_principal(PrincipalKind.CAMERA), "/a.B/C")
    with pytest.raises(PermissionDenied, match="not open to any caller"):
        authorizer.authorize(_principal(PrincipalKind.SERVICE), "/a.B/Undeclared")


def test_authorizer_refuses_revoked_principals() -> None:
    class Everything:
        def is_revoked(self, principal: Principal) -> bool:
            return True

    with pytest.raises(Unauthenticated, match="revoked"):
        Authorizer({"/a.B/C": APP}, Everything()).authorize(_principal(PrincipalKind.APP), "/a.B/C")


def test_services_are_admitted_by_name_only() -> None:
    def service(name: str) -> Principal:
        from datetime import UTC, datetime

        return Principal(PrincipalKind.SERVICE, name, None, "privacam.local", 1, datetime.now(UTC))

    authorizer = Authorizer(
        {"/a.B/C": APP | services("clip-ingest", "retention"), "/a.B/D": Policy()},
        NoRevocations(),
    )
    authorizer.authorize(service("retention"), "/a.B/C")
    authorizer.authorize(_principal(PrincipalKind.APP), "/a.B/C")
    with pytest.raises(PermissionDenied) as refused:
        authorizer.authorize(service("relay-broker"), "/a.B/C")
    assert str(refused.value) == (
        "service relay-broker may not call this method; "
        "only app identities or services clip-ingest, retention may call this method"
    )
    with pytest.raises(PermissionDenied, match="not open to callers with a certificate"):
        authorizer.authorize(service("retention"), "/a.B/D")


def test_a_policy_cannot_admit_every_service() -> None:
    with pytest.raises(ValueError, match="by name"):
        Policy(frozenset({PrincipalKind.SERVICE}))
    with pytest.raises(ValueError, match="service identity name"):
        services("clip_ingest")
