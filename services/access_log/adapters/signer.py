"""The log's Ed25519 signing keys: the current key signs tree heads; its public half goes
to the key manager and, at enrollment, to every app and camera, which pin it.

A new key is introduced by a **rotation statement** (``log_pb2.KeyRotation``, layout in
``privacam_core.receipts``) signed by the key it replaces; clients trust a key only if
they pinned it or a trusted key signed its statement. ``KEY_ROTATIONS_FILE`` holds the
statements in order; make one with

    python -m services.access_log.adapters.signer rotate OLD_KEY_FILE OLD_KEY_ID \\
        NEW_KEY_FILE NEW_KEY_ID VALID_FROM_ISO >> rotations.jsonl

(one JSON object per line), then deploy the new key as ``SIGNING_KEY_FILE`` /
``SIGNING_KEY_ID``, the old public key in ``RETIRED_KEYS_FILE`` and the statements.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import log_pb2
from privacam_core.receipts import (
    ReceiptError,
    sign_key_rotation,
    sign_log_deletion,
    sign_tree_head,
    verify_key_rotation,
    verify_tree_head,
)
from privacam_core.timestamps import to_datetime, to_timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Raw 32 bytes (what tests/harness.py and scripts/services.sh write) or PEM PKCS#8."""
    data = path.read_bytes()
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    key = load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_retired_keys(path: Path | None) -> dict[str, Ed25519PublicKey]:
    """{"<key id>": "<PEM public key>"}: the key manager's keys-file format."""
    if path is None:
        return {}
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, pem in json.loads(path.read_text()).items():
        key = load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: key {key_id!r} is not an Ed25519 public key")
        keys[key_id] = key
    return keys


def rotation_to_json(rotation: log_pb2.KeyRotation) -> str:
    return json.dumps(
        {
            "key_id": rotation.key_id,
            "public_key": base64.b64encode(rotation.public_key).decode(),
            "valid_from": to_datetime(rotation.valid_from).isoformat(),
            "signed_by": rotation.signed_by,
            "signature": base64.b64encode(rotation.signature).decode(),
        },
        sort_keys=True,
    )


def load_rotations(path: Path | None) -> list[log_pb2.KeyRotation]:
    """The statements of ``path`` (one JSON object per line, as ``rotate`` prints them);
    ValueError naming the line for anything malformed."""
    if path is None:
        return []
    rotations = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            rotations.append(
                log_pb2.KeyRotation(
                    key_id=str(item["key_id"]),
                    public_key=base64.b64decode(item["public_key"], validate=True),
                    valid_from=to_timestamp(datetime.fromisoformat(item["valid_from"])),
                    signed_by=str(item["signed_by"]),
                    signature=base64.b64decode(item["signature"], validate=True),
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a key rotation statement ({error})") from None
    return rotations


@dataclass(frozen=True, slots=True)
class _Key:
    public: Ed25519PublicKey
    rotation: log_pb2.KeyRotation | None


class Ed25519HeadSigner:
    """Signs heads with the current key and lists every key with its validity: keys the
    log started with (no statement) are valid from the Unix epoch; a rotated key from its
    statement's valid_from; a key retires at the valid_from of the statement it signed.
    Start-up fails on a statement that no earlier key signed, or that does not match the
    current key."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        key_id: str,
        retired: dict[str, Ed25519PublicKey] | None = None,
        rotations: list[log_pb2.KeyRotation] | None = None,
    ) -> None:
        self._key = key
        self.key_id = key_id
        public = key.public_key()
        rotations = rotations or []
        introduced = {r.key_id for r in rotations}
        keys: dict[str, _Key] = {
            k: _Key(v, None) for k, v in (retired or {}).items() if k not in introduced
        }
        if key_id not in introduced:
            keys[key_id] = _Key(public, None)
        for rotation in rotations:
            trusted = {k: v.public for k, v in keys.items()}
            try:
                new = verify_key_rotation(rotation, trusted)
            except ReceiptError as error:
                raise ValueError(f"key rotation statements: {error}") from None
            if rotation.key_id in keys:
                raise ValueError(f"key rotation statements: {rotation.key_id!r} appears twice")
            keys[rotation.key_id] = _Key(new, rotation)
        if keys[key_id].public.public_bytes_raw() != public.public_bytes_raw():
            raise ValueError(f"the rotation statement of {key_id!r} names another public key")
        self._keys = keys

    def sign(self, tenant_id: str, size: int, root: bytes, at: datetime) -> log_pb2.SignedTreeHead:
        return sign_tree_head(self._key, self.key_id, tenant_id, size, root, at)

    def verify(self, head: log_pb2.SignedTreeHead) -> bool:
        try:
            verify_tree_head(head, {k: v.public for k, v in self._keys.items()})
        except ReceiptError:
            return False
        return True

    def sign_deletion(
        self, tenant_id: str, size: int, root: bytes, at: datetime
    ) -> log_pb2.SignedLogDeletion:
        return sign_log_deletion(self._key, self.key_id, tenant_id, size, root, at)

    def keys(self) -> list[pb.SigningKey]:
        """The current key first, then the others by id."""
        retired_at: dict[str, datetime] = {}
        for entry in self._keys.values():
            if entry.rotation is not None:
                moment = to_datetime(entry.rotation.valid_from)
                signer = entry.rotation.signed_by
                retired_at[signer] = min(moment, retired_at.get(signer, moment))
        listed = []
        for key_id in [self.key_id, *sorted(k for k in self._keys if k != self.key_id)]:
            entry = self._keys[key_id]
            message = pb.SigningKey(
                key_id=key_id,
                public_key=entry.public.public_bytes_raw(),
                valid_from=(
                    entry.rotation.valid_from
                    if entry.rotation is not None
                    else to_timestamp(_EPOCH)
                ),
            )
            if entry.rotation is not None:
                message.rotation.CopyFrom(entry.rotation)
            if key_id != self.key_id and key_id in retired_at:
                message.retired_at.CopyFrom(to_timestamp(retired_at[key_id]))
            listed.append(message)
        return listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.access_log.adapters.signer",
        description="Print the statement, signed with the current log key, that a new key "
        "takes over (a line for KEY_ROTATIONS_FILE).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate")
    rotate.add_argument("old_key_file", type=Path)
    rotate.add_argument("old_key_id")
    rotate.add_argument("new_key_file", type=Path)
    rotate.add_argument("new_key_id")
    rotate.add_argument("valid_from", type=datetime.fromisoformat)
    args = parser.parse_args(argv)
    valid_from = args.valid_from if args.valid_from.tzinfo else args.valid_from.replace(tzinfo=UTC)
    rotation = sign_key_rotation(
        load_signing_key(args.old_key_file),
        args.old_key_id,
        args.new_key_id,
        load_signing_key(args.new_key_file).public_key(),
        valid_from,
    )
    sys.stdout.write(rotation_to_json(rotation) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
