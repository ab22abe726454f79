"""CSRs prove key possession only; identity in the issued certificate comes from the server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privacam_core.identity import PrincipalKind
from services.common.clock import FakeClock
from services.common.pki import Authority, create_intermediate, create_root, new_private_key
from services.device_auth.domain.certificates import (
    CSR_MAX_BYTES,
    CertificateIssuer,
    IssuedCertificate,
    validate_csr,
)
from services.device_auth.domain.errors import InvalidInput
from tests.unit.device_auth.conftest import START, TRUST_DOMAIN, make_csr

TENANT = "0b7e4a52-1c7d-4d8e-9a57-1f5d3b2c9e01"
DEVICE = "5c1a9e7f-2b3d-4e6f-8a9b-0c1d2e3f4a5b"


AnyKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _csr_with(key: AnyKey) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "camera")])
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def test_a_p256_csr_yields_its_public_key() -> None:
    key = new_private_key()
    public = validate_csr(make_csr(key))
    assert public.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
    ids=["rsa-2048", "p-384", "ed25519"],
)
def test_other_key_types_are_refused_naming_what_was_sent(key: AnyKey, named: str) -> None:
    with pytest.raises(InvalidInput, match=f"{named}.*P-256"):
        validate_csr(_csr_with(key))


def test_a_csr_whose_signature_does_not_verify_is_refused() -> None:
    der = bytearray(make_csr())
    der[-1] ^= 0x01  # the signature is the last field
    with pytest.raises(InvalidInput, match="signature does not verify"):
        validate_csr(bytes(der))


def test_a_csr_signed_by_another_key_is_refused() -> None:
    key, other = new_private_key(), new_private_key()
    csr = make_csr(key)
    original = x509.load_der_x509_csr(csr)
    # Put another public key in the request, keeping the signature made by `key`.
    tampered = csr.replace(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        other.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    assert original.is_signature_valid
    with pytest.raises(InvalidInput, match="signature does not verify"):
        validate_csr(tampered)


@pytest.mark.parametrize("garbage", [b"not a csr", b"\x30\x03\x02\x01\x00", b"-----BEGIN"])
def test_garbage_is_refused_as_not_a_der_csr(garbage: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a PKCS#10 certificate request in DER"):
        validate_csr(garbage)


def test_a_pem_csr_is_refused_because_der_is_required() -> None:
    der = make_csr()
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidInput, match="DER"):
        validate_csr(pem)


def test_an_empty_csr_is_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        validate_csr(b"")


def test_a_csr_over_4_kib_is_refused_before_parsing() -> None:
    oversized = make_csr(
        common_name="x" * 64, uris=tuple(f"spiffe://x/{i:04}" * 8 for i in range(40))
    )
    assert len(oversized) > CSR_MAX_BYTES
    with pytest.raises(InvalidInput, match=f"at most {CSR_MAX_BYTES}"):
        validate_csr(oversized)


def _uri(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _issuer(authority: Authority, clock: FakeClock) -> CertificateIssuer:
    return CertificateIssuer(
        authority,
        TRUST_DOMAIN,
        clock,
        camera_lifetime=timedelta(days=30),
        app_lifetime=timedelta(days=20),
    )


def test_a_camera_certificate_names_the_server_chosen_identity_not_the_csrs(
    authority: Authority, clock: FakeClock
) -> None:
    csr = make_csr(common_name="admin", uris=("spiffe://privacam.test/service/key_manager",))
    issued = _issuer(authority, clock).issue_camera(TENANT, DEVICE, validate_csr(csr))
    leaf = issued.leaf
    assert _uri(leaf) == [f"spiffe://{TRUST_DOMAIN}/tenant/{TENANT}/camera/{DEVICE}"]
    assert leaf.subject == x509.Name([])
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_an_app_certificate_names_the_install(authority: Authority, clock: FakeClock) -> None:
    issued = _issuer(authority, clock).issue_app(TENANT, DEVICE, new_private_key().public_key())
    assert _uri(issued.leaf) == [f"spiffe://{TRUST_DOMAIN}/tenant/{TENANT}/app/{DEVICE}"]


def test_lifetimes_are_the_configured_days_from_the_clock(
    authority: Authority, clock: FakeClock
) -> None:
    issuer = _issuer(authority, clock)
    key = new_private_key().public_key()
    assert issuer.issue_camera(TENANT, DEVICE, key).not_after == START + timedelta(days=30)
    assert issuer.issue_app(TENANT, DEVICE, key).not_after == START + timedelta(days=20)
    assert issuer.issue_app(TENANT, DEVICE, key).not_before <= START


def test_the_certificate_chains_to_the_issuing_ca(authority: Authority, clock: FakeClock) -> None:
    issued = _issuer(authority, clock).issue_camera(TENANT, DEVICE, new_private_key().public_key())
    assert issued.chain == (issued.leaf, authority.certificate)
    issued.leaf.verify_directly_issued_by(authority.certificate)
    # A CA with the same name but another key did not sign it.
    impostor = create_intermediate(
        create_root("Test Root", START, timedelta(days=30)),
        "Test Issuing",
        START,
        timedelta(days=30),
        (PrincipalKind.CAMERA, PrincipalKind.APP),
    )
    with pytest.raises(InvalidSignature):
        issued.leaf.verify_directly_issued_by(impostor.certificate)


def test_issued_material_comes_as_pem_der_and_lower_case_hex_serial(
    authority: Authority, clock: FakeClock
) -> None:
    issued: IssuedCertificate = _issuer(authority, clock).issue_camera(
        TENANT, DEVICE, new_private_key().public_key()
    )
    assert issued.leaf_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert issued.chain_pem.count(b"BEGIN CERTIFICATE") == 2
    assert [x509.load_der_x509_certificate(d) for d in issued.chain_der] == list(issued.chain)
    assert issued.serial_hex == format(issued.serial, "x")
    assert issued.serial_hex == issued.serial_hex.lower()
    assert len(issued.serial_hex) <= 40


def test_only_camera_and_app_identities_are_issued(authority: Authority, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="only camera and app"):
        _issuer(authority, clock).issue(
            PrincipalKind.SERVICE, TENANT, "clip_ingest", new_private_key().public_key()
        )


def test_lifetimes_must_be_hours_to_days_not_years(authority: Authority, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="1 hour to 397 days"):
        CertificateIssuer(authority, TRUST_DOMAIN, clock, camera_lifetime=timedelta(days=3650))
