"""Loading the root key from its mounted secret file."""

from __future__ import annotations

import binascii
import contextlib
from pathlib import Path

from services.common.hsm import Pkcs11Token
from services.key_manager.adapters.pkcs11_root_key import Pkcs11RootKey
from services.key_manager.domain.keyring import KEY_BYTES, RootKey
from services.key_manager.settings import KeyManagerSettings


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


def root_key_from(settings: KeyManagerSettings) -> RootKey | Pkcs11RootKey:
    """The configured root key: a secret file, or a non-extractable key in an HSM."""
    if settings.root_key_pkcs11_module is not None and settings.root_key_pkcs11_pin_file:
        token = Pkcs11Token.from_pin_file(
            str(settings.root_key_pkcs11_module),
            settings.root_key_pkcs11_token,
            settings.root_key_pkcs11_pin_file,
        )
        return Pkcs11RootKey(token, settings.root_key_pkcs11_label)
    assert settings.root_key_file is not None  # the settings validator guarantees one
    return load_root_key(settings.root_key_file)
