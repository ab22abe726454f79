"""The log's keys: rotation statements, validity windows, and the SDK's pinned trust."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam_core.receipts import ReceiptError, sign_key_rotation, verify_key_rotation
from privacam_core.timestamps import to_datetime
from privacam_sdk.access_log import trusted_log_keys
from services.access_log.adapters.signer import (
    Ed25519HeadSigner,
    load_rotations,
    main,
    rotation_to_json,
)

T1 = datetime(2026, 12, 1, tzinfo=UTC)
T2 = datetime(2026, 12, 5, tzinfo=UTC)
A, B, C = (Ed25519PrivateKey.generate() for _ in range(3))


def test_a_rotation_chain_fills_validity_and_is_served() -> None:
    ab = sign_key_rotation(A, "a", "b", B.public_key(), T1)
    bc = sign_key_rotation(B, "b", "c", C.public_key(), T2)
    signer = Ed25519HeadSigner(C, "c", {"a": A.public_key(), "b": B.public_key()}, [ab, bc])
    served = signer.keys()
    keys = {k.key_id: k for k in served}
    assert [k.key_id for k in served] == ["c", "a", "b"]
    assert to_datetime(keys["a"].valid_from) == datetime(1970, 1, 1, tzinfo=UTC)
    assert not keys["a"].HasField("rotation")
    assert to_datetime(keys["a"].retired_at) == T1
    assert (to_datetime(keys["b"].valid_from), to_datetime(keys["b"].retired_at)) == (T1, T2)
    assert keys["b"].rotation == ab
    assert to_datetime(keys["c"].valid_from) == T2
    assert not keys["c"].HasField("retired_at")
    # What the SDK does with it: pinned a, follows a -> b -> c.
    trusted, added = trusted_log_keys({"a": A.public_key()}, signer.keys())
    assert sorted(trusted) == ["a", "b", "c"]
    assert sorted(added) == ["b", "c"]


def test_statements_that_no_known_key_signed_stop_the_start() -> None:
    stranger = Ed25519PrivateKey.generate()
    forged = sign_key_rotation(stranger, "a", "b", B.public_key(), T1)
    with pytest.raises(ValueError, match="forged"):
        Ed25519HeadSigner(B, "b", {"a": A.public_key()}, [forged])
    orphan = sign_key_rotation(stranger, "x", "b", B.public_key(), T1)
    with pytest.raises(ValueError, match="no key this device trusts"):
        Ed25519HeadSigner(B, "b", {"a": A.public_key()}, [orphan])
    other = sign_key_rotation(A, "a", "b", C.public_key(), T1)
    with pytest.raises(ValueError, match="another public key"):
        Ed25519HeadSigner(B, "b", {"a": A.public_key()}, [other])


def test_statements_are_domain_separated_and_refuse_alteration() -> None:
    ab = sign_key_rotation(A, "a", "b", B.public_key(), T1)
    assert verify_key_rotation(ab, {"a": A.public_key()}).public_bytes_raw() == (
        B.public_key().public_bytes_raw()
    )
    for change in ("key_id", "valid_from", "public_key"):
        altered = type(ab)()
        altered.CopyFrom(ab)
        if change == "key_id":
            altered.key_id = "b2"
        elif change == "valid_from":
            altered.valid_from.seconds += 1
        else:
            altered.public_key = C.public_key().public_bytes_raw()
        with pytest.raises(ReceiptError, match="forged or altered"):
            verify_key_rotation(altered, {"a": A.public_key()})
    malformed = type(ab)()
    malformed.CopyFrom(ab)
    malformed.signature = b"short"
    with pytest.raises(ReceiptError, match="malformed"):
        verify_key_rotation(malformed, {"a": A.public_key()})
    # A tree head's signature is never a rotation statement (different context).
    with pytest.raises(ReceiptError):
        verify_key_rotation(malformed, {})


def test_the_sdk_refuses_unintroduced_and_changed_keys() -> None:
    listed = [pb.SigningKey(key_id="a", public_key=A.public_key().public_bytes_raw())]
    listed.append(pb.SigningKey(key_id="b", public_key=B.public_key().public_bytes_raw()))
    with pytest.raises(ReceiptError, match="'b', which no key this device trusts"):
        trusted_log_keys({"a": A.public_key()}, listed)
    swapped = [pb.SigningKey(key_id="a", public_key=B.public_key().public_bytes_raw())]
    with pytest.raises(ReceiptError, match="another public key"):
        trusted_log_keys({"a": A.public_key()}, swapped)
    ab = sign_key_rotation(A, "a", "b", B.public_key(), T1)
    mismatched = pb.SigningKey(key_id="c", public_key=C.public_key().public_bytes_raw())
    mismatched.rotation.CopyFrom(ab)
    with pytest.raises(ReceiptError, match="about another key"):
        trusted_log_keys({"a": A.public_key()}, [mismatched])


def test_the_rotate_command_writes_a_line_the_service_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_bytes(A.private_bytes_raw())
    new.write_bytes(B.private_bytes_raw())
    assert main(["rotate", str(old), "a", str(new), "b", T1.isoformat()]) == 0
    line = capsys.readouterr().out
    (tmp_path / "rotations.jsonl").write_text(line)
    (rotation,) = load_rotations(tmp_path / "rotations.jsonl")
    assert rotation_to_json(rotation) == line.strip()
    assert json.loads(line)["signed_by"] == "a"
    Ed25519HeadSigner(B, "b", {"a": A.public_key()}, [rotation])
    (tmp_path / "bad.jsonl").write_text('{"key_id": "b"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_rotations(tmp_path / "bad.jsonl")
