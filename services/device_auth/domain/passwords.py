"""argon2id hashing for account passwords (and, with the same code, camera PINs).

Parameters for production, measured on the 2-core development server with
argon2-cffi 25.1 (median of 7 verifies):

    time_cost=3, memory=64 MiB, parallelism=4 (the library default)  ~148 ms  too slow
    time_cost=2, memory=19 MiB, parallelism=1 (OWASP minimum)          ~27 ms
    time_cost=2, memory=32 MiB, parallelism=2 (chosen)                 ~44 ms

The chosen set stays under the 50 ms budget while costing an attacker more
memory than the OWASP minimum; parallelism 2 matches the two cores. Each
hash in flight holds 32 MiB, which is why sign-in is rate-limited upstream.
Hashes carry their parameters, so raising them later rehashes passwords on
the next successful sign-in (`Verification.rehashed`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Argon2Parameters:
    time_cost: int
    """Passes over memory."""
    memory_kib: int
    """Memory per hash, KiB."""
    parallelism: int
    """Lanes (threads) per hash."""


PRODUCTION = Argon2Parameters(time_cost=2, memory_kib=32 * 1024, parallelism=2)
"""~44 ms per hash on 2 cores; see the module docstring for the measurements."""


@dataclass(frozen=True)
class Verification:
    ok: bool
    rehashed: str | None = None
    """A new hash under the current parameters, when the stored one used older ones."""


class SecretHasher:
    """Salted argon2id hashes; verification compares in constant time (libargon2)."""

    def __init__(self, parameters: Argon2Parameters = PRODUCTION) -> None:
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=Type.ID,
        )
        # Checked when the login is unknown, so a wrong login costs the same
        # time as a wrong password and the two cannot be told apart.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, stored: str, secret: str) -> Verification:
        try:
            self._hasher.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return Verification(ok=False)
        if self._hasher.check_needs_rehash(stored):
            return Verification(ok=True, rehashed=self._hasher.hash(secret))
        return Verification(ok=True)

    def verify_nothing(self, secret: str) -> Verification:
        """Spend a real verification's time and fail: the answer for an unknown login."""
        self.verify(self._dummy, secret)
        return Verification(ok=False)
