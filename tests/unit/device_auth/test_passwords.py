"""argon2id hashing of secrets: salted, verifiable, upgradable, and blind to unknown logins."""

from __future__ import annotations

from services.device_auth.domain.passwords import (
    PRODUCTION,
    Argon2Parameters,
    SecretHasher,
    Verification,
)
from tests.unit.device_auth.conftest import CHEAP


def test_production_parameters_are_argon2id_32_mib_2_passes_2_lanes() -> None:
    assert Argon2Parameters(time_cost=2, memory_kib=32768, parallelism=2) == PRODUCTION


def test_a_hash_is_argon2id_salted_and_never_contains_the_secret() -> None:
    hasher = SecretHasher(CHEAP)
    first, second = hasher.hash("correct horse battery"), hasher.hash("correct horse battery")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh salt each time
    assert "correct horse" not in first


def test_the_right_secret_verifies_and_a_wrong_one_does_not() -> None:
    hasher = SecretHasher(CHEAP)
    stored = hasher.hash("correct horse battery")
    assert hasher.verify(stored, "correct horse battery").ok
    assert not hasher.verify(stored, "correct horse batterY").ok


def test_a_damaged_hash_fails_verification_instead_of_raising() -> None:
    assert not SecretHasher(CHEAP).verify("$argon2id$garbage", "anything").ok


def test_a_hash_made_with_older_parameters_is_rehashed_on_a_successful_verify() -> None:
    old = SecretHasher(CHEAP).hash("correct horse battery")
    stronger = SecretHasher(Argon2Parameters(time_cost=2, memory_kib=16, parallelism=1))
    verification = stronger.verify(old, "correct horse battery")
    assert verification.ok
    assert verification.rehashed is not None
    assert "t=2" in verification.rehashed
    assert stronger.verify(verification.rehashed, "correct horse battery").rehashed is None
    assert stronger.verify(old, "wrong").rehashed is None


def test_verifying_for_an_unknown_login_spends_a_real_verification_and_fails() -> None:
    calls: list[str] = []

    class Spy(SecretHasher):
        def verify(self, stored: str, secret: str) -> Verification:
            calls.append(stored)
            return super().verify(stored, secret)

    assert not Spy(CHEAP).verify_nothing("any password at all").ok
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")
