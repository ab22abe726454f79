"""Live view without splicing: the camera signs its DTLS fingerprint, the app checks it.

The broker relays SDP between camera and app, so it could swap the camera's
`a=fingerprint` for its own and sit in the middle of DTLS-SRTP. It cannot forge
this signature: the camera signs its fingerprint with its device key (ECDSA P-256,
SHA-256, DER) over

    b"privacam-dtls-fingerprint-v1" 0x00 session_id 0x00 algorithm 0x00 fingerprint

(UTF-8), so a signature from one session is useless in another. The app accepts
media only when the chain the camera sent verifies up to the CA the app pins, the
leaf's URI SAN names the very camera it asked to watch, the signature verifies
with the leaf's key, and the fingerprint signed is the one in the SDP answer.
"""

from __future__ import annotations

import re
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from privacam.relay.v1 import relay_broker_service_pb2 as pb

DOMAIN = b"privacam-dtls-fingerprint-v1"
_FINGERPRINT_LINE = re.compile(r"^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


class FingerprintRejected(Exception):
    """The camera's DTLS fingerprint could not be proven: refuse the session."""


def signed_payload(session_id: str, algorithm: str, fingerprint: str) -> bytes:
    """The exact bytes the camera signs (see the module docstring)."""
    return b"\x00".join((DOMAIN, session_id.encode(), algorithm.encode(), fingerprint.encode()))


def sdp_fingerprints(sdp: str) -> set[tuple[str, str]]:
    """Every (algorithm, FINGERPRINT) pair of an SDP, algorithms lower-case, hex upper-case."""
    return {(m.group(1).lower(), m.group(2).upper()) for m in _FINGERPRINT_LINE.finditer(sdp)}


def sign_dtls_fingerprint(
    key: ec.EllipticCurvePrivateKey,
    chain_der: list[bytes],
    session_id: str,
    algorithm: str,
    fingerprint: str,
) -> pb.SignedDtlsFingerprint:
    """What a camera sends after its SDP answer."""
    fingerprint = fingerprint.upper()
    signature = key.sign(
        signed_payload(session_id, algorithm, fingerprint), ec.ECDSA(hashes.SHA256())
    )
    return pb.SignedDtlsFingerprint(
        algorithm=algorithm,
        fingerprint=fingerprint,
        signature=signature,
        certificate_chain=chain_der,
    )


def verify_dtls_fingerprint(
    signed: pb.SignedDtlsFingerprint,
    *,
    session_id: str,
    device_id: str,
    answer_sdp: str,
    trusted_ca_pem: bytes,
    trust_domain: str,
    now: datetime,
) -> None:
    """Raise FingerprintRejected unless the answer's fingerprint is the camera's own."""
    if not signed.certificate_chain:
        raise FingerprintRejected("the camera sent no certificate")
    try:
        leaf = x509.load_der_x509_certificate(signed.certificate_chain[0])
        intermediates = [x509.load_der_x509_certificate(c) for c in signed.certificate_chain[1:]]
        roots = x509.load_pem_x509_certificates(trusted_ca_pem)
    except ValueError:
        raise FingerprintRejected("the camera's certificate chain does not parse") from None
    # Client-certificate policy: camera leaves carry a URI SAN, not a DNS name.
    verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
    try:
        verified = verifier.verify(leaf, intermediates)
    except VerificationError:
        raise FingerprintRejected(
            "the camera's certificate does not chain to the pinned CA"
        ) from None
    uris = {
        str(getattr(name, "value", ""))
        for name in (verified.subjects or [])
        if isinstance(name, x509.UniformResourceIdentifier)
    }
    if not any(
        uri.startswith(f"spiffe://{trust_domain}/tenant/") and uri.endswith(f"/camera/{device_id}")
        for uri in uris
    ):
        raise FingerprintRejected("the certificate is not the camera that was asked for")
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise FingerprintRejected("the camera key is not an EC key")
    try:
        public_key.verify(
            signed.signature,
            signed_payload(session_id, signed.algorithm, signed.fingerprint),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        raise FingerprintRejected("the fingerprint signature does not verify") from None
    offered = sdp_fingerprints(answer_sdp)
    if not offered or offered != {(signed.algorithm.lower(), signed.fingerprint.upper())}:
        raise FingerprintRejected("the SDP answer carries a fingerprint the camera did not sign")
