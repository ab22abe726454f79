"""Signed records on the compacted topics: each carries its writer's signature.

The compacted topics hold rights (grants, keys, revocations, operator approvals, shred
records), and Kafka's ACLs let only one service write each (services.common.topic_grants).
Whoever holds a broker or Kafka's super user gets past ACLs, so each record also carries,
in Kafka record headers, an ECDSA signature by its writer's own service TLS key and that
key's certificate chain; readers (services.common.kafka.TopicReplica) apply a record only
if the chain leads to the trust bundle through a CA that issues services, the certificate
names the topic's one writer, and the signature covers this topic, this key and this value
(or an explicit tombstone marker). A record or tombstone that fails is skipped, logged by
topic and reason and counted in privacam_state_records_rejected_total; it never applies.

No new secret: the key is the one the service already proves itself with over mTLS, and a
reader needs only the CA bundle it already trusts. Certificates are checked at the time
they were valid, not now, because records outlive certificate rotation; verified chains are
cached by fingerprint, so a replay pays one ECDSA verification per record.

What signatures cannot stop: a broker can still delete or withhold records, or append an
older record its writer really signed for the same key again. Rejections are counted so
a forged record is seen; compaction may later drop the genuine value it shadows.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from privacam_core.identity import IdentityRejected, PrincipalKind, ca_kinds, parse_spiffe_uri
from services.common import metrics
from services.common.certificates import TlsMaterial
from services.common.settings import TlsSettings
from services.common.tls import service_certificates

log = logging.getLogger("privacam.signed_state")

SIGNATURE_HEADER = "privacam-state-signature"
"""DER ECDSA-with-SHA256 signature of signed_payload(...)."""
SIGNER_HEADER = "privacam-state-signer"
"""One header per DER certificate of the signer's chain, its own first."""

_DOMAIN = b"privacam-state-record-v1"
_TOMBSTONE, _VALUE = b"\x00", b"\x01"
_CACHE_LIMIT = 1024
"""Chains remembered: a handful of writers and their rotations; a flood of forged chains
only empties the cache, never grows memory."""


class RecordRejected(Exception):
    """A record not signed by its topic's writer; `reason` is a short metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def signed_payload(topic: str, key: bytes, value: bytes | None) -> bytes:
    """What is signed: the logical topic name (without the environment's namespace, so a
    restore into another namespace still verifies), the record key and the value, each
    length-prefixed, and an explicit marker telling a tombstone from an empty value."""
    name = topic.encode()
    parts = [_DOMAIN, struct.pack(">I", len(name)), name, struct.pack(">I", len(key)), key]
    if value is None:
        parts.append(_TOMBSTONE)
    else:
        parts += [_VALUE, struct.pack(">I", len(value)), value]
    return b"".join(parts)


class StateSigner:
    """Signs records with this service's TLS key (its mTLS identity)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]) -> None:
        if not chain or chain[0].public_key() != key.public_key():
            raise ValueError("the signing key does not belong to the chain's first certificate")
        self._key = key
        self._chain = [
            (SIGNER_HEADER, certificate.public_bytes(serialization.Encoding.DER))
            for certificate in chain
        ]

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path) -> StateSigner:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an EC private key")
        return cls(key, x509.load_pem_x509_certificates(cert_file.read_bytes()))

    def headers(self, topic: str, key: bytes, value: bytes | None) -> list[tuple[str, bytes]]:
        signature = self._key.sign(signed_payload(topic, key, value), ec.ECDSA(hashes.SHA256()))
        return [(SIGNATURE_HEADER, signature), *self._chain]


@dataclass(frozen=True)
class _Writer:
    """A verified chain: the service it names and its public key."""

    service: str
    public_key: ec.EllipticCurvePublicKey


class StateVerifier:
    """Accepts a record only if its topic's one writer signed it (see the module doc)."""

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        trust_domain: str,
        writers: Mapping[str, str],
    ) -> None:
        """`writers`: logical topic name -> the SPIFFE service name that alone writes it."""
        self._trust_domain = trust_domain
        self._writers = dict(writers)
        self.trust(roots)

    def trust(self, roots: Sequence[x509.Certificate]) -> None:
        """Check chains against these roots from now on (a rotated CA bundle)."""
        self._store = Store(list(roots))
        self._chains: dict[bytes, _Writer | RecordRejected] = {}

    @classmethod
    def from_files(
        cls, ca_file: Path, trust_domain: str, writers: Mapping[str, str]
    ) -> StateVerifier:
        return cls(x509.load_pem_x509_certificates(ca_file.read_bytes()), trust_domain, writers)

    def verify(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Raise RecordRejected unless the topic's writer signed this (key, value)."""
        writer = self._writers.get(topic)
        if writer is None:
            raise RecordRejected("no_writer")  # a topic nobody may sign for
        signatures = [v for name, v in headers if name == SIGNATURE_HEADER]
        chain = [v for name, v in headers if name == SIGNER_HEADER]
        if not signatures and not chain:
            raise RecordRejected("unsigned")
        if len(signatures) != 1 or not chain:
            raise RecordRejected("malformed")
        signer = self._signer(chain)
        if signer.service != writer:
            raise RecordRejected("wrong_writer")
        try:
            signer.public_key.verify(
                signatures[0], signed_payload(topic, key, value), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise RecordRejected("bad_signature") from None

    def accepts(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> bool:
        """verify(), with a refusal logged (topic and reason only: keys name people) and
        counted."""
        try:
            self.verify(topic, key, value, headers)
        except RecordRejected as rejected:
            metrics.STATE_RECORDS_REJECTED.labels(topic, rejected.reason).inc()
            log.warning(
                "state record not signed by its writer; skipped",
                extra={"topic": topic, "reason": rejected.reason},
            )
            return False
        return True

    def _signer(self, chain: list[bytes]) -> _Writer:
        fingerprint = hashlib.sha256(
            b"".join(struct.pack(">I", len(c)) + c for c in chain)
        ).digest()
        known = self._chains.get(fingerprint)
        if known is None:
            try:
                known = self._verify_chain(chain)
            except RecordRejected as rejected:
                known = rejected
            if len(self._chains) >= _CACHE_LIMIT:
                self._chains.clear()
            self._chains[fingerprint] = known
        if isinstance(known, RecordRejected):
            raise RecordRejected(known.reason)
        return known

    def _verify_chain(self, chain: list[bytes]) -> _Writer:
        try:
            leaf, *intermediates = (x509.load_der_x509_certificate(c) for c in chain)
        except ValueError:
            raise RecordRejected("malformed") from None
        # Checked as of when the chain was valid, not now: a record signed before its
        # writer's certificate was rotated must still replay. The latest start of validity
        # lies within every certificate of an honest chain.
        moment = max(c.not_valid_before_utc for c in (leaf, *intermediates))
        verifier = PolicyBuilder().store(self._store).time(moment).build_client_verifier()
        try:
            verified = verifier.verify(leaf, intermediates)
        except (VerificationError, ValueError):
            raise RecordRejected("untrusted_certificate") from None
        # The CA that actually signed the leaf must issue services: device_auth's issuing
        # CA (cameras and apps) cannot make a certificate that signs for a service.
        if len(verified.chain) < 2 or PrincipalKind.SERVICE.value not in ca_kinds(
            verified.chain[1].subject
        ):
            raise RecordRejected("not_a_service_ca")
        uris = [
            name.value
            for name in verified.subjects or []
            if isinstance(name, x509.UniformResourceIdentifier)
            and name.value.startswith("spiffe://")
        ]
        if len(uris) != 1:
            raise RecordRejected("wrong_writer")
        try:
            kind, name, _ = parse_spiffe_uri(uris[0], self._trust_domain)
        except IdentityRejected:
            raise RecordRejected("wrong_writer") from None
        public_key = leaf.public_key()
        if kind is not PrincipalKind.SERVICE or not isinstance(
            public_key, ec.EllipticCurvePublicKey
        ):
            raise RecordRejected("wrong_writer")
        return _Writer(name, public_key)


class StateSigning:
    """A service's signer and verifier of state records, both from its TLS settings: when
    its certificate files are rotated, records are signed with the new key and chains are
    checked against the new CA bundle (services.common.certificates)."""

    def __init__(self, signer: StateSigner, verifier: StateVerifier) -> None:
        self.signer = signer
        self.verifier = verifier

    @classmethod
    def from_tls(cls, tls: TlsSettings, writers: Mapping[str, str]) -> StateSigning:
        watched = service_certificates(tls)

        def signer(material: TlsMaterial) -> StateSigner:
            key = material.key
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{tls.key_file} is not an EC private key")
            return StateSigner(key, material.chain)

        current = watched.current
        signing = cls(signer(current), StateVerifier(current.roots, tls.trust_domain, writers))

        def follow(material: TlsMaterial) -> None:
            # The verifier changes in place: replicas hold it from their start.
            signing.signer = signer(material)
            signing.verifier.trust(material.roots)

        watched.on_change(follow)
        return signing
