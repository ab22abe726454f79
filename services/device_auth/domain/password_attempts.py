"""The limit on password guessing, per account.

Every password check (SignIn by login; VerifyPassword, ClearPin with the
password and ChangePassword by tenant) goes through one `PasswordGuard`:

- each try is counted *before* the hash is checked, in a window shared by every
  replica (`PasswordAttempts`), so firing many guesses at once gains nothing;
- a try beyond `max_failures` in the window is refused without any check
  (`TooManyAttempts`: RESOURCE_EXHAUSTED, "try again in N s") until the window
  ends: 5 guesses per 15 minutes by default, about 480 a day;
- a correct password resets the count.

The counter is the account's (its tenant), whichever call checks the password,
so a stolen app certificate guessing through ChangePassword or ClearPin spends
the same budget as someone guessing through SignIn. A login no account holds is
counted under a hash of the login, so an unknown login and a known one get the
same answers after the same work, and the limit says nothing about which exists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from services.device_auth.domain.errors import TooManyAttempts, seconds
from services.device_auth.domain.ports import PasswordAttempts


@dataclass(frozen=True)
class PasswordPolicy:
    max_failures: int = 5
    """Wrong passwords per account in one window before checks stop."""
    window: timedelta = timedelta(minutes=15)
    """Starts at the first try counted; the count starts over when it ends."""

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.window < timedelta(seconds=1):
            raise ValueError("window must be at least one second")


def tenant_key(tenant_id: str) -> str:
    """The counter of an account."""
    return f"tenant/{tenant_id}"


def login_key(login: str) -> str:
    """The counter of a login no account holds (never the login in clear)."""
    return f"login/{hashlib.sha256(login.encode()).hexdigest()}"


class PasswordGuard:
    def __init__(self, attempts: PasswordAttempts, policy: PasswordPolicy) -> None:
        self._attempts = attempts
        self._policy = policy

    async def admit(self, key: str) -> None:
        """Count a try about to be checked; TooManyAttempts (and nothing checked) when
        the account's budget for this window is spent."""
        tries = await self._attempts.add(key, self._policy.window)
        if tries.count > self._policy.max_failures:
            wait = max(tries.window_left, timedelta(seconds=1))
            raise TooManyAttempts(f"too many wrong passwords; try again in {seconds(wait)}", wait)

    async def succeeded(self, key: str) -> None:
        """The password was right: the count starts over."""
        await self._attempts.reset(key)
