"""Who is calling: a Principal parsed from the SPIFFE URI SAN of the peer certificate.

Identity is a certificate (no bearer tokens): `spiffe://<domain>/tenant/<t>/camera/<d>`,
`spiffe://<domain>/tenant/<t>/app/<install>`, `spiffe://<domain>/service/<name>`,
`spiffe://<domain>/operator/<name>`.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID

# Ids are opaque and short: no personal data fits, and nothing odd reaches a path or a key.
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class IdentityRejected(Exception):
    """A certificate's identity is not one this platform accepts (its message says why).
    The services answer it as UNAUTHENTICATED (services/common/interceptors.py)."""


class PrincipalKind(enum.Enum):
    CAMERA = "camera"
    APP = "app"
    SERVICE = "service"
    OPERATOR = "operator"


CA_KINDS_PREFIX = "privacam-principals:"
"""An issuing CA's subject names the kinds of principal it may issue, in an
organizational unit `privacam-principals:<kind>,<kind>` that the root signed into it
(`privacam-principals:app,camera` for device_auth's CA, `...:service`, `...:operator`).
A leaf is accepted only as a kind its issuer names: whoever holds device_auth's issuing
key can mint cameras and apps, never a service or an operator. Issuing CAs have a path
length of 0, so none can make a CA of another kind; TLS has already checked that the
leaf's issuer name is the subject of the CA whose key signed it."""


def ca_kinds(name: x509.Name) -> frozenset[str]:
    """The kinds a CA's subject says it issues (none for a CA without the attribute)."""
    kinds: set[str] = set()
    for attribute in name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        value = attribute.value if isinstance(attribute.value, str) else ""
        if value.startswith(CA_KINDS_PREFIX):
            kinds.update(value.removeprefix(CA_KINDS_PREFIX).split(","))
    return frozenset(kinds)


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    name: str
    """Device id, app install id, service name or operator name."""
    tenant_id: str | None
    """The household a camera or app belongs to; None for services and operators."""
    trust_domain: str
    certificate_serial: int
    not_after: datetime
    uri: str = field(init=False, repr=False, compare=False)
    """The SPIFFE URI of this identity (made once: every call's revocation check uses it)."""
    subject: bytes = field(init=False, repr=False, compare=False)
    """How revocation records name it: `subject_digest(uri)`."""

    def __post_init__(self) -> None:
        if self.tenant_id is not None:
            uri = f"spiffe://{self.trust_domain}/tenant/{self.tenant_id}/{self.kind.value}/{self.name}"
        else:
            uri = f"spiffe://{self.trust_domain}/{self.kind.value}/{self.name}"
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "subject", subject_digest(uri))


def subject_digest(uri: str) -> bytes:
    """How a revocation record names its subject: SHA-256 of the SPIFFE URI (records
    outlive the account, and must not name it)."""
    return hashlib.sha256(uri.encode()).digest()


def spiffe_uri(
    trust_domain: str, kind: PrincipalKind, name: str, tenant_id: str | None = None
) -> str:
    """The URI SAN a certificate for this identity carries."""
    for value in (name, tenant_id) if tenant_id is not None else (name,):
        if not ID_PATTERN.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid id: lower-case letters, digits and '-'")
    if kind in (PrincipalKind.CAMERA, PrincipalKind.APP):
        if tenant_id is None:
            raise ValueError(f"a {kind.value} identity needs a tenant")
        return f"spiffe://{trust_domain}/tenant/{tenant_id}/{kind.value}/{name}"
    if tenant_id is not None:
        raise ValueError(f"a {kind.value} identity has no tenant")
    return f"spiffe://{trust_domain}/{kind.value}/{name}"


def parse_spiffe_uri(uri: str, trust_domain: str) -> tuple[PrincipalKind, str, str | None]:
    """(kind, name, tenant) of a Privacam SPIFFE URI, or IdentityRejected."""
    prefix = f"spiffe://{trust_domain}/"
    if not uri.startswith(prefix):
        raise IdentityRejected("certificate identity is not in this platform's trust domain")
    parts = uri[len(prefix) :].split("/")
    if len(parts) == 4 and parts[0] == "tenant" and parts[2] in ("camera", "app"):
        _, tenant, kind, name = parts
    elif len(parts) == 2 and parts[0] in ("service", "operator"):
        kind, name = parts
        tenant = None
    else:
        raise IdentityRejected("certificate identity has an unknown shape")
    if not ID_PATTERN.fullmatch(name) or (tenant is not None and not ID_PATTERN.fullmatch(tenant)):
        raise IdentityRejected("certificate identity has a malformed id")
    return PrincipalKind(kind), name, tenant


@lru_cache(maxsize=4096)
def principal_from_pem(pem: bytes, trust_domain: str) -> Principal:
    """The Principal of a PEM certificate that TLS has already verified.

    Cached by certificate bytes: a certificate's identity never changes, and
    parsing it on every call would cost more than the call itself.
    """
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise IdentityRejected("certificate has no subject alternative name") from None
    uris = [
        u
        for u in san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith("spiffe://")
    ]
    if len(uris) != 1:
        raise IdentityRejected("certificate must carry exactly one spiffe:// URI")
    kind, name, tenant = parse_spiffe_uri(uris[0], trust_domain)
    if kind.value not in ca_kinds(certificate.issuer):
        raise IdentityRejected(
            f"a {kind.value} certificate must come from the CA for {kind.value}s"
        )
    return Principal(
        kind=kind,
        name=name,
        tenant_id=tenant,
        trust_domain=trust_domain,
        certificate_serial=certificate.serial_number,
        not_after=certificate.not_valid_after_utc,
    )
