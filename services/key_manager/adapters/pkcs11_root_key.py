"""The key manager's root key inside a PKCS#11 token (SoftHSM2 in tests, an HSM in
production): a non-extractable AES-256 key that seals and unseals KEKs in the token.

Same API and same sealed format as the file-backed RootKey (nonce || ciphertext || tag over
the same associated data), so KEKs sealed by either open with the other when both hold
the same key; tests/unit/common/test_hsm.py checks both directions.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Self

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from services.common.hsm import HsmError, Pkcs11Token, _require_unextractable, aes_key_id
from services.key_manager.domain.keyring import (
    _SEAL_LABEL,
    KEY_BYTES,
    NONCE_BYTES,
    WrongRootKey,
    _encode,
)

_TAG_BYTES = 16


# Tag mismatch: CKR_ENCRYPTED_DATA_INVALID in PKCS#11 2.40/3.0, but SoftHSM2 2.6 answers
# CKR_GENERAL_ERROR (GeneralError), so that one means "does not open" too.
_DOES_NOT_OPEN = (
    pkcs11.EncryptedDataInvalid,
    pkcs11.EncryptedDataLenRange,
    pkcs11.GeneralError,
)


class Pkcs11RootKey:
    """``keyring.RootKey`` with its AES-256 key in the token (found by label, non-extractable).

    Same API and same sealed format, nonce (12 random bytes, made here) || ciphertext ||
    16-byte tag, over the same associated data: a KEK sealed by one opens with the other
    if they hold the same key. ``key_id`` is explained at :func:`_root_key_id`.
    """

    def __init__(self, token: Pkcs11Token, label: str) -> None:
        self._session = token.session()
        try:
            key = self._session.find(ObjectClass.SECRET_KEY, label)
            if key[Attribute.KEY_TYPE] != KeyType.AES or key[Attribute.VALUE_LEN] != KEY_BYTES:
                raise HsmError(f"key {label!r} is not an AES-{KEY_BYTES * 8} key")
            _require_unextractable(key, "root key")
            if not isinstance(key, pkcs11.EncryptMixin) or not isinstance(key, pkcs11.DecryptMixin):
                raise HsmError(f"key {label!r} cannot encrypt and decrypt")
            cka_id: bytes = key[Attribute.ID]
            if not cka_id:
                raise HsmError(f"key {label!r} has no CKA_ID to derive its key_id from")
        except BaseException:
            self._session.close()
            raise
        self._encrypting: pkcs11.EncryptMixin = key
        self._decrypting: pkcs11.DecryptMixin = key
        self.key_id = aes_key_id(cka_id)

    def seal(self, kek: bytes, tenant_id: str, version: int, proposal_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = _encode(_SEAL_LABEL, tenant_id, version, proposal_id)
        sealed = self._encrypting.encrypt(
            kek, mechanism=Mechanism.AES_GCM, mechanism_param=pkcs11.GCMParams(nonce, aad)
        )
        assert isinstance(sealed, bytes)  # bytes in, bytes out (iterables stream)
        return nonce + sealed

    def unseal(self, sealed: bytes, tenant_id: str, version: int, proposal_id: str) -> bytes:
        if len(sealed) < NONCE_BYTES + _TAG_BYTES:
            raise WrongRootKey("sealed KEK does not open under this root key")
        aad = _encode(_SEAL_LABEL, tenant_id, version, proposal_id)
        try:
            kek = self._decrypting.decrypt(
                sealed[NONCE_BYTES:],
                mechanism=Mechanism.AES_GCM,
                mechanism_param=pkcs11.GCMParams(sealed[:NONCE_BYTES], aad),
            )
        except _DOES_NOT_OPEN:
            raise WrongRootKey("sealed KEK does not open under this root key") from None
        assert isinstance(kek, bytes)
        return kek

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
