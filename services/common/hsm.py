"""Keys that never leave a PKCS#11 token (an HSM; SoftHSM2 in development and tests).

Two production keys live here as non-extractable token objects:

- device_auth's issuing CA key, a P-256 key: :class:`Pkcs11EcSigner` signs with it and
  :func:`issue_leaf_with_signer` makes the same certificates as ``pki.issue_leaf``;
- key_manager's root key, an AES-256 key: :class:`Pkcs11RootKey` seals and unseals KEKs in
  the same format as ``keyring.RootKey`` (nonce || ciphertext || tag).

:func:`create_ec_key` and :func:`create_aes_key` make those keys once, at setup
(``stack/softhsm.sh`` makes a development token to hold them).

Sessions: PKCS#11 login state belongs to the process, not to a session. Once one session
is logged in, every session the process has on that token is; ``C_Logout`` on any of them
(which python-pkcs11 issues when it closes a session it logged in) logs them all out, and a
second ``C_Login`` fails with "already logged in". So this module keeps one logged-in
"anchor" session per token, shared by everything in the process and counted by its users,
and does the actual work in sessions opened without a PIN (:class:`Pkcs11Session`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import SignatureAlgorithmOID
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from services.common.pki import leaf_builder

SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
"""Debian's softhsm2 package installs its PKCS#11 module here."""

_TAG_BYTES = 16
_P256_SIGNATURE_BYTES = 64  # CKM_ECDSA returns r || s, 32 bytes each
_KEY_ID_BYTES = 16  # random CKA_ID given to each key made by this module


class HsmError(Exception):
    """The token, or a key in it, is missing or not what this module needs."""


# --------------------------------------------------------------------- sessions ----


@dataclass(frozen=True)
class Pkcs11Token:
    """Where a token is and how to log in to it."""

    module: str
    """Path of the PKCS#11 module (shared library), e.g. :data:`SOFTHSM2_MODULE`."""
    token_label: str
    user_pin: str = field(repr=False)

    @classmethod
    def from_pin_file(cls, module: str, token_label: str, pin_file: Path) -> Pkcs11Token:
        """The user PIN read from a file (``stack/softhsm.sh`` writes ``softhsm-user.pin``)."""
        return cls(module, token_label, pin_file.read_text().strip())

    def session(self, *, rw: bool = False) -> Pkcs11Session:
        """A session logged in as the token's user; close it (or use it in ``with``)."""
        return Pkcs11Session(self, rw=rw)


class _Login:
    """The process's logged-in anchor session on one token, and how many use it."""

    def __init__(self, anchor: pkcs11.Session, user_pin: str) -> None:
        self.anchor = anchor
        self.user_pin = user_pin
        self.users = 0


_logins: dict[tuple[str, str], _Login] = {}
_logins_lock = threading.Lock()


def _log_in(token: Pkcs11Token) -> pkcs11.Token:
    with _logins_lock:
        login = _logins.get((token.module, token.token_label))
        if login is None:
            try:
                found = pkcs11.lib(token.module).get_token(token_label=token.token_label)
            except pkcs11.NoSuchToken:
                raise HsmError(
                    f"no PKCS#11 token labelled {token.token_label!r} in {token.module}"
                    " (for SoftHSM2: is SOFTHSM2_CONF set to the config that holds it?)"
                ) from None
            login = _Login(found.open(user_pin=token.user_pin), token.user_pin)
            _logins[(token.module, token.token_label)] = login
        elif login.user_pin != token.user_pin:
            raise HsmError(f"token {token.token_label!r} is already open here with another PIN")
        login.users += 1
        return login.anchor.token


def _log_out(token: Pkcs11Token) -> None:
    with _logins_lock:
        login = _logins[(token.module, token.token_label)]
        login.users -= 1
        if login.users == 0:
            del _logins[(token.module, token.token_label)]
            login.anchor.close()  # C_Logout, then C_CloseSession


class Pkcs11Session:
    """One PKCS#11 session on a token, logged in (through the shared anchor) while open.

    python-pkcs11 serializes the operations of one session with a lock, so an object may
    share one session between threads; operations on one session do not run in parallel.
    """

    def __init__(self, token: Pkcs11Token, *, rw: bool = False) -> None:
        self._token = token
        found = _log_in(token)
        try:
            self.session: pkcs11.Session = found.open(rw=rw)  # no PIN: see the module doc
        except BaseException:
            _log_out(token)
            raise
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.session.close()
            finally:
                _log_out(self._token)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def find(self, object_class: ObjectClass, label: str) -> pkcs11.Key:
        """The one key of this class and label; HsmError if there is none or several."""
        try:
            return self.session.get_key(object_class=object_class, label=label)
        except pkcs11.NoSuchKey:
            raise HsmError(
                f"token {self._token.token_label!r} has no {object_class.name} labelled {label!r}"
            ) from None
        except pkcs11.MultipleObjectsReturned:
            raise HsmError(
                f"token {self._token.token_label!r} has several {object_class.name} objects"
                f" labelled {label!r}"
            ) from None


def _require_unextractable(key: pkcs11.Key, what: str) -> None:
    """Refuse a key that the token would let out: the product requires that it never leaves."""
    if not key[Attribute.SENSITIVE] or key[Attribute.EXTRACTABLE]:
        raise HsmError(
            f"{what} {key.label!r} can leave the token (CKA_SENSITIVE false or "
            "CKA_EXTRACTABLE true); make it again with create_ec_key/create_aes_key"
        )


def _refuse_duplicate(session: Pkcs11Session, label: str) -> None:
    """Keys are found by label, so a label names one key (one key pair) only."""
    if list(session.session.get_objects({Attribute.LABEL: label})):  # list: ends the search
        raise HsmError(f"the token already has objects labelled {label!r}")


# ---------------------------------------------------------------- key creation ----


def create_ec_key(token: Pkcs11Token, label: str) -> ec.EllipticCurvePublicKey:
    """Generate a P-256 key pair in the token; the private key is sensitive, non-extractable
    and can only sign. Both halves get the label and one random CKA_ID."""
    with token.session(rw=True) as session:
        _refuse_duplicate(session, label)
        params = session.session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        public, _ = params.generate_keypair(
            id=os.urandom(_KEY_ID_BYTES),
            label=label,
            store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.DERIVE: False,
            },
        )
        return _ec_public_key(public)


def aes_key_id(cka_id: bytes) -> str:
    """A root key's key_id in the token: the key's value cannot be read (a file root key uses
    SHA-256 of the value), so it is SHA-256 of its random CKA_ID, domain-separated, with
    the same 16 hex digits. Unique per key made by :func:`create_aes_key`; says nothing
    about the key's value."""
    return hashlib.sha256(b"privacam-pkcs11-root-key-id-v1\x00" + cka_id).hexdigest()[:16]


def create_aes_key(token: Pkcs11Token, label: str) -> str:
    """Generate an AES-256 key in the token (sensitive, non-extractable, encrypt/decrypt
    only) with a random CKA_ID; returns its key_id (see :func:`aes_key_id`)."""
    with token.session(rw=True) as session:
        _refuse_duplicate(session, label)
        key_id = os.urandom(_KEY_ID_BYTES)
        session.session.generate_key(
            KeyType.AES,
            32 * 8,  # AES-256
            id=key_id,
            label=label,
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
        return aes_key_id(key_id)


# ------------------------------------------------------------------- signing ----


class EcSigner(Protocol):
    """A P-256 key that signs SHA-256 digests of what it is given."""

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign_sha256(self, data: bytes) -> bytes:
        """DER ECDSA-Sig-Value over SHA-256(data)."""
        ...


def _ec_public_key(key: pkcs11.Key) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, pkcs11.PublicKey):
        raise HsmError(f"key {key.label!r} is not a public key")
    loaded = serialization.load_der_public_key(encode_ec_public_key(key))
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(
        loaded.curve, ec.SECP256R1
    ):
        raise HsmError(f"key {key.label!r} is not a P-256 key")
    return loaded


class Pkcs11EcSigner:
    """Signs with a non-extractable P-256 private key in the token, found by label (its
    public key is the PUBLIC_KEY object with the same label)."""

    def __init__(self, token: Pkcs11Token, label: str) -> None:
        self._session = token.session()
        try:
            private = self._session.find(ObjectClass.PRIVATE_KEY, label)
            _require_unextractable(private, "private key")
            if not isinstance(private, pkcs11.SignMixin):
                raise HsmError(f"private key {label!r} cannot sign")
            self._key = private
            self._public = _ec_public_key(self._session.find(ObjectClass.PUBLIC_KEY, label))
            # The two objects are paired by label only: make sure they are one key pair.
            probe = b"privacam hsm signer self-test"
            self._public.verify(self.sign_sha256(probe), probe, ec.ECDSA(hashes.SHA256()))
        except BaseException:
            self._session.close()
            raise

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign_sha256(self, data: bytes) -> bytes:
        # CKM_ECDSA signs a digest given to it (CKM_ECDSA_SHA256 hashing in the token is not
        # in every HSM) and returns r || s as two 32-byte big-endian integers.
        raw = self._key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
        if len(raw) != _P256_SIGNATURE_BYTES:
            raise HsmError(f"the token returned a {len(raw)}-byte P-256 signature")
        half = _P256_SIGNATURE_BYTES // 2
        r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        return encode_dss_signature(r, s)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------- certificates, DER ----
#
# Why this is sound. A certificate is SEQUENCE { tbsCertificate, signatureAlgorithm,
# signatureValue }, and the signature is over the DER bytes of tbsCertificate only.
# cryptography's builder can only sign with a key it holds, so it signs with a throwaway
# P-256 key; nothing in the TBS depends on which key that is:
#   - the issuer name and the AuthorityKeyIdentifier are set from the issuer certificate
#     and the HSM's PUBLIC key, not from the signing key;
#   - the TBS's own `signature` field is the algorithm, ecdsa-with-SHA256 with absent
#     parameters (RFC 5758 3.2), the same for every P-256 key signing with SHA-256.
# So we keep the TBS bytes exactly as the builder encoded them, have the HSM sign them,
# and wrap them with that same algorithm identifier and the HSM's signature. The throwaway
# signature is discarded and its key dropped. The result is parsed back and its signature
# checked against the issuer certificate before it is returned, so a mistake here (or a
# signer that is not the issuer's key) raises instead of handing out a bad certificate.

# AlgorithmIdentifier { ecdsa-with-SHA256 (1.2.840.10045.4.3.2) }, parameters absent.
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_SEQUENCE = 0x30
_BIT_STRING = 0x03


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV: short-form length below 128, else 0x80|n then n big-endian bytes."""
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        digits = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(digits)]) + digits
    return bytes([tag]) + length + content


def _assemble_certificate(tbs: bytes, signature: bytes) -> bytes:
    # BIT STRING content: the count of unused bits in the last byte (0), then the bytes.
    return _der(_SEQUENCE, tbs + _ECDSA_WITH_SHA256 + _der(_BIT_STRING, b"\x00" + signature))


def issue_leaf_with_signer(
    issuer_certificate: x509.Certificate,
    signer: EcSigner,
    public_key: ec.EllipticCurvePublicKey,
    spiffe_id: str,
    now: datetime,
    lifetime: timedelta,
    *,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    """``pki.issue_leaf`` with the issuer's key in ``signer`` (an HSM) instead of in memory.

    The certificate has the same fields and extensions as ``pki.issue_leaf`` makes (the
    tests compare them); ValueError if ``signer`` does not hold ``issuer_certificate``'s key.
    """
    issuer_public = signer.public_key()
    if issuer_certificate.public_key() != issuer_public:
        raise ValueError("the signer's key is not the issuer certificate's key")
    builder = leaf_builder(
        issuer_certificate,
        issuer_public,
        public_key,
        spiffe_id,
        now,
        lifetime,
        server=server,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )
    throwaway = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    if throwaway.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise AssertionError("the builder did not use ecdsa-with-SHA256")  # pragma: no cover
    tbs = throwaway.tbs_certificate_bytes
    certificate = x509.load_der_x509_certificate(
        _assemble_certificate(tbs, signer.sign_sha256(tbs))
    )
    certificate.verify_directly_issued_by(issuer_certificate)
    return certificate


# ------------------------------------------------------------------ root key ----


@dataclass(frozen=True)
class HsmAuthority:
    """An issuing CA whose private key never leaves the HSM (pki.Issuer)."""

    certificate: x509.Certificate
    signer: EcSigner

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        spiffe_id: str,
        now: datetime,
        lifetime: timedelta,
    ) -> x509.Certificate:
        return issue_leaf_with_signer(
            self.certificate, self.signer, public_key, spiffe_id, now, lifetime
        )
