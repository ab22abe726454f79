"""Live view without splicing: each side signs its DTLS fingerprint, the other checks it.

The broker relays SDP between camera and app, so it could swap an `a=fingerprint` line
for its own and sit in the middle of DTLS-SRTP. It cannot forge these signatures: each
side signs its fingerprint with its certificate key (ECDSA P-256, SHA-256, DER) over

    context 0x00 session_id 0x00 algorithm 0x00 fingerprint

(UTF-8), where the context is ``b"privacam-dtls-fingerprint-v1"`` for the camera and
``b"privacam-viewer-dtls-fingerprint-v1"`` for the app, so a signature from one session
or one side is useless in another. A side accepts the other only when the chain it sent
verifies up to the CA it pins, the leaf's URI SAN names the principal expected (the
camera it asked to watch; for the camera, the viewer the access log's record names, see
privacam_sdk.camera), the signature verifies with the leaf's key, and the fingerprint
signed is the one in the SDP it received.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from privacam.relay.v1 import relay_broker_service_pb2 as pb


class Signer(enum.Enum):
    """Who signs a fingerprint; the value is the signature's context."""

    CAMERA = b"privacam-dtls-fingerprint-v1"
    APP = b"privacam-viewer-dtls-fingerprint-v1"


_FINGERPRINT_LINE = re.compile(r"^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


class FingerprintRejected(Exception):
    """The other side's DTLS fingerprint could not be proven: refuse the session."""


def signed_payload(
    session_id: str, algorithm: str, fingerprint: str, signer: Signer = Signer.CAMERA
) -> bytes:
    """The exact bytes a side signs (see the module docstring)."""
    return b"\x00".join(
        (signer.value, session_id.encode(), algorithm.encode(), fingerprint.encode())
    )


def sdp_fingerprints(sdp: str) -> set[tuple[str, str]]:
    """Every (algorithm, FINGERPRINT) pair of an SDP, algorithms lower-case, hex upper-case."""
    return {(m.group(1).lower(), m.group(2).upper()) for m in _FINGERPRINT_LINE.finditer(sdp)}


def sign_dtls_fingerprint(
    key: ec.EllipticCurvePrivateKey,
    chain_der: list[bytes],
    session_id: str,
    algorithm: str,
    fingerprint: str,
    signer: Signer = Signer.CAMERA,
) -> pb.SignedDtlsFingerprint:
    """What a camera sends after its SDP answer, and an app after its offer."""
    fingerprint = fingerprint.upper()
    signature = key.sign(
        signed_payload(session_id, algorithm, fingerprint, signer), ec.ECDSA(hashes.SHA256())
    )
    return pb.SignedDtlsFingerprint(
        algorithm=algorithm,
        fingerprint=fingerprint,
        signature=signature,
        certificate_chain=chain_der,
    )


def verify_camera_fingerprint(
    signed: pb.SignedDtlsFingerprint,
    *,
    session_id: str,
    device_id: str,
    answer_sdp: str,
    trusted_ca_pem: bytes,
    trust_domain: str,
    now: datetime,
    pinned_key_sha256: bytes,
) -> None:
    """The app's check: raise FingerprintRejected unless the answer's fingerprint is the
    camera's own: a camera certificate of this trust domain naming ``device_id``, whose
    key is the one the camera paired with (``Camera.key_sha256`` from device_auth; empty
    only for a camera paired before keys were pinned)."""

    def names_camera(uri: str) -> bool:
        return uri.startswith(f"spiffe://{trust_domain}/tenant/") and uri.endswith(
            f"/camera/{device_id}"
        )

    leaf = verify_dtls_fingerprint(
        signed,
        signer=Signer.CAMERA,
        session_id=session_id,
        names_expected=names_camera,
        sdp=answer_sdp,
        trusted_ca_pem=trusted_ca_pem,
        now=now,
    )
    if pinned_key_sha256:
        spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if not hmac.compare_digest(hashlib.sha256(spki).digest(), pinned_key_sha256):
            raise FingerprintRejected("the camera's key is not the one it paired with")


CA_KINDS_PREFIX = "privacam-principals:"
"""An issuing CA names in its subject (an OU) the kinds of principal it issues; a camera or
app certificate counts only from a CA for its kind (the services check the same)."""


def issued_kinds(issuer: x509.Name) -> set[str]:
    kinds: set[str] = set()
    for attribute in issuer.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        if isinstance(attribute.value, str) and attribute.value.startswith(CA_KINDS_PREFIX):
            kinds.update(attribute.value.removeprefix(CA_KINDS_PREFIX).split(","))
    return kinds


def verify_dtls_fingerprint(
    signed: pb.SignedDtlsFingerprint,
    *,
    signer: Signer,
    session_id: str,
    names_expected: Callable[[str], bool],
    sdp: str,
    trusted_ca_pem: bytes,
    now: datetime,
) -> x509.Certificate:
    """Raise FingerprintRejected unless ``sdp``'s only fingerprint is signed by a
    certificate that chains to ``trusted_ca_pem`` and has a URI SAN ``names_expected``
    accepts; the signer's certificate, verified."""
    whom = "camera" if signer is Signer.CAMERA else "app"
    if not signed.certificate_chain:
        raise FingerprintRejected(f"the {whom} sent no certificate")
    try:
        leaf = x509.load_der_x509_certificate(signed.certificate_chain[0])
        intermediates = [x509.load_der_x509_certificate(c) for c in signed.certificate_chain[1:]]
        roots = x509.load_pem_x509_certificates(trusted_ca_pem)
    except ValueError:
        raise FingerprintRejected(f"the {whom}'s certificate chain does not parse") from None
    # Client-certificate policy: camera and app leaves carry a URI SAN, not a DNS name.
    verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
    try:
        verified = verifier.verify(leaf, intermediates)
    except VerificationError:
        raise FingerprintRejected(
            f"the {whom}'s certificate does not chain to the pinned CA"
        ) from None
    uris = {
        str(getattr(name, "value", ""))
        for name in (verified.subjects or [])
        if isinstance(name, x509.UniformResourceIdentifier)
    }
    if not any(names_expected(uri) for uri in uris):
        raise FingerprintRejected(f"the certificate is not the {whom} that was expected")
    if whom not in issued_kinds(leaf.issuer):
        raise FingerprintRejected(f"the {whom}'s certificate is not from the CA for {whom}s")
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise FingerprintRejected(f"the {whom}'s key is not an EC key")
    try:
        public_key.verify(
            signed.signature,
            signed_payload(session_id, signed.algorithm, signed.fingerprint, signer),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        raise FingerprintRejected("the fingerprint signature does not verify") from None
    offered = sdp_fingerprints(sdp)
    if not offered or offered != {(signed.algorithm.lower(), signed.fingerprint.upper())}:
        raise FingerprintRejected(f"the SDP carries a fingerprint the {whom} did not sign")
    return leaf
