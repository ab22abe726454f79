"""Input rules of the identity API, as the proto field comments state them."""

from __future__ import annotations

import uuid

import pytest

from services.device_auth.domain import validation
from services.device_auth.domain.errors import InvalidInput


@pytest.mark.parametrize("login", ["abc", "alice.smith", "bob_2", "x-y-z", "a" * 64])
def test_a_login_is_3_to_64_lower_case_letters_digits_dots_underscores_or_dashes(
    login: str,
) -> None:
    assert validation.login(login) == login


@pytest.mark.parametrize(
    "login", ["ab", "a" * 65, "Alice", "alice smith", "alice@example.org", "ålice", "", "bob\n"]
)
def test_any_other_login_is_invalid_input_saying_the_rule(login: str) -> None:
    with pytest.raises(InvalidInput, match="3 to 64 characters"):
        validation.login(login)


def test_a_new_password_is_12_to_256_bytes_of_utf8() -> None:
    assert validation.new_password("x" * 12)
    assert validation.new_password("é" * 128)  # 256 bytes
    with pytest.raises(InvalidInput, match="12 to 256 bytes"):
        validation.new_password("x" * 11)
    with pytest.raises(InvalidInput, match="this one is 258"):
        validation.new_password("é" * 129)


def test_a_password_being_checked_has_only_the_upper_bound() -> None:
    assert validation.given_password("short")
    with pytest.raises(InvalidInput, match="at most 256 bytes"):
        validation.given_password("x" * 257)


def test_unencodable_text_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        validation.new_password("\ud800" * 12)


def test_a_label_is_empty_or_at_most_64_printable_characters() -> None:
    assert validation.label("") == ""
    assert validation.label("Küche 📷") == "Küche 📷"
    with pytest.raises(InvalidInput, match="at most 64"):
        validation.label("x" * 65)
    with pytest.raises(InvalidInput, match="printable"):
        validation.label("line\nbreak")


@pytest.mark.parametrize("serial", ["A", "SN-0001-xyz", "Z" * 64])
def test_a_serial_is_1_to_64_letters_digits_or_dashes(serial: str) -> None:
    assert validation.serial(serial) == serial


@pytest.mark.parametrize(
    "serial", ["", "Z" * 65, "SN 1", "SN_1", "SN/1", "\uff33\uff2e1"], ids=repr
)
def test_any_other_serial_is_invalid_input(serial: str) -> None:
    with pytest.raises(InvalidInput, match="serial"):
        validation.serial(serial)


def test_server_generated_uuids_are_valid_ids_and_others_are_not() -> None:
    generated = str(uuid.uuid4())
    assert validation.identifier(generated, "device_id") == generated
    for bad in ["", generated.upper(), "../etc", "a" * 64, "-leading"]:
        with pytest.raises(InvalidInput, match="device_id"):
            validation.identifier(bad, "device_id")


@pytest.mark.parametrize("pin", ["0000", "1234", "9999"])
def test_a_pin_is_exactly_four_ascii_digits(pin: str) -> None:
    assert validation.pin(pin) == pin


@pytest.mark.parametrize("pin", ["", "123", "12345", "12a4", "١٢٣٤", " 123", "123\n"])
def test_any_other_pin_is_invalid_input(pin: str) -> None:
    assert not validation.is_pin(pin)
    with pytest.raises(InvalidInput, match="exactly 4 digits"):
        validation.pin(pin)
