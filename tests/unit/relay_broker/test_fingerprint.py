"""The app refuses any DTLS fingerprint the camera did not sign for this very session."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam_core.identity import PrincipalKind, spiffe_uri
from privacam_sdk.live_view import (
    FingerprintRejected,
    sign_dtls_fingerprint,
    signed_payload,
    verify_camera_fingerprint,
)
from tests.pki_helpers import Identity, PkiFactory

SESSION = "3f1b2c4d-0000-4000-8000-000000000001"
DEVICE = "cam-1"
FINGERPRINT = ":".join(["7E"] * 32)
ANSWER = f"v=0\r\ns=-\r\na=fingerprint:sha-256 {FINGERPRINT}\r\n"


def _material(identity: Identity) -> tuple[ec.EllipticCurvePrivateKey, list[bytes]]:
    key = load_pem_private_key(identity.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = x509.load_pem_x509_certificates(identity.cert_file.read_bytes())
    return key, [c.public_bytes(Encoding.DER) for c in chain]


def _verify(pki: PkiFactory, signed: pb.SignedDtlsFingerprint, **overrides: str) -> None:
    verify_camera_fingerprint(
        signed,
        session_id=overrides.get("session_id", SESSION),
        device_id=overrides.get("device_id", DEVICE),
        answer_sdp=overrides.get("answer", ANSWER),
        trusted_ca_pem=pki.ca_file.read_bytes(),
        trust_domain=pki.trust_domain,
        now=datetime.now(UTC),
        pinned_key_sha256=bytes.fromhex(overrides.get("pinned", "")),
    )


def test_the_layout_is_the_documented_one() -> None:
    assert signed_payload("s", "sha-256", "AA:BB") == (
        b"privacam-dtls-fingerprint-v1\x00s\x00sha-256\x00AA:BB"
    )


def test_the_cameras_own_signature_is_accepted(pki: PkiFactory) -> None:
    key, chain = _material(pki.camera("tenant-1", DEVICE))
    _verify(pki, sign_dtls_fingerprint(key, chain, SESSION, "sha-256", FINGERPRINT))


def test_a_second_certificate_for_the_camera_is_refused_by_its_pinned_key(
    pki: PkiFactory,
) -> None:
    """Whoever holds device_auth's issuing key can mint another certificate for the camera,
    with a key of their own: it chains and names the camera, but the app compares its key
    with the one the camera paired with (Camera.key_sha256)."""
    key, chain = _material(pki.camera("tenant-1", DEVICE))
    pinned = hashlib.sha256(
        key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()
    _verify(pki, sign_dtls_fingerprint(key, chain, SESSION, "sha-256", FINGERPRINT), pinned=pinned)
    uri = spiffe_uri(pki.trust_domain, PrincipalKind.CAMERA, DEVICE, "tenant-1")
    minted_key, minted_chain = _material(pki.leaf("camera-minted", uri, pki.issuing))
    minted = sign_dtls_fingerprint(minted_key, minted_chain, SESSION, "sha-256", FINGERPRINT)
    _verify(pki, minted)  # without the pin it would pass: what pinning is for
    with pytest.raises(FingerprintRejected, match="not the one it paired with"):
        _verify(pki, minted, pinned=pinned)


def test_splices_and_replays_are_refused(pki: PkiFactory) -> None:
    key, chain = _material(pki.camera("tenant-1", DEVICE))
    signed = sign_dtls_fingerprint(key, chain, SESSION, "sha-256", FINGERPRINT)
    spliced = ANSWER.replace(FINGERPRINT, ":".join(["11"] * 32))
    with pytest.raises(FingerprintRejected, match="did not sign"):
        _verify(pki, signed, answer=spliced)
    with pytest.raises(FingerprintRejected, match="did not sign"):  # an extra fingerprint line
        _verify(pki, signed, answer=spliced + f"a=fingerprint:sha-256 {FINGERPRINT}\r\n")
    with pytest.raises(FingerprintRejected, match="signature does not verify"):
        _verify(pki, signed, session_id="3f1b2c4d-0000-4000-8000-000000000002")
    with pytest.raises(FingerprintRejected, match="not the camera"):
        _verify(pki, signed, device_id="cam-2")
    # The platform re-signing with a key of its own, even under a camera-shaped certificate
    # of another device, or a chain from a CA the app does not pin.
    other_key, _other_chain = _material(pki.camera("tenant-1", "cam-2"))
    resigned = sign_dtls_fingerprint(other_key, chain, SESSION, "sha-256", FINGERPRINT)
    with pytest.raises(FingerprintRejected, match="signature does not verify"):
        _verify(pki, resigned)
    foreign = _material(pki.foreign_operator())
    with pytest.raises(FingerprintRejected, match="pinned CA"):
        _verify(pki, sign_dtls_fingerprint(foreign[0], foreign[1], SESSION, "sha-256", FINGERPRINT))
    # A camera-shaped certificate minted with the service CA's key (cert-manager's): the
    # chain verifies, the name is right, but that CA issues services only.
    uri = spiffe_uri(pki.trust_domain, PrincipalKind.CAMERA, DEVICE, "tenant-1")
    minted = _material(pki.leaf("camera-by-service-ca", uri, pki.service_ca))
    with pytest.raises(FingerprintRejected, match="not from the CA for cameras"):
        _verify(pki, sign_dtls_fingerprint(minted[0], minted[1], SESSION, "sha-256", FINGERPRINT))
    empty = pb.SignedDtlsFingerprint(algorithm="sha-256", fingerprint=FINGERPRINT)
    with pytest.raises(FingerprintRejected, match="no certificate"):
        _verify(pki, empty)
