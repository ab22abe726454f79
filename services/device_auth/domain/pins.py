"""Camera PINs: a salted slow hash and the anti-guessing policy.

Hash: argon2id with the password parameters (`SecretHasher`). A 4-digit PIN
has only 10,000 values, so no hash makes a leaked hash safe for long; what a
slow, per-camera salted hash buys is that each camera costs an offline
attacker minutes of work (10,000 x ~44 ms) instead of one precomputed table.
The real protection is online: the attempt policy below.

Policy (per camera, not per caller, so rotating identities gains nothing):

- the first 3 wrong tries in a row cost nothing (typos happen);
- then exponential backoff: 1 s after the 3rd, 2 s, 4 s, ... capped at 60 s;
- the 10th wrong try in a row locks PIN checks for 1 hour and tells the
  owner (PinLockedOut); each further wrong try after a lockout doubles it,
  up to 24 hours. A brute force therefore gets 10 checks, then about one a
  day, and the owner hears of every lockout.
- a correct PIN resets the count; so does the owner setting, changing or
  clearing the PIN (clearing with the account password is the way out of a
  lockout for an owner who forgot the PIN).

Every try is counted *before* the hash is checked, by one compare-and-set on
the camera's state: concurrent guesses each take their own count (and thus
their own backoff), so firing many at once gains nothing.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import timedelta

from services.common.clock import Clock
from services.device_auth.domain.errors import Conflict
from services.device_auth.domain.passwords import SecretHasher
from services.device_auth.domain.ports import PinAttempts
from services.device_auth.domain.records import PinAttemptState
from services.device_auth.domain.validation import is_pin

_MAX_EXPONENT = 20
_CAS_TRIES = 16


@dataclass(frozen=True)
class PinPolicy:
    free_tries: int = 3
    """Wrong tries in a row before any backoff."""
    first_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(seconds=60)
    lockout_after: int = 10
    """Wrong tries in a row that lock the camera's PIN checks (and tell the owner)."""
    lockout: timedelta = timedelta(hours=1)
    max_lockout: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if not 0 <= self.free_tries < self.lockout_after:
            raise ValueError("free_tries must be below lockout_after")

    def wait_after(self, failures: int) -> timedelta:
        """How long no try is checked after `failures` wrong tries in a row."""
        if failures < self.free_tries:
            return timedelta(0)
        if failures < self.lockout_after:
            doubling = min(failures - self.free_tries, _MAX_EXPONENT)
            return min(self.first_backoff * (1 << doubling), self.max_backoff)
        doubling = min(failures - self.lockout_after, _MAX_EXPONENT)
        return min(self.lockout * (1 << doubling), self.max_lockout)

    def locks(self, failures: int) -> bool:
        return failures >= self.lockout_after


class PinCheckResult(enum.Enum):
    OK = "ok"
    NOT_SET = "not_set"
    WRONG = "wrong"
    """Did not match; the try was counted."""
    LOCKED_OUT = "locked_out"
    """Refused without checking (backoff or lockout) until retry_after."""


@dataclass(frozen=True)
class PinCheck:
    result: PinCheckResult
    retry_after: timedelta = timedelta(0)
    """For WRONG and LOCKED_OUT: how long before another try is checked."""
    failures: int = 0
    """Wrong tries in a row, this one included."""
    locked: bool = False
    """The camera's PIN checks are locked out (not just backing off)."""
    lockout_started: bool = False
    """This wrong try started a lockout: the owner must be told."""


class PinGuard:
    """Checks PINs under the attempt policy; the only code that verifies a PIN hash."""

    def __init__(
        self, attempts: PinAttempts, hasher: SecretHasher, clock: Clock, policy: PinPolicy
    ) -> None:
        self._attempts = attempts
        self._hasher = hasher
        self._clock = clock
        self.policy = policy

    def hash(self, pin: str) -> str:
        return self._hasher.hash(pin)

    async def check(self, device_id: str, pin_hash: str, pin: str) -> PinCheck:
        claimed = await self._count_try(device_id)
        if isinstance(claimed, PinCheck):
            return claimed
        # Malformed input is a wrong try like any other, checked at full cost so its
        # answer takes the same time.
        verification = await asyncio.to_thread(self._hasher.verify, pin_hash, pin)
        if verification.ok and is_pin(pin):
            # Reset only if no other try was counted meanwhile: a guess racing the
            # owner's correct PIN stays counted.
            await self._attempts.compare_and_set(device_id, claimed, PinAttemptState())
            return PinCheck(PinCheckResult.OK)
        failures = claimed.failures
        return PinCheck(
            PinCheckResult.WRONG,
            retry_after=self.policy.wait_after(failures),
            failures=failures,
            locked=self.policy.locks(failures),
            lockout_started=self.policy.locks(failures),
        )

    async def reset(self, device_id: str) -> None:
        await self._attempts.delete(device_id)

    async def _count_try(self, device_id: str) -> PinAttemptState | PinCheck:
        """Count this try as wrong before checking it, or refuse it during a backoff."""
        for _ in range(_CAS_TRIES):
            state = await self._attempts.get(device_id)
            now = self._clock.now()
            if state.next_try_at is not None and now < state.next_try_at:
                return PinCheck(
                    PinCheckResult.LOCKED_OUT,
                    retry_after=state.next_try_at - now,
                    failures=state.failures,
                    locked=self.policy.locks(state.failures),
                )
            failures = state.failures + 1
            claimed = PinAttemptState(failures, now + self.policy.wait_after(failures))
            if await self._attempts.compare_and_set(device_id, state, claimed):
                return claimed
        raise Conflict("too many PIN checks at once on this camera; try again in a moment")
