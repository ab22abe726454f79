"""Ports of the device_auth domain: storage and events, implemented by adapters.

Every store is small, async and maps onto a key-value store with atomic
operations: `create` is set-if-absent, `replace` is compare-and-set on the
whole record (a Lua script or WATCH/MULTI in Redis, a single writer per key
over a compacted Kafka topic), `take` is get-and-delete. Read-modify-write in
the domain always goes through `replace`, so two concurrent changes never
silently overwrite each other, and a record deleted meanwhile (a revoked
camera) is never brought back by a late update.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from services.device_auth.domain.events import IdentityEvent
from services.device_auth.domain.records import (
    Account,
    AppInstall,
    Camera,
    ClaimToken,
    Grant,
    PasswordTries,
    PinAttemptState,
)

R = TypeVar("R")


class RecordStore(Protocol[R]):
    """Records of one kind, each under its own id."""

    async def create(self, record: R) -> bool:
        """Store a new record; False (and nothing written) if its id is taken."""
        ...

    async def get(self, record_id: str) -> R | None: ...

    async def replace(self, expected: R, new: R) -> bool:
        """Swap `expected` for `new` atomically; False if the stored record is no longer
        `expected` (changed or deleted meanwhile)."""
        ...

    async def delete(self, record_id: str) -> bool:
        """Remove the record; False if there was none (deleting twice is harmless)."""
        ...


class Accounts(RecordStore[Account], Protocol):
    """Accounts by tenant id, plus the unique login index."""

    async def claim_login(self, login: str, tenant_id: str) -> bool:
        """Point `login` at the tenant if no one holds it (set-if-absent)."""
        ...

    async def release_login(self, login: str, tenant_id: str) -> None:
        """Free `login` if it still points at this tenant (delete-if-equal)."""
        ...

    async def tenant_for_login(self, login: str) -> str | None: ...


class Installs(RecordStore[AppInstall], Protocol):
    """App installs by install id."""

    async def list_for_tenant(self, tenant_id: str) -> list[AppInstall]: ...


class Cameras(RecordStore[Camera], Protocol):
    """Cameras by device id (globally unique), indexed by tenant and by (tenant, serial)."""

    async def list_for_tenant(self, tenant_id: str) -> list[Camera]: ...

    async def find_serial(self, tenant_id: str, serial: str) -> Camera | None:
        """The tenant's camera with this hardware serial, if any."""
        ...


class Grants(RecordStore[Grant], Protocol):
    """Grants by grant id, indexed by camera, owner and grantee."""

    async def list_for_device(self, device_id: str) -> list[Grant]: ...

    async def list_given(self, owner_tenant_id: str) -> list[Grant]: ...

    async def list_received(self, grantee_tenant_id: str) -> list[Grant]: ...

    async def list_expired(self, now: datetime, limit: int) -> list[Grant]:
        """Up to `limit` grants whose `expires_at` is at or before `now`, soonest first."""
        ...


class ClaimTokens(Protocol):
    """Claim tokens by hash; entries may expire from the store at `expires_at`."""

    async def put(self, token: ClaimToken) -> None: ...

    async def take(self, token_hash: str) -> ClaimToken | None:
        """Get and delete in one atomic step: of two concurrent takes, one gets None."""
        ...

    async def delete_for_tenant(self, tenant_id: str) -> int:
        """Drop every unused token of the tenant; how many there were."""
        ...


class PinAttempts(Protocol):
    """Wrong-PIN counters, one per camera."""

    async def get(self, device_id: str) -> PinAttemptState:
        """The camera's state; a fresh `PinAttemptState()` when none is stored."""
        ...

    async def compare_and_set(
        self, device_id: str, expected: PinAttemptState, new: PinAttemptState
    ) -> bool:
        """Store `new` if the current state equals `expected` (absent equals the fresh
        state); False otherwise."""
        ...

    async def delete(self, device_id: str) -> None: ...


class PasswordAttempts(Protocol):
    """Password tries per account, counted in fixed windows shared by every replica.

    Keys are chosen by the domain (`tenant/<id>`, or `login/<sha256>` for a login no
    account holds) and hold no login in clear; an adapter stores only a hash of them.
    """

    async def add(self, key: str, window: timedelta) -> PasswordTries:
        """Count one try, atomically: of N concurrent adds each sees its own count. The
        first try opens a window of `window`; when it ends the count starts over."""
        ...

    async def reset(self, key: str) -> None:
        """Forget the tries (a correct password was given)."""
        ...


class IdentityEvents(Protocol):
    async def publish(self, event: IdentityEvent) -> None:
        """Make the event durable on the identity topic (keyed by its tenant)."""
        ...


class AccountReads(Protocol):
    """The household's access log, as device_auth writes to it: a service's read of a
    household's account is logged there before it is answered."""

    async def record_export_read(self, tenant_id: str, export_id: str, reader: str) -> None:
        """Log that service `reader` read the tenant's account for export `export_id`;
        raises when the log cannot take it (then nothing may be read)."""
        ...


class PrivacyLog(Protocol):
    """The household's access log, as device_auth writes a privacy-mode change to it."""

    async def record_privacy_change(
        self, tenant_id: str, device_id: str, install_id: str, statement_sha256: bytes
    ) -> None:
        """Log that the owner's app install changed the camera's privacy mode with the
        statement of this digest; raises when the log cannot take it (nothing changes)."""
        ...
