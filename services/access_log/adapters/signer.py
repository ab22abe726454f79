"""The log's Ed25519 signing key: signs tree heads; its public half goes to the key manager."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import log_pb2
from services.common.receipts import sign_tree_head


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


class Ed25519HeadSigner:
    def __init__(
        self,
        key: Ed25519PrivateKey,
        key_id: str,
        retired: dict[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self._key = key
        self.key_id = key_id
        self._retired = {k: v for k, v in (retired or {}).items() if k != key_id}

    def sign(self, tenant_id: str, size: int, root: bytes, at: datetime) -> log_pb2.SignedTreeHead:
        return sign_tree_head(self._key, self.key_id, tenant_id, size, root, at)

    def keys(self) -> list[pb.SigningKey]:
        current = pb.SigningKey(
            key_id=self.key_id, public_key=self._key.public_key().public_bytes_raw()
        )
        retired = [
            pb.SigningKey(key_id=key_id, public_key=key.public_bytes_raw())
            for key_id, key in sorted(self._retired.items())
        ]
        return [current, *retired]
