"""What the broker refuses to relay, and the TURN credentials it mints."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from services.relay_broker.domain import turn, validation
from services.relay_broker.domain.errors import InvalidInput
from services.relay_broker.domain.model import Side

OFFER = (
    "v=0\r\n"
    "o=- 3912 3912 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 97\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=recvonly\r\n"
    "a=mid:0\r\n"
    "a=rtpmap:97 VP8/90000\r\n"
    "a=candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ host\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=ice-pwd:0123456789abcdef012345\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
    "a=setup:actpass\r\n"
)


def test_a_real_offer_passes() -> None:
    assert validation.sdp(OFFER, from_app=True, is_offer=True) == OFFER


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        ("", "1 byte to 64 KiB"),
        ("v=0\r\n" + "a=x\r\n" * 20_000, "1 byte to 64 KiB"),
        ("hello", "start with 'v=0'"),
        (OFFER.replace("s=-", "s=é"), "ASCII"),
        (OFFER.replace("a=mid:0", "mid 0"), "line 9"),
        (OFFER.replace("m=video 9 UDP/TLS/RTP/SAVPF 97\r\n", ""), "lacks the m line"),
        ("\r\n".join(x for x in OFFER.split("\r\n") if "fingerprint" not in x), "DTLS-SRTP"),
    ],
)
def test_malformed_sdp_is_refused(sdp: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validation.sdp(sdp, from_app=True, is_offer=True)


def test_each_side_sends_its_own_kind_of_description() -> None:
    with pytest.raises(InvalidInput, match="the app sends the offer"):
        validation.sdp(OFFER, from_app=True, is_offer=False)
    with pytest.raises(InvalidInput, match="the camera sends the answer"):
        validation.sdp(OFFER, from_app=False, is_offer=True)


@pytest.mark.parametrize(
    "line",
    [
        "candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ host",
        "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 "
        "rport 0 generation 0 ufrag sXCb network-cost 999",
        "candidate:3 1 UDP 16777215 127.0.0.1 49170 typ relay raddr 127.0.0.1 rport 5000",
        "candidate:4 1 TCP 1518214911 2001:db8::1 9 typ host tcptype active",
    ],
)
def test_real_candidates_pass(line: str) -> None:
    assert validation.candidate(line, "0") == line


@pytest.mark.parametrize(
    "line",
    [
        "a=candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ host",
        "candidate:1 1 UDP x y z",
        "candidate:1 1 SCTP 2122260223 192.0.2.1 54400 typ host",
        "candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ evil",
        "candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ host\r\na=inject",
        "candidate:1 1 UDP 2122260223 192.0.2.1 54400 typ host " + "x y " * 200,
    ],
)
def test_malformed_candidates_are_refused(line: str) -> None:
    with pytest.raises(InvalidInput, match="RFC 8839"):
        validation.candidate(line, "0")


def test_fingerprint_shape_is_checked() -> None:
    good = ":".join(["0A"] * 32)
    validation.fingerprint("sha-256", good, b"\x30" * 70, [b"\x30" * 500])
    with pytest.raises(InvalidInput, match="algorithm"):
        validation.fingerprint("md5", good, b"\x30" * 70, [b"\x30" * 500])
    with pytest.raises(InvalidInput, match="upper-case hex"):
        validation.fingerprint("sha-256", good.lower(), b"\x30" * 70, [b"\x30" * 500])
    with pytest.raises(InvalidInput, match="signature"):
        validation.fingerprint("sha-256", good, b"", [b"\x30" * 500])
    with pytest.raises(InvalidInput, match="certificate_chain"):
        validation.fingerprint("sha-256", good, b"\x30" * 70, [])


def test_ids_and_pins() -> None:
    sid = "3f1b2c4d-0000-4000-8000-000000000000"
    assert validation.session_id(sid) == sid
    for bad in ("", "not-a-uuid", sid + "\n", sid[:-1] + "g"):
        with pytest.raises(InvalidInput, match=r"session_id must be a UUID$"):
            validation.session_id(bad)
    # UUIDs all, but not as the broker writes them: one spelling per session.
    for other in (sid.upper(), "{" + sid + "}", "urn:uuid:" + sid, sid.replace("-", "")):
        with pytest.raises(InvalidInput, match="lower-case canonical form"):
            validation.session_id(other)
    assert validation.pin("") == ""
    with pytest.raises(InvalidInput, match="4 digits"):
        validation.pin("12a4")


def test_turn_credentials_follow_the_turn_rest_scheme() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, 500_000, tzinfo=UTC)
    grant = turn.issue(b"s" * 32, ("turn:127.0.0.1:3478",), "sid-1", Side.APP, now, 600)
    expiry = int(datetime(2026, 11, 24, 12, 10, tzinfo=UTC).timestamp())
    assert grant.username == f"{expiry}:sid-1.app"
    expected = base64.b64encode(
        hmac.new(b"s" * 32, grant.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert grant.password == expected
    assert grant.expires_at == datetime(2026, 11, 24, 12, 10, tzinfo=UTC)
    assert turn.session_of(grant.username) == "sid-1"
    assert turn.session_of("1700000000:someone-else") is None
