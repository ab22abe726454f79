"""TEST FAKES: in-memory implementations of the device_auth ports, for unit tests only.

They honour each port's atomicity contract (set-if-absent, compare-and-set,
get-and-delete) the way a Redis or Kafka-backed adapter must, and add a few
inspection helpers the tests use. Not for production use.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from services.common.clock import Clock
from services.device_auth.domain.events import EventBody, IdentityEvent
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
E = TypeVar("E")


class MemoryRecords(Generic[R]):
    def __init__(self, key: Callable[[R], str]) -> None:
        self._key = key
        self.records: dict[str, R] = {}

    async def create(self, record: R) -> bool:
        if self._key(record) in self.records:
            return False
        self.records[self._key(record)] = record
        return True

    async def get(self, record_id: str) -> R | None:
        return self.records.get(record_id)

    async def replace(self, expected: R, new: R) -> bool:
        key = self._key(expected)
        if self._key(new) != key or self.records.get(key) != expected:
            return False
        self.records[key] = new
        return True

    async def delete(self, record_id: str) -> bool:
        return self.records.pop(record_id, None) is not None

    def all(self) -> list[R]:
        return list(self.records.values())


class MemoryAccounts(MemoryRecords[Account]):
    def __init__(self) -> None:
        super().__init__(lambda a: a.tenant_id)
        self.logins: dict[str, str] = {}

    async def claim_login(self, login: str, tenant_id: str) -> bool:
        return self.logins.setdefault(login, tenant_id) == tenant_id

    async def release_login(self, login: str, tenant_id: str) -> None:
        if self.logins.get(login) == tenant_id:
            del self.logins[login]

    async def tenant_for_login(self, login: str) -> str | None:
        return self.logins.get(login)


class MemoryInstalls(MemoryRecords[AppInstall]):
    def __init__(self) -> None:
        super().__init__(lambda i: i.install_id)

    async def list_for_tenant(self, tenant_id: str) -> list[AppInstall]:
        return [i for i in self.records.values() if i.tenant_id == tenant_id]


class MemoryCameras(MemoryRecords[Camera]):
    def __init__(self) -> None:
        super().__init__(lambda c: c.device_id)

    async def list_for_tenant(self, tenant_id: str) -> list[Camera]:
        return [c for c in self.records.values() if c.tenant_id == tenant_id]

    async def find_serial(self, tenant_id: str, serial: str) -> Camera | None:
        return next(
            (c for c in self.records.values() if c.tenant_id == tenant_id and c.serial == serial),
            None,
        )


class MemoryGrants(MemoryRecords[Grant]):
    def __init__(self) -> None:
        super().__init__(lambda g: g.grant_id)

    async def list_for_device(self, device_id: str) -> list[Grant]:
        return [g for g in self.records.values() if g.device_id == device_id]

    async def list_given(self, owner_tenant_id: str) -> list[Grant]:
        return [g for g in self.records.values() if g.owner_tenant_id == owner_tenant_id]

    async def list_received(self, grantee_tenant_id: str) -> list[Grant]:
        return [g for g in self.records.values() if g.grantee_tenant_id == grantee_tenant_id]

    async def list_expired(self, now: datetime, limit: int) -> list[Grant]:
        expired = [
            g for g in self.records.values() if g.expires_at is not None and g.expires_at <= now
        ]
        return sorted(expired, key=lambda g: (g.expires_at, g.grant_id))[:limit]


class MemoryClaimTokens:
    def __init__(self) -> None:
        self.tokens: dict[str, ClaimToken] = {}

    async def put(self, token: ClaimToken) -> None:
        self.tokens[token.token_hash] = token

    async def take(self, token_hash: str) -> ClaimToken | None:
        return self.tokens.pop(token_hash, None)

    async def delete_for_tenant(self, tenant_id: str) -> int:
        doomed = [h for h, t in self.tokens.items() if t.tenant_id == tenant_id]
        for token_hash in doomed:
            del self.tokens[token_hash]
        return len(doomed)


class MemoryPinAttempts:
    def __init__(self) -> None:
        self.states: dict[str, PinAttemptState] = {}

    async def get(self, device_id: str) -> PinAttemptState:
        return self.states.get(device_id, PinAttemptState())

    async def compare_and_set(
        self, device_id: str, expected: PinAttemptState, new: PinAttemptState
    ) -> bool:
        if self.states.get(device_id, PinAttemptState()) != expected:
            return False
        self.states[device_id] = new
        return True

    async def delete(self, device_id: str) -> None:
        self.states.pop(device_id, None)


class MemoryPasswordAttempts:
    """Fixed windows on the injected clock, like the Redis adapter's PX expiry."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.windows: dict[str, tuple[int, datetime]] = {}
        """key -> (tries, end of the window)."""

    async def add(self, key: str, window: timedelta) -> PasswordTries:
        now = self._clock.now()
        count, ends = self.windows.get(key, (0, now))
        if now >= ends:
            count, ends = 0, now + window
        self.windows[key] = (count + 1, ends)
        return PasswordTries(count + 1, ends - now)

    async def reset(self, key: str) -> None:
        self.windows.pop(key, None)

    def tries(self, key: str) -> int:
        count, ends = self.windows.get(key, (0, self._clock.now()))
        return count if self._clock.now() < ends else 0


class RecordedEvents:
    def __init__(self) -> None:
        self.published: list[IdentityEvent] = []

    async def publish(self, event: IdentityEvent) -> None:
        self.published.append(event)

    def bodies(self) -> list[EventBody]:
        return [e.body for e in self.published]

    def of(self, kind: type[E]) -> list[E]:
        return [e.body for e in self.published if isinstance(e.body, kind)]

    def clear(self) -> None:
        self.published.clear()
