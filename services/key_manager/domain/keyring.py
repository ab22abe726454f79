"""The key hierarchy: a root key seals per-tenant KEK versions, which wrap per-clip data keys.

Plain Python: no gRPC, no Kafka. Unsealed KEKs exist only inside one call;
the keyring holds sealed material and unseals it when it needs it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_SEAL_LABEL = b"privacam-kek-seal-v1"
_WRAP_LABEL = b"privacam-dek-wrap-v1"


class KeyError_(Exception):  # noqa: N801 - "KeyError" is a builtin
    """Base of the domain's key errors."""


class WrongContext(KeyError_):
    """The wrapped key does not belong to the given tenant, device and clip (or was altered)."""


class UnknownVersion(KeyError_):
    """No such KEK version for the tenant."""


class VersionDestroyed(KeyError_):
    """The version was crypto-shredded: what it wrapped can never be opened again."""

    def __init__(self, destroyed_at: datetime) -> None:
        super().__init__(
            f"this key version was destroyed at {destroyed_at.isoformat()} (crypto-shredded); "
            "what it protected can never be decrypted"
        )
        self.destroyed_at = destroyed_at


class TenantGone(KeyError_):
    """The tenant's account was cancelled and all its keys destroyed."""

    def __init__(self) -> None:
        super().__init__(
            "this account was cancelled: its keys were destroyed and none are made again"
        )


def tenant_digest(tenant_id: str) -> bytes:
    """How records that outlive an account name it: SHA-256 of the tenant id."""
    return hashlib.sha256(tenant_id.encode()).digest()


class WrongRootKey(KeyError_):
    """Sealed material was sealed under another root key."""


def _encode(*fields: bytes | str | int) -> bytes:
    """Length-prefixed fields: no two different tuples share an encoding."""
    out = bytearray()
    for value in fields:
        raw = (
            value.encode()
            if isinstance(value, str)
            else (struct.pack(">Q", value) if isinstance(value, int) else value)
        )
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


@dataclass(frozen=True)
class KeyContext:
    """What a data key is bound to; its authenticated data when wrapped."""

    tenant_id: str
    device_id: str
    clip_id: str


class RootSealer(Protocol):
    """Seals and unseals KEKs under the root key: RootKey (a secret file) or a key kept in
    an HSM (adapters/pkcs11_root_key.py). Same sealed format either way."""

    @property
    def key_id(self) -> str: ...

    def seal(self, kek: bytes, tenant_id: str, version: int, proposal_id: str) -> bytes: ...

    def unseal(self, sealed: bytes, tenant_id: str, version: int, proposal_id: str) -> bytes: ...


class RootKey:
    """The top of the hierarchy, loaded from a mounted secret; it never leaves this process."""

    def __init__(self, material: bytes) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError(f"the root key must be {KEY_BYTES} bytes, got {len(material)}")
        self._aead = AESGCM(material)
        self.key_id = hashlib.sha256(material).hexdigest()[:16]

    def seal(self, kek: bytes, tenant_id: str, version: int, proposal_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = _encode(_SEAL_LABEL, tenant_id, version, proposal_id)
        return nonce + self._aead.encrypt(nonce, kek, aad)

    def unseal(self, sealed: bytes, tenant_id: str, version: int, proposal_id: str) -> bytes:
        aad = _encode(_SEAL_LABEL, tenant_id, version, proposal_id)
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise WrongRootKey("sealed KEK does not open under this root key") from None


@dataclass(frozen=True)
class SealedKek:
    tenant_id: str
    version: int
    period_start: datetime
    created_at: datetime
    proposal_id: str
    root_key_id: str
    sealed_key: bytes


def wrap(kek: bytes, data_key: bytes, version: int, context: KeyContext) -> bytes:
    """AES-256-GCM of the data key under the KEK, bound to version and context."""
    nonce = os.urandom(NONCE_BYTES)
    aad = _encode(_WRAP_LABEL, context.tenant_id, version, context.device_id, context.clip_id)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, aad)


def unwrap(kek: bytes, wrapped: bytes, version: int, context: KeyContext) -> bytes:
    aad = _encode(_WRAP_LABEL, context.tenant_id, version, context.device_id, context.clip_id)
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except InvalidTag:
        raise WrongContext("the key was wrapped for another context, or altered") from None


@dataclass
class TenantKeys:
    """One tenant's KEK versions, as materialized from the state log."""

    versions: dict[int, SealedKek] = field(default_factory=dict)
    destroyed: dict[int, tuple[datetime, datetime | None]] = field(default_factory=dict)
    """version -> (destroyed_at, period_start)."""

    def latest(self) -> int:
        """Highest version ever created or destroyed (0 if none): the next is latest + 1."""
        return max([0, *self.versions, *self.destroyed])


class Keyring:
    """All tenants' sealed KEKs. Applying the state log in order gives every replica
    the same keyring: the first proposal of a version wins, a destroyed version stays
    destroyed."""

    def __init__(self) -> None:
        self._tenants: dict[str, TenantKeys] = {}
        self._gone: set[bytes] = set()

    def tenant(self, tenant_id: str) -> TenantKeys:
        return self._tenants.get(tenant_id) or TenantKeys()

    def gone(self, tenant_id: str) -> bool:
        return bool(self._gone) and tenant_digest(tenant_id) in self._gone

    def apply_tenant_gone(self, digest: bytes) -> None:
        """Forget a cancelled tenant (known here only by its digest) for good."""
        self._gone.add(digest)
        for tenant_id in [t for t in self._tenants if tenant_digest(t) == digest]:
            del self._tenants[tenant_id]

    def apply_kek(self, kek: SealedKek) -> bool:
        """Apply a proposal; True if it is (now) the version's KEK."""
        if self.gone(kek.tenant_id):
            return False
        keys = self._tenants.setdefault(kek.tenant_id, TenantKeys())
        if kek.version in keys.destroyed:
            return False
        winner = keys.versions.setdefault(kek.version, kek)
        return winner.proposal_id == kek.proposal_id

    def apply_destroyed(
        self, tenant_id: str, version: int, destroyed_at: datetime, period_start: datetime | None
    ) -> None:
        if self.gone(tenant_id):
            return
        keys = self._tenants.setdefault(tenant_id, TenantKeys())
        dropped = keys.versions.pop(version, None)
        start = dropped.period_start if dropped else period_start
        keys.destroyed.setdefault(version, (destroyed_at, start))

    def forget_tenant(self, tenant_id: str) -> None:
        self._tenants.pop(tenant_id, None)

    def sealed(self, tenant_id: str, version: int) -> SealedKek:
        if self.gone(tenant_id):
            raise TenantGone()
        keys = self.tenant(tenant_id)
        if version in keys.destroyed:
            raise VersionDestroyed(keys.destroyed[version][0])
        try:
            return keys.versions[version]
        except KeyError:
            raise UnknownVersion(f"no key version {version}") from None

    def tenant_count(self) -> int:
        return len(self._tenants)
