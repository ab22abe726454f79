"""Signed state records (services/common/signed_state.py): a reader applies a record of a
compacted topic only if that topic's one writer signed exactly this topic, key and value."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam_core.identity import PrincipalKind, spiffe_uri
from services.common import topic_grants, topics
from services.common.kafka import EventProducer, TopicReplica
from services.common.metrics import STATE_RECORDS_REJECTED
from services.common.pki import (
    certificate_pem,
    create_intermediate,
    create_root,
    issue_leaf,
    new_private_key,
    private_key_pem,
    write_private,
)
from services.common.revocations import RevocationList
from services.common.settings import KafkaSettings
from services.common.signed_state import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    RecordRejected,
    StateSigner,
    StateVerifier,
    signed_payload,
)
from tests.pki_helpers import PkiFactory
from tests.unit.kafka_fakes import FakeProducer, FakeTopic, follow

TOPIC = topics.REVOCATIONS.name
KEY = b"subject/0f0f"
VALUE = b"\x08\x01 a revocation record"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFactory:
    return PkiFactory(Path(tmp_path_factory.mktemp("pki")))


def signer(pki: PkiFactory, service: str) -> StateSigner:
    identity = pki.service(service)
    return StateSigner.from_files(identity.cert_file, identity.key_file)


@pytest.fixture(scope="module")
def verifier(pki: PkiFactory) -> StateVerifier:
    return StateVerifier.from_files(pki.ca_file, pki.trust_domain, topic_grants.state_writers())


def reason(verifier: StateVerifier, headers: list[tuple[str, bytes]], **record: object) -> str:
    """Why the record is refused ('' if accepted); the record defaults to (TOPIC, KEY, VALUE)."""
    topic = str(record.get("topic", TOPIC))
    key = record.get("key", KEY)
    value = record.get("value", VALUE)
    assert isinstance(key, bytes)
    assert value is None or isinstance(value, bytes)
    try:
        verifier.verify(topic, key, value, headers)
    except RecordRejected as rejected:
        return rejected.reason
    return ""


def test_each_writer_signs_its_own_topics(pki: PkiFactory, verifier: StateVerifier) -> None:
    for topic, writer in topic_grants.state_writers().items():
        signed = signer(pki, writer.replace("-", "_"))
        assert reason(verifier, signed.headers(topic, KEY, VALUE), topic=topic) == ""
        assert reason(verifier, signed.headers(topic, KEY, None), topic=topic, value=None) == ""


def test_a_signature_holds_for_its_own_topic_key_and_value_only(
    pki: PkiFactory, verifier: StateVerifier
) -> None:
    device_auth = signer(pki, "device_auth")
    headers = device_auth.headers(TOPIC, KEY, VALUE)
    # device_auth writes both topics: moved to the other one, the record does not verify.
    assert reason(verifier, headers, topic=topics.IDENTITY_STATE.name) == "bad_signature"
    assert reason(verifier, headers, key=b"subject/1e1e") == "bad_signature"
    assert reason(verifier, headers, value=VALUE + b"!") == "bad_signature"
    # A signed value cannot be turned into a tombstone, nor a signed tombstone into a value.
    assert reason(verifier, headers, value=None) == "bad_signature"
    tombstone = device_auth.headers(TOPIC, KEY, None)
    assert reason(verifier, tombstone, value=b"") == "bad_signature"
    assert signed_payload(TOPIC, KEY, None) != signed_payload(TOPIC, KEY, b"")


def test_another_services_signature_grants_nothing(
    pki: PkiFactory, verifier: StateVerifier
) -> None:
    relay_broker = signer(pki, "relay_broker")
    for topic in topic_grants.state_writers():
        headers = relay_broker.headers(topic, KEY, VALUE)
        assert reason(verifier, headers, topic=topic) == "wrong_writer"
    # key_manager's own topic, but device_auth's grants: refused.
    key_manager = signer(pki, "key_manager")
    assert reason(verifier, key_manager.headers(TOPIC, KEY, None), value=None) == "wrong_writer"


def _own_certificate(pki: PkiFactory, tmp_path: Path, issuer_folder: str) -> StateSigner:
    """A certificate naming service/device-auth, issued by one of the platform's own CAs."""
    issuer = {"issuing": pki.issuing, "operator-ca": pki.operator_ca}[issuer_folder]
    key = new_private_key()
    uri = spiffe_uri(pki.trust_domain, PrincipalKind.SERVICE, "device-auth")
    leaf = issue_leaf(issuer, key.public_key(), uri, datetime.now(UTC), timedelta(days=1))
    write_private(tmp_path / "tls.key", private_key_pem(key))
    (tmp_path / "tls.crt").write_bytes(certificate_pem(leaf, issuer.certificate))
    return StateSigner.from_files(tmp_path / "tls.crt", tmp_path / "tls.key")


@pytest.mark.parametrize("issuer", ["issuing", "operator-ca"])
def test_a_certificate_naming_the_writer_from_another_ca_is_refused(
    pki: PkiFactory, verifier: StateVerifier, tmp_path: Path, issuer: str
) -> None:
    # device_auth's issuing key (cameras and apps) could sign a leaf naming device-auth: it
    # chains to the root, but its CA does not issue services.
    forged = _own_certificate(pki, tmp_path, issuer)
    assert reason(verifier, forged.headers(TOPIC, KEY, None), value=None) == "not_a_service_ca"


def test_a_certificate_from_a_foreign_root_is_refused(
    pki: PkiFactory, verifier: StateVerifier, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    root = create_root("Foreign Root", now, timedelta(days=30))
    ca = create_intermediate(
        root, "Foreign Services", now, timedelta(days=30), [PrincipalKind.SERVICE]
    )
    key = new_private_key()
    uri = spiffe_uri(pki.trust_domain, PrincipalKind.SERVICE, "device-auth")
    leaf = issue_leaf(ca, key.public_key(), uri, now, timedelta(days=1))
    forged = StateSigner(key, [leaf, ca.certificate])
    assert reason(verifier, forged.headers(TOPIC, KEY, VALUE)) == "untrusted_certificate"


def test_unsigned_and_corrupted_records_are_refused(
    pki: PkiFactory, verifier: StateVerifier
) -> None:
    headers = signer(pki, "device_auth").headers(TOPIC, KEY, VALUE)
    signature = headers[0][1]
    chain = headers[1:]
    assert reason(verifier, []) == "unsigned"
    assert reason(verifier, [("privacam-event-type", b"x")]) == "unsigned"
    assert reason(verifier, chain) == "malformed"  # no signature
    assert reason(verifier, [headers[0]]) == "malformed"  # no certificate
    assert reason(verifier, [headers[0], *headers]) == "malformed"  # two signatures
    flipped = bytes([signature[0], signature[1], signature[2] ^ 1]) + signature[3:]
    assert reason(verifier, [(SIGNATURE_HEADER, flipped), *chain]) == "bad_signature"
    assert reason(verifier, [(SIGNATURE_HEADER, b"junk"), *chain]) == "bad_signature"
    leaf = bytearray(chain[0][1])
    leaf[-5] ^= 1  # inside the CA's signature over the leaf
    altered = [(SIGNER_HEADER, bytes(leaf)), *chain[1:]]
    assert reason(verifier, [headers[0], *altered]) == "untrusted_certificate"
    assert reason(verifier, [headers[0], (SIGNER_HEADER, b"not DER")]) == "malformed"
    assert reason(verifier, headers, topic="privacam.identity.v1") == "no_writer"


def test_a_record_outlives_its_writers_certificate(pki: PkiFactory) -> None:
    # Signed with a certificate that has expired since (rotated): still replayed.
    now = datetime.now(UTC)
    root = create_root("Root", now - timedelta(days=60), timedelta(days=3650))
    ca = create_intermediate(
        root, "Services", now - timedelta(days=60), timedelta(days=365), [PrincipalKind.SERVICE]
    )
    key = new_private_key()
    uri = spiffe_uri(pki.trust_domain, PrincipalKind.SERVICE, "device-auth")
    leaf = issue_leaf(ca, key.public_key(), uri, now - timedelta(days=30), timedelta(days=7))
    assert leaf.not_valid_after_utc < now
    verifier = StateVerifier([root.certificate], pki.trust_domain, topic_grants.state_writers())
    old = StateSigner(key, [leaf, ca.certificate])
    assert reason(verifier, old.headers(TOPIC, KEY, VALUE)) == ""


def test_the_trust_bundle_may_hold_the_service_ca_itself(pki: PkiFactory) -> None:
    # cert-manager's CA issuer puts the issuing CA in ca.crt, and a leaf may come alone.
    verifier = StateVerifier(
        [pki.service_ca.certificate], pki.trust_domain, topic_grants.state_writers()
    )
    headers = signer(pki, "device_auth").headers(TOPIC, KEY, VALUE)
    assert reason(verifier, headers[:2]) == ""


def test_a_refusal_is_counted_by_topic_and_reason(
    pki: PkiFactory, verifier: StateVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    counter = STATE_RECORDS_REJECTED.labels(TOPIC, "unsigned")
    before = counter._value.get()
    assert not verifier.accepts(TOPIC, KEY, None, [])
    assert counter._value.get() == before + 1
    # Logged without the key or value (keys name identities).
    assert KEY.decode() not in caplog.text
    assert verifier.accepts(
        TOPIC, KEY, VALUE, signer(pki, "device_auth").headers(TOPIC, KEY, VALUE)
    )


def test_replay_verifies_thousands_of_records_per_second(
    pki: PkiFactory, verifier: StateVerifier
) -> None:
    device_auth = signer(pki, "device_auth")
    records = [(f"subject/{i:04x}".encode(), VALUE + bytes([i % 256])) for i in range(2000)]
    signed = [(key, value, device_auth.headers(TOPIC, key, value)) for key, value in records]
    started = time.perf_counter()
    for key, value, headers in signed:
        # Headers arrive as fresh bytes per record, as from the consumer.
        verifier.verify(TOPIC, key, value, [(n, bytes(v)) for n, v in headers])
    rate = len(signed) / (time.perf_counter() - started)
    print(f"\nverified {rate:,.0f} state records/s (chain cached, one ECDSA check each)")
    assert rate > 1000


async def test_a_replica_of_a_compacted_topic_needs_a_verifier() -> None:
    settings = KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT")
    producer = EventProducer(settings, "test")
    replica = TopicReplica(settings, topics.REVOCATIONS, producer, lambda key, value: None)
    with pytest.raises(ValueError, match="verifies its writer"):
        await replica.start()


async def test_a_producer_without_a_signer_does_not_write_state() -> None:
    settings = KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT")
    producer = EventProducer(settings, "test")
    with pytest.raises(ValueError, match="must be signed"):
        await producer.send_raw(topics.REVOCATIONS, KEY, None)


def test_every_compacted_topic_has_one_signing_writer() -> None:
    assert topic_grants.state_writers() == {
        topics.IDENTITY_STATE.name: "device-auth",
        topics.REVOCATIONS.name: "device-auth",
        topics.KEY_STATE.name: "key-manager",
        topics.ACCESS_STATE.name: "access-log",
        topics.RETENTION_STATE.name: "retention",
    }


@pytest.mark.parametrize("writer", [True, False])
async def test_the_writer_reasserts_a_revocation_over_a_forged_tombstone(writer: bool) -> None:
    # Skipped by every replica, a forged tombstone would still let compaction erase the
    # revocation; device_auth writes it again, so the newest record is the revocation.
    settings = KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT")
    topic = FakeTopic()
    record = RevocationRecord(subject_digest=b"\x01" * 32, all_certificates=True)
    value = record.SerializeToString(deterministic=True)
    topic.append(1, KEY, value)
    revocations = RevocationList(settings, FakeProducer(topic), writer=writer)  # type: ignore[arg-type]
    verifier = await follow(revocations._replica, topic)
    topic.forge(1, KEY, None)
    topic.forge(1, b"never-seen", None)
    await revocations._replica.catch_up()
    await revocations.stop()
    assert verifier.rejected == 2
    expected = [(KEY, value), (KEY, None), (b"never-seen", None)]
    assert topic.partitions[1] == expected + ([(KEY, value)] if writer else [])
