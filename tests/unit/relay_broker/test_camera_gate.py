"""The camera's own checks before it streams (privacam_sdk.camera): a session request is
served only with a fresh receipt of its own LIVE_SESSION record, and only to the app that
record names. Whatever the broker, its Redis or a replay says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.accesslog.v1 import log_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.types.v1 import types_pb2
from privacam_sdk.camera import SessionGate, SessionRefused
from privacam_sdk.live_view import Signer, sign_dtls_fingerprint
from tests.pki_helpers import Identity, PkiFactory
from tests.unit.common.test_receipts import FakeLog

TENANT = "7f3a0c1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
DEVICE = "cam-1"
APP = "install-1"
SESSION = "3f1b2c4d-0000-4000-8000-000000000001"
NOW = datetime.now(UTC).replace(microsecond=0)
"""When the receipts are made: at import. Certificates are checked at the time of the check,
since the test PKI issues them when asked (possibly minutes after import in a full run)."""
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
FINGERPRINT = ":".join(["7E"] * 32)
OFFER = f"v=0\r\ns=-\r\na=fingerprint:sha-256 {FINGERPRINT}\r\n"


def live_record(
    session_id: str = SESSION,
    device_id: str = DEVICE,
    app_id: str = APP,
    at: datetime = NOW,
    number: int = 1,
) -> bytes:
    return log_pb2.AccessRecord(
        access_id=f"00000000-0000-4000-8000-{number:012d}",
        tenant_id=TENANT,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=TENANT, id=app_id
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_LIVE_SESSION, device_id=device_id, session_id=session_id
        ),
        purpose=types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
        service="relay_broker",
        occurred_at=Timestamp(seconds=int(at.timestamp())),
    ).SerializeToString()


def request(receipt: log_pb2.Receipt | None, session_id: str = SESSION) -> pb.SessionRequested:
    message = pb.SessionRequested(session_id=session_id)
    if receipt is not None:
        message.receipt.CopyFrom(receipt)
    return message


def logged(record: bytes, at: datetime = NOW) -> log_pb2.Receipt:
    log = FakeLog(TENANT, [live_record(number=100), record])
    receipt = log.receipt(1, at)
    # FakeLog signs with the same key as LOG_KEY; re-sign to be explicit about it.
    receipt.tree_head.CopyFrom(log.head(at, LOG_KEY, "log-1"))
    return receipt


@dataclass
class Camera:
    gate: SessionGate
    pki: PkiFactory


@pytest.fixture
def camera(pki: PkiFactory) -> Camera:
    gate = SessionGate(
        tenant_id=TENANT,
        device_id=DEVICE,
        log_keys={"log-1": LOG_KEY.public_key()},
        trusted_ca_pem=pki.ca_file.read_bytes(),
        trust_domain=pki.trust_domain,
    )
    return Camera(gate, pki)


def app_proof(identity: Identity, signer: Signer = Signer.APP) -> pb.SignedDtlsFingerprint:
    key = load_pem_private_key(identity.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = [
        c.public_bytes(Encoding.DER)
        for c in x509.load_pem_x509_certificates(identity.cert_file.read_bytes())
    ]
    return sign_dtls_fingerprint(key, chain, SESSION, "sha-256", FINGERPRINT, signer)


def test_a_logged_request_is_served_to_the_logged_app(camera: Camera) -> None:
    viewer = camera.gate.check_request(request(logged(live_record())), NOW)
    assert (viewer.tenant_id, viewer.app_id, viewer.leaf_index) == (TENANT, APP, 1)
    camera.gate.check_viewer(
        viewer, app_proof(camera.pki.app(TENANT, APP)), OFFER, datetime.now(UTC)
    )


@pytest.mark.parametrize(
    ("forged", "why"),
    [
        (request(None), "no access-log receipt"),
        (request(logged(live_record(device_id="cam-2"))), "another camera"),
        (
            request(logged(live_record(session_id="3f1b2c4d-0000-4000-8000-00000000000f"))),
            "another session",
        ),
        (
            request(logged(live_record()), session_id="3f1b2c4d-0000-4000-8000-00000000000e"),
            "another session",
        ),
        (
            request(logged(live_record(), at=NOW - timedelta(minutes=3))),
            "tree head was signed 0:03:00 ago",
        ),
        (
            request(logged(live_record(at=NOW - timedelta(minutes=30)))),
            "logged access happened 0:30:00 ago",
        ),
    ],
    ids=["unlogged", "other-camera", "other-session", "receipt-moved", "expired", "old-access"],
)
def test_unlogged_expired_or_foreign_requests_are_refused(
    camera: Camera, forged: pb.SessionRequested, why: str
) -> None:
    with pytest.raises(SessionRefused, match=why):
        camera.gate.check_request(forged, NOW)


def test_a_head_signed_by_an_unpinned_key_is_refused(camera: Camera) -> None:
    receipt = logged(live_record())
    forger = Ed25519PrivateKey.generate()
    log = FakeLog(TENANT, [live_record(number=100), live_record()])
    receipt.tree_head.CopyFrom(log.head(NOW, forger, "log-1"))
    with pytest.raises(SessionRefused, match="does not verify"):
        camera.gate.check_request(request(receipt), NOW)


def test_a_served_request_is_not_served_again(camera: Camera) -> None:
    replayed = request(logged(live_record()))
    camera.gate.check_request(replayed, NOW)
    with pytest.raises(SessionRefused, match="already served"):
        camera.gate.check_request(replayed, NOW + timedelta(seconds=5))


def test_only_the_logged_app_may_signal(camera: Camera) -> None:
    viewer = camera.gate.check_request(request(logged(live_record())), NOW)
    with pytest.raises(SessionRefused, match="not the app that was expected"):
        camera.gate.check_viewer(
            viewer, app_proof(camera.pki.app(TENANT, "install-2")), OFFER, datetime.now(UTC)
        )
    with pytest.raises(SessionRefused, match="not the app that was expected"):  # a camera's cert
        camera.gate.check_viewer(
            viewer, app_proof(camera.pki.camera(TENANT, APP)), OFFER, datetime.now(UTC)
        )
    with pytest.raises(SessionRefused, match="does not verify"):  # the camera's own context
        camera.gate.check_viewer(
            viewer, app_proof(camera.pki.app(TENANT, APP), Signer.CAMERA), OFFER, datetime.now(UTC)
        )
    spliced = OFFER.replace(FINGERPRINT, ":".join(["11"] * 32))
    with pytest.raises(SessionRefused, match="did not sign"):
        camera.gate.check_viewer(
            viewer, app_proof(camera.pki.app(TENANT, APP)), spliced, datetime.now(UTC)
        )
