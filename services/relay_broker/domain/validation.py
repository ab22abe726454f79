"""Checks of what the broker relays: it never parses media, but it refuses malformed
signaling at the door so neither side's WebRTC stack has to (INVALID_ARGUMENT)."""

from __future__ import annotations

import re
import uuid

from services.relay_broker.domain.errors import InvalidInput

MAX_SDP_BYTES = 64 * 1024
MAX_CANDIDATE_CHARS = 512
MAX_MID_CHARS = 32
MAX_FINGERPRINT_CHARS = 191
MAX_SIGNATURE_BYTES = 80  # DER ECDSA P-256 is at most 72 bytes
MAX_CHAIN_CERTIFICATES = 4
MAX_CERTIFICATE_BYTES = 8 * 1024
MAX_DECLINE_REASON = 128

# RFC 8866 line: one lower-case letter type, '=', printable value.
_SDP_LINE = re.compile(r"^[a-z]=[\x20-\x7e\t]*$")
# RFC 8839 candidate-attribute: foundation component transport priority address port
# "typ" type [raddr/rport] *(extension-att-name extension-att-value).
_CANDIDATE = re.compile(
    r"^candidate:[A-Za-z0-9+/]{1,32} [0-9]{1,3} (?i:udp|tcp) [0-9]{1,10} "
    r"[A-Za-z0-9.:\-]{1,253} [0-9]{1,5} typ (host|srflx|prflx|relay)"
    r"( raddr [A-Za-z0-9.:\-]{1,253} rport [0-9]{1,5})?"
    r"( [A-Za-z0-9\-]{1,32} [\x21-\x7e]{1,64})*$"
)
_MID = re.compile(r"^[\x21-\x7e]{0,32}$")
_FINGERPRINT = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){15,63}$")
_HASHES = frozenset({"sha-1", "sha-224", "sha-256", "sha-384", "sha-512"})
_FIRMWARE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_PIN = re.compile(r"^[0-9]{4}$")
# The canonical form `str(uuid.UUID(...))` gives: a match is a UUID, checked in one step.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def session_id(value: str, field: str = "session_id") -> str:
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a UUID") from None
    raise InvalidInput(f"{field} must be a UUID in lower-case canonical form")


def device_id(value: str, field: str = "device_id") -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise InvalidInput(f"{field} must be a camera id (lower-case letters, digits, '-')")
    return value


def pin(value: str) -> str:
    if value and not _PIN.fullmatch(value):
        raise InvalidInput("pin must be 4 digits")
    return value


def firmware_version(value: str) -> str:
    if not _FIRMWARE.fullmatch(value):
        raise InvalidInput("hello.firmware_version must be 1 to 32 chars of [A-Za-z0-9._-]")
    return value


def max_sessions(value: int) -> int:
    if not 1 <= value <= 8:
        raise InvalidInput("hello.max_sessions must be 1 to 8")
    return value


def decline_reason(value: str) -> str:
    if len(value) > MAX_DECLINE_REASON:
        raise InvalidInput(f"decline_reason must be at most {MAX_DECLINE_REASON} chars")
    return value


def sdp(text: str, *, from_app: bool, is_offer: bool) -> str:
    """An SDP offer (app) or answer (camera) that is well-formed enough to relay."""
    if from_app and not is_offer:
        raise InvalidInput("description.type must be OFFER: the app sends the offer")
    if not from_app and is_offer:
        raise InvalidInput("description.type must be ANSWER: the camera sends the answer")
    if not text or len(text) > MAX_SDP_BYTES:
        raise InvalidInput(f"description.sdp must be 1 byte to {MAX_SDP_BYTES // 1024} KiB")
    if not text.isascii():
        raise InvalidInput("description.sdp must be ASCII")
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    if lines[0] != "v=0":
        raise InvalidInput("description.sdp must start with 'v=0'")
    for number, line in enumerate(lines, 1):
        if not _SDP_LINE.fullmatch(line):
            raise InvalidInput(f"description.sdp line {number} is not '<type>=<value>'")
    kinds = {line[0] for line in lines}
    missing = {"o", "s", "t", "m"} - kinds
    if missing:
        raise InvalidInput(
            f"description.sdp lacks the {', '.join(sorted(missing))} line(s) every SDP needs"
        )
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise InvalidInput("description.sdp has no a=fingerprint line: DTLS-SRTP is required")
    return text


def candidate(line: str, mid: str) -> str:
    if len(line) > MAX_CANDIDATE_CHARS or not _CANDIDATE.fullmatch(line):
        raise InvalidInput(
            "candidate.candidate must be an RFC 8839 candidate attribute without 'a=', e.g. "
            "'candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ host'"
        )
    if not _MID.fullmatch(mid):
        raise InvalidInput(f"candidate.sdp_mid must be at most {MAX_MID_CHARS} visible chars")
    return line


def fingerprint(algorithm: str, value: str, signature: bytes, chain: list[bytes]) -> None:
    if algorithm not in _HASHES:
        raise InvalidInput(f"fingerprint.algorithm must be one of {', '.join(sorted(_HASHES))}")
    if len(value) > MAX_FINGERPRINT_CHARS or not _FINGERPRINT.fullmatch(value):
        raise InvalidInput("fingerprint.fingerprint must be upper-case hex pairs joined by ':'")
    if not 8 <= len(signature) <= MAX_SIGNATURE_BYTES:
        raise InvalidInput("fingerprint.signature must be a DER ECDSA P-256 signature")
    if not 1 <= len(chain) <= MAX_CHAIN_CERTIFICATES or any(
        not 1 <= len(c) <= MAX_CERTIFICATE_BYTES for c in chain
    ):
        raise InvalidInput(
            "fingerprint.certificate_chain must hold 1 to "
            f"{MAX_CHAIN_CERTIFICATES} DER certificates"
        )
