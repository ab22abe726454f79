"""services.common.hsm against a fresh SoftHSM2 token made for this module.

The certificate assembly is also checked with an in-memory signer, so that part runs
without SoftHSM2; everything else skips when SoftHSM2 is not installed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip(
    "pkcs11", reason="python-pkcs11 is not installed: the PKCS#11 (HSM) adapter needs it"
)

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store
from pkcs11 import Attribute, KeyType, ObjectClass

from privacam_core.identity import PrincipalKind
from services.common import hsm, pki
from services.key_manager.adapters.pkcs11_root_key import Pkcs11RootKey
from services.key_manager.domain.keyring import RootKey, WrongRootKey

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPIFFE_ID = "spiffe://privacam.test/device/cam-1"
CA_LABEL = "issuing-ca"
ROOT_KEY_LABEL = "root-key"


class SoftwareSigner:
    """An in-memory EcSigner, to check the certificate assembly without a token."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign_sha256(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def _intermediate(root: pki.Authority, public_key: ec.EllipticCurvePublicKey) -> x509.Certificate:
    """An issuing CA certificate for a key held elsewhere, shaped as pki.create_intermediate's."""
    subject = pki._name("Privacam Issuing CA", (PrincipalKind.CAMERA, PrincipalKind.APP))
    builder = pki._ca_builder(subject, public_key, NOW, timedelta(days=365), 0)
    builder = builder.issuer_name(root.certificate.subject).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), critical=False
    )
    return builder.sign(root.key, hashes.SHA256())


def _without_serial_and_signature(cert: x509.Certificate) -> tuple[object, ...]:
    return (
        cert.version,
        cert.subject,
        cert.issuer,
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        cert.public_key(),
        cert.signature_algorithm_oid,
        [(e.oid, e.critical, e.value) for e in cert.extensions],
    )


# ------------------------------------------------------------ without a token ----


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, "0400"),
        (127, "047f"),
        (128, "048180"),
        (255, "0481ff"),
        (256, "04820100"),
        (65_536, "0483010000"),
    ],
)
def test_der_lengths(size: int, header: str) -> None:
    assert hsm._der(0x04, bytes(size)) == bytes.fromhex(header) + bytes(size)


def test_assembly_reproduces_cryptographys_encoding() -> None:
    root = pki.create_root("Privacam Test Root", NOW, timedelta(days=30))
    leaf = pki.issue_leaf(root, pki.new_private_key().public_key(), SPIFFE_ID, NOW, timedelta(1))
    reassembled = hsm._assemble_certificate(leaf.tbs_certificate_bytes, leaf.signature)
    assert reassembled == leaf.public_bytes(serialization.Encoding.DER)


def test_signer_leaf_is_the_same_certificate_as_pki_issue_leaf() -> None:
    root = pki.create_root("Privacam Test Root", NOW, timedelta(days=30))
    subject = pki.new_private_key().public_key()
    expected = pki.issue_leaf(
        root,
        subject,
        SPIFFE_ID,
        NOW,
        timedelta(hours=1),
        server=True,
        dns_names=("cam.local",),
        ip_addresses=("127.0.0.1",),
    )
    leaf = hsm.issue_leaf_with_signer(
        root.certificate,
        SoftwareSigner(root.key),
        subject,
        SPIFFE_ID,
        NOW,
        timedelta(hours=1),
        server=True,
        dns_names=("cam.local",),
        ip_addresses=("127.0.0.1",),
    )
    assert _without_serial_and_signature(leaf) == _without_serial_and_signature(expected)
    leaf.verify_directly_issued_by(root.certificate)


def test_a_signer_that_is_not_the_issuer_is_refused() -> None:
    root = pki.create_root("Privacam Test Root", NOW, timedelta(days=30))
    with pytest.raises(ValueError, match="not the issuer"):
        hsm.issue_leaf_with_signer(
            root.certificate,
            SoftwareSigner(pki.new_private_key()),
            pki.new_private_key().public_key(),
            SPIFFE_ID,
            NOW,
            timedelta(hours=1),
        )


# ---------------------------------------------------------------- with a token ----


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hsm.Pkcs11Token]:
    """A fresh SoftHSM2 token in a temporary directory, with the CA and root keys in it."""
    if shutil.which("softhsm2-util") is None or not Path(hsm.SOFTHSM2_MODULE).exists():
        pytest.skip("SoftHSM2 is not installed (apt-get install -y softhsm2, or stack/softhsm.sh)")
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    user_pin = secrets.token_hex(8)
    label = "privacam-test"
    subprocess.run(
        [
            *("softhsm2-util", "--init-token", "--free", "--label", label),
            *("--so-pin", secrets.token_hex(8), "--pin", user_pin),
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOFTHSM2_CONF", str(conf))
        # SoftHSM2 reads SOFTHSM2_CONF when the module is initialized: start from scratch.
        pkcs11.unload(hsm.SOFTHSM2_MODULE)
        token = hsm.Pkcs11Token(hsm.SOFTHSM2_MODULE, label, user_pin)
        hsm.create_ec_key(token, CA_LABEL)
        hsm.create_aes_key(token, ROOT_KEY_LABEL)
        yield token
        assert not hsm._logins, "a session was left open"
        pkcs11.unload(hsm.SOFTHSM2_MODULE)


@pytest.fixture(scope="module")
def signer(token: hsm.Pkcs11Token) -> Iterator[hsm.Pkcs11EcSigner]:
    with hsm.Pkcs11EcSigner(token, CA_LABEL) as signer:
        yield signer


@pytest.fixture(scope="module")
def root_key(token: hsm.Pkcs11Token) -> Iterator[Pkcs11RootKey]:
    with Pkcs11RootKey(token, ROOT_KEY_LABEL) as root_key:
        yield root_key


def test_leaf_signed_in_the_hsm_chains_to_the_root(signer: hsm.Pkcs11EcSigner) -> None:
    root = pki.create_root("Privacam Test Root", NOW, timedelta(days=3650))
    issuing = _intermediate(root, signer.public_key())
    device_key = pki.new_private_key()
    leaf = hsm.issue_leaf_with_signer(
        issuing, signer, device_key.public_key(), SPIFFE_ID, NOW, timedelta(hours=24)
    )

    leaf.verify_directly_issued_by(issuing)
    verifier = PolicyBuilder().store(Store([root.certificate])).time(NOW).build_client_verifier()
    verified = verifier.verify(leaf, [issuing])
    assert verified.chain == [leaf, issuing, root.certificate]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE_ID]
    assert leaf.public_key() == device_key.public_key()
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_signatures_verify_with_the_public_key(signer: hsm.Pkcs11EcSigner) -> None:
    signature = signer.sign_sha256(b"tree head")
    signer.public_key().verify(signature, b"tree head", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("object_class", "label"),
    [(ObjectClass.PRIVATE_KEY, CA_LABEL), (ObjectClass.SECRET_KEY, ROOT_KEY_LABEL)],
)
def test_keys_cannot_leave_the_token(
    token: hsm.Pkcs11Token, object_class: ObjectClass, label: str
) -> None:
    with token.session(rw=True) as session:
        key = session.find(object_class, label)
        with pytest.raises(pkcs11.AttributeSensitive):
            key[Attribute.VALUE]
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        # Nor wrapped under another key (which would then give it away).
        wrapping = session.session.generate_key(
            KeyType.AES, 256, template={Attribute.EXTRACTABLE: True}
        )
        assert isinstance(wrapping, pkcs11.WrapMixin)
        with pytest.raises(pkcs11.KeyUnextractable):
            wrapping.wrap_key(key)


def test_an_extractable_key_is_refused(token: hsm.Pkcs11Token) -> None:
    with token.session(rw=True) as session:
        session.session.generate_key(
            KeyType.AES,
            256,
            id=b"leaky",
            label="leaky",
            store=True,
            template={Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(hsm.HsmError, match="can leave the token"):
        Pkcs11RootKey(token, "leaky")


def test_missing_keys_and_tokens_are_named(token: hsm.Pkcs11Token) -> None:
    with pytest.raises(hsm.HsmError, match="no PRIVATE_KEY labelled 'nope'"):
        hsm.Pkcs11EcSigner(token, "nope")
    elsewhere = hsm.Pkcs11Token(token.module, "no-such-token", token.user_pin)
    with pytest.raises(hsm.HsmError, match="no PKCS#11 token labelled 'no-such-token'"):
        Pkcs11RootKey(elsewhere, ROOT_KEY_LABEL)
    with pytest.raises(hsm.HsmError, match="already has objects labelled"):
        hsm.create_aes_key(token, ROOT_KEY_LABEL)


def test_closing_one_user_keeps_the_others_logged_in(
    token: hsm.Pkcs11Token, root_key: Pkcs11RootKey
) -> None:
    # PKCS#11 logout is per process: a naive close would log every session out.
    hsm.Pkcs11EcSigner(token, CA_LABEL).close()
    sealed = root_key.seal(bytes(32), "tenant", 1, "p")
    assert root_key.unseal(sealed, "tenant", 1, "p") == bytes(32)


def test_seal_round_trip(root_key: Pkcs11RootKey) -> None:
    kek = os.urandom(32)
    sealed = root_key.seal(kek, "tenant-a", 3, "proposal-1")
    assert len(sealed) == 12 + 32 + 16
    assert root_key.unseal(sealed, "tenant-a", 3, "proposal-1") == kek
    assert root_key.seal(kek, "tenant-a", 3, "proposal-1") != sealed  # fresh nonce


@pytest.mark.parametrize(
    "context",
    [("tenant-b", 3, "proposal-1"), ("tenant-a", 4, "proposal-1"), ("tenant-a", 3, "proposal-2")],
)
def test_unseal_in_another_context_fails(
    root_key: Pkcs11RootKey, context: tuple[str, int, str]
) -> None:
    sealed = root_key.seal(os.urandom(32), "tenant-a", 3, "proposal-1")
    with pytest.raises(WrongRootKey):
        root_key.unseal(sealed, *context)
    # A failed decryption leaves the session usable.
    assert len(root_key.unseal(root_key.seal(b"k" * 32, "t", 1, "p"), "t", 1, "p")) == 32


@pytest.mark.parametrize(
    "damage",
    [
        lambda sealed: sealed[:-1] + bytes([sealed[-1] ^ 1]),
        lambda sealed: sealed[:20],
        lambda sealed: b"",
    ],
    ids=["flipped-tag-bit", "truncated", "empty"],
)
def test_damaged_sealed_keys_do_not_open(
    root_key: Pkcs11RootKey, damage: Callable[[bytes], bytes]
) -> None:
    sealed = root_key.seal(os.urandom(32), "tenant-a", 1, "p")
    with pytest.raises(WrongRootKey):
        root_key.unseal(damage(sealed), "tenant-a", 1, "p")


def test_key_id_comes_from_the_token_object(token: hsm.Pkcs11Token) -> None:
    key_id = hsm.create_aes_key(token, "another-root-key")
    with (
        Pkcs11RootKey(token, "another-root-key") as other,
        Pkcs11RootKey(token, ROOT_KEY_LABEL) as first,
    ):
        assert other.key_id == key_id
        assert len(key_id) == 16
        assert first.key_id != key_id
        with pytest.raises(WrongRootKey):
            other.unseal(first.seal(os.urandom(32), "t", 1, "p"), "t", 1, "p")


def test_sealed_format_is_interchangeable_with_root_key(token: hsm.Pkcs11Token) -> None:
    # A known key imported into the token (as one would move a file root key into an HSM).
    material = os.urandom(32)
    with token.session(rw=True) as session:
        session.session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: material,
                Attribute.ID: os.urandom(16),
                Attribute.LABEL: "imported",
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
            }
        )
    in_memory = RootKey(material)
    with Pkcs11RootKey(token, "imported") as in_token:
        kek = os.urandom(32)
        assert in_memory.unseal(in_token.seal(kek, "t", 7, "p"), "t", 7, "p") == kek
        assert in_token.unseal(in_memory.seal(kek, "t", 7, "p"), "t", 7, "p") == kek


def test_timings(signer: hsm.Pkcs11EcSigner, root_key: Pkcs11RootKey) -> None:
    """Not a benchmark with a bound: prints what one operation costs (pytest -s shows it)."""

    def median_us(operation: Callable[[], object], runs: int) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            operation()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    kek = os.urandom(32)
    sealed = root_key.seal(kek, "tenant-a", 1, "proposal")
    in_memory = RootKey(os.urandom(32))
    seal = median_us(lambda: root_key.seal(kek, "tenant-a", 1, "proposal"), 2000)
    unseal = median_us(lambda: root_key.unseal(sealed, "tenant-a", 1, "proposal"), 2000)
    soft = median_us(lambda: in_memory.seal(kek, "tenant-a", 1, "proposal"), 2000)
    sign = median_us(lambda: signer.sign_sha256(b"x" * 500), 300)
    root = pki.create_root("Privacam Test Root", NOW, timedelta(days=30))
    issuing = _intermediate(root, signer.public_key())
    subject = pki.new_private_key().public_key()
    issue = median_us(
        lambda: hsm.issue_leaf_with_signer(
            issuing, signer, subject, SPIFFE_ID, NOW, timedelta(hours=1)
        ),
        100,
    )
    print(
        f"\nSoftHSM2 via python-pkcs11 (median): seal 32 B {seal:.1f} us, unseal {unseal:.1f} us"
        f" (RootKey in memory: seal {soft:.1f} us); ECDSA P-256 sign {sign:.0f} us;"
        f" issue_leaf_with_signer {issue:.0f} us"
    )


def test_device_auth_issues_camera_certificates_from_the_hsm(
    token: hsm.Pkcs11Token, signer: hsm.Pkcs11EcSigner
) -> None:
    from services.common.clock import SystemClock
    from services.device_auth.domain.certificates import CertificateIssuer

    now = datetime.now(UTC)
    root = pki.create_root("Test Root", now, timedelta(days=30))
    ca_certificate = (
        pki._ca_builder(
            pki._name("HSM Issuing CA", (PrincipalKind.CAMERA, PrincipalKind.APP)),
            signer.public_key(),
            now,
            timedelta(days=30),
            0,
        )
        .issuer_name(root.certificate.subject)
        .sign(root.key, hashes.SHA256())
    )
    issuer = CertificateIssuer(
        hsm.HsmAuthority(ca_certificate, signer), "privacam.local", SystemClock()
    )
    camera_key = ec.generate_private_key(ec.SECP256R1())
    issued = issuer.issue(PrincipalKind.CAMERA, "tenant-a", "cam-1", camera_key.public_key())
    issued.leaf.verify_directly_issued_by(ca_certificate)
    san = issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://privacam.local/tenant/tenant-a/camera/cam-1"
    ]
