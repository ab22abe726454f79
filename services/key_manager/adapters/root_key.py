"""Loading the root key from its mounted secret file."""

from __future__ import annotations

import binascii
import contextlib
from pathlib import Path

from services.key_manager.domain.keyring import KEY_BYTES, RootKey


def load_root_key(path: Path) -> RootKey:
    raw = path.read_bytes().strip()
    if len(raw) == 2 * KEY_BYTES:
        with contextlib.suppress(binascii.Error):  # 64 bytes that are not hex: raw key
            raw = binascii.unhexlify(raw)
    if len(raw) != KEY_BYTES:
        raise SystemExit(
            f"PRIVACAM_KEY_MANAGER_ROOT_KEY_FILE: {path} must hold {KEY_BYTES} raw bytes or "
            f"{2 * KEY_BYTES} hex digits"
        )
    return RootKey(raw)
