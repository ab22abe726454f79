"""CSR checks and issuance of camera and app certificates.

The identity in an issued certificate comes from the server (tenant, device
or install id); whatever subject or SAN the CSR asks for is ignored. The CSR
only proves possession of the key, which never leaves the camera or phone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from privacam_core.identity import PrincipalKind, spiffe_uri
from services.common.clock import Clock
from services.common.pki import Issuer, certificate_pem
from services.device_auth.domain.errors import InvalidInput

CSR_MAX_BYTES = 4096


def key_digest(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo (DER), hex: how a camera's key is pinned."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def validate_csr(der: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a well-formed, self-signed PKCS#10 request."""
    if not der:
        raise InvalidInput("csr is empty: send a PKCS#10 certificate request in DER")
    if len(der) > CSR_MAX_BYTES:
        raise InvalidInput(f"csr is {len(der)} bytes; at most {CSR_MAX_BYTES} are accepted")
    try:
        csr = x509.load_der_x509_csr(der)
        key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("csr is not a PKCS#10 certificate request in DER encoding") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(
            f"csr key is {_key_kind(key)}; only EC P-256 (secp256r1) keys are accepted"
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(
            f"csr key is on curve {key.curve.name}; only P-256 (secp256r1) is accepted"
        )
    try:
        signed = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm):  # an unsupported signature algorithm
        signed = False
    if not signed:
        raise InvalidInput("csr signature does not verify: it must be signed by the key it holds")
    return key


def _key_kind(key: object) -> str:
    kinds: tuple[tuple[type, str], ...] = (
        (rsa.RSAPublicKey, "RSA"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (dsa.DSAPublicKey, "DSA"),
    )
    return next((kind for cls, kind in kinds if isinstance(key, cls)), "of an unsupported type")


@dataclass(frozen=True)
class IssuedCertificate:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    """Leaf first, ending with the issuing CA (the offline root is not included)."""

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    @property
    def serial_hex(self) -> str:
        """Lower-case hex, as the API and events show serials (at most 40 chars)."""
        return format(self.leaf.serial_number, "x")

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def leaf_pem(self) -> bytes:
        return certificate_pem(self.leaf)

    @property
    def chain_pem(self) -> bytes:
        return certificate_pem(*self.chain)

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return tuple(c.public_bytes(serialization.Encoding.DER) for c in self.chain)


class CertificateIssuer:
    """Issues short-lived client certificates whose only identity is the SPIFFE URI SAN."""

    def __init__(
        self,
        authority: Issuer,
        trust_domain: str,
        clock: Clock,
        camera_lifetime: timedelta = timedelta(days=30),
        app_lifetime: timedelta = timedelta(days=30),
    ) -> None:
        for name, lifetime in (("camera", camera_lifetime), ("app", app_lifetime)):
            if not timedelta(hours=1) <= lifetime <= timedelta(days=397):
                raise ValueError(f"{name} certificate lifetime must be 1 hour to 397 days")
        self._authority = authority
        self._trust_domain = trust_domain
        self._clock = clock
        self._lifetimes = {PrincipalKind.CAMERA: camera_lifetime, PrincipalKind.APP: app_lifetime}

    def issue_camera(
        self, tenant_id: str, device_id: str, public_key: ec.EllipticCurvePublicKey
    ) -> IssuedCertificate:
        return self.issue(PrincipalKind.CAMERA, tenant_id, device_id, public_key)

    def issue_app(
        self, tenant_id: str, install_id: str, public_key: ec.EllipticCurvePublicKey
    ) -> IssuedCertificate:
        return self.issue(PrincipalKind.APP, tenant_id, install_id, public_key)

    def issue(
        self,
        kind: PrincipalKind,
        tenant_id: str,
        name: str,
        public_key: ec.EllipticCurvePublicKey,
    ) -> IssuedCertificate:
        lifetime = self._lifetimes.get(kind)
        if lifetime is None:
            raise ValueError(f"device_auth issues only camera and app certificates, not {kind}")
        uri = spiffe_uri(self._trust_domain, kind, name, tenant_id)
        leaf = self._authority.issue(public_key, uri, self._clock.now(), lifetime)
        return IssuedCertificate(leaf, (leaf, self._authority.certificate))
