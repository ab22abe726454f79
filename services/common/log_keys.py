"""The access log's public signing keys as the platform hands them around: a JSON file
``{"<key id>": "<PEM Ed25519 public key>", ...}`` mounted into the services that check
the log's signatures (the key manager) or deliver its keys (device_auth, at enrollment)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def load_log_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """The keys of ``path``; ValueError naming the file for anything but Ed25519 keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, pem in json.loads(path.read_text()).items():
        key = load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: key {key_id!r} is not an Ed25519 public key")
        keys[key_id] = key
    return keys
