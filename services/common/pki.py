"""X.509 building blocks: P-256 keys, a root and an issuing CA, leaf certificates.

device_auth issues camera and app certificates with these; the development
stack uses them to make its CA and service certificates on first start.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privacam_core.identity import CA_KINDS_PREFIX, PrincipalKind


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class Issuer(Protocol):
    """A CA that issues leaf certificates: its key in memory (Authority) or in an HSM
    (services.common.hsm.HsmAuthority)."""

    @property
    def certificate(self) -> x509.Certificate: ...

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        spiffe_id: str,
        now: datetime,
        lifetime: timedelta,
    ) -> x509.Certificate: ...


@dataclass(frozen=True)
class Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        spiffe_id: str,
        now: datetime,
        lifetime: timedelta,
    ) -> x509.Certificate:
        return issue_leaf(self, public_key, spiffe_id, now, lifetime)


def _name(common_name: str, kinds: Iterable[PrincipalKind] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Privacam")]
    if kinds:
        issued = ",".join(sorted(kind.value for kind in kinds))
        attributes.append(
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_KINDS_PREFIX + issued)
        )
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    lifetime: timedelta,
    path_length: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def create_root(common_name: str, now: datetime, lifetime: timedelta) -> Authority:
    key = new_private_key()
    builder = _ca_builder(_name(common_name), key.public_key(), now, lifetime, path_length=1)
    builder = builder.issuer_name(_name(common_name))
    return Authority(builder.sign(key, hashes.SHA256()), key)


CLIENT_ONLY_NAMES = x509.NameConstraints(
    permitted_subtrees=[x509.DNSName("invalid")],
    excluded_subtrees=[
        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.ip_network("::/0")),
    ],
)
"""For a CA of client principals (cameras, apps, operators): no certificate it signs may
name a host (DNS only under `.invalid`, RFC 6761; no IP address), so its key cannot make a
server certificate for a service's address. URI constraints would bind the trust domain
too, but Python's `cryptography` verifier (the SDK's) refuses them as unsupported; the
kind of principal is bound by the CA's subject instead (identity.CA_KINDS_PREFIX)."""


def create_intermediate(
    root: Authority,
    common_name: str,
    now: datetime,
    lifetime: timedelta,
    kinds: Iterable[PrincipalKind],
) -> Authority:
    """An issuing CA for these kinds of principal only (its subject names them, see
    identity.CA_KINDS_PREFIX). It cannot make another CA (path length 0), and one for
    clients only is name-constrained to certificates that name no host."""
    kinds = tuple(kinds)
    key = new_private_key()
    subject = _name(common_name, kinds)
    builder = _ca_builder(subject, key.public_key(), now, lifetime, path_length=0)
    builder = builder.issuer_name(root.certificate.subject).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
        critical=False,
    )
    if PrincipalKind.SERVICE not in kinds:
        builder = builder.add_extension(CLIENT_ONLY_NAMES, critical=True)
    return Authority(builder.sign(root.key, hashes.SHA256()), key)


def leaf_builder(
    issuer_certificate: x509.Certificate,
    issuer_public_key: ec.EllipticCurvePublicKey,
    public_key: ec.EllipticCurvePublicKey,
    spiffe_id: str,
    now: datetime,
    lifetime: timedelta,
    *,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> x509.CertificateBuilder:
    """A short-lived leaf certificate, ready to sign, whose only identity is its SPIFFE URI."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
    names += [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + (
        [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    )
    not_after = min(now + lifetime, issuer_certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        # An empty subject makes the SAN the only identity, so it must be critical (RFC 5280).
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    )


def issue_leaf(
    issuer: Authority,
    public_key: ec.EllipticCurvePublicKey,
    spiffe_id: str,
    now: datetime,
    lifetime: timedelta,
    *,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    """A short-lived leaf certificate signed by an issuer whose key is in memory."""
    builder = leaf_builder(
        issuer.certificate,
        issuer.key.public_key(),
        public_key,
        spiffe_id,
        now,
        lifetime,
        server=server,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )
    return builder.sign(issuer.key, hashes.SHA256())


def certificate_pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only, never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_authority(cert_path: Path, key_path: Path) -> Authority:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    return Authority(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
