"""A small blocking TURN client over UDP (RFC 8656, long-term credentials, RFC 8489 STUN),
for tests that ask a coturn what it will and will not relay to.

Written by hand although aioice (already installed through aiortc) has a TURN client: aioice
cannot ask for an IPv6 relayed address (it has no REQUESTED-ADDRESS-FAMILY attribute, RFC 8656
section 18.1), it retries and refreshes on its own in background tasks, and it hides the error
code of a refused CreatePermission behind its retry logic. A test of refusals needs each
request sent once and each error code seen as the server sent it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")


class Method(IntEnum):
    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class Attr(IntEnum):
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    REQUESTED_TRANSPORT = 0x0019
    XOR_MAPPED_ADDRESS = 0x0020
    FINGERPRINT = 0x8028


_SUCCESS = 0x0100
_ERROR = 0x0110
_FAMILIES = {4: 0x01, 6: 0x02}
UDP = 17
# A request's attributes, made for its transaction id (XOR-PEER-ADDRESS is XORed with it).
Attributes = Callable[[bytes], list[tuple[int, bytes]]]


class TurnError(Exception):
    """The server answered with an error response."""

    def __init__(self, method: Method, code: int, reason: str) -> None:
        super().__init__(f"{method.name}: {code} {reason}")
        self.code = code
        self.reason = reason


@dataclass
class Response:
    success: bool
    attributes: dict[int, bytes] = field(default_factory=dict)
    transaction_id: bytes = b""

    def error(self) -> tuple[int, str]:
        value = self.attributes[Attr.ERROR_CODE]
        return (value[2] & 0x07) * 100 + value[3], value[4:].decode(errors="replace")

    def address(self, attr: Attr) -> tuple[str, int]:
        return _unxor_address(self.attributes[attr], self.transaction_id)


def _xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    ip = ipaddress.ip_address(host)
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    packed = bytes(a ^ b for a, b in zip(ip.packed, key, strict=False))
    return struct.pack("!BBH", 0, _FAMILIES[ip.version], port ^ (MAGIC_COOKIE >> 16)) + packed


def _unxor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    _, family, xport = struct.unpack("!BBH", value[:4])
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    raw = bytes(a ^ b for a, b in zip(value[4:], key, strict=False))
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = (
        ipaddress.IPv4Address(raw[:4]) if family == 0x01 else ipaddress.IPv6Address(raw[:16])
    )
    return str(ip), xport ^ (MAGIC_COOKIE >> 16)


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


def _encode(
    method: Method, transaction_id: bytes, attributes: list[tuple[int, bytes]], key: bytes | None
) -> bytes:
    body = b"".join(_attribute(kind, value) for kind, value in attributes)
    if key is not None:
        # MESSAGE-INTEGRITY covers the header with a length that already counts it.
        header = HEADER.pack(method, len(body) + 24, MAGIC_COOKIE, transaction_id)
        digest = hmac.new(key, header + body, hashlib.sha1).digest()
        body += _attribute(Attr.MESSAGE_INTEGRITY, digest)
    header = HEADER.pack(method, len(body) + 8, MAGIC_COOKIE, transaction_id)
    crc = (zlib.crc32(header + body) ^ 0x5354554E) & 0xFFFFFFFF
    body += _attribute(Attr.FINGERPRINT, struct.pack("!I", crc))
    return HEADER.pack(method, len(body), MAGIC_COOKIE, transaction_id) + body


def _decode(data: bytes, method: Method, transaction_id: bytes) -> Response | None:
    if len(data) < HEADER.size:
        return None
    kind, length, cookie, tid = HEADER.unpack(data[: HEADER.size])
    if cookie != MAGIC_COOKIE or tid != transaction_id or kind & ~0x0110 != method:
        return None
    attributes: dict[int, bytes] = {}
    position = HEADER.size
    while position + 4 <= HEADER.size + length:
        attr, size = struct.unpack("!HH", data[position : position + 4])
        attributes.setdefault(attr, data[position + 4 : position + 4 + size])
        position += 4 + size + (-size % 4)
    return Response(kind & 0x0110 == _SUCCESS, attributes, tid)


class TurnClient:
    """One client socket, one allocation: allocate, then ask for permissions and channels.

    Each request is sent until answered (UDP may drop it) and its error comes back as
    TurnError with the server's code: 403 Forbidden IP, 443 Peer Address Family Mismatch...
    """

    def __init__(self, server: tuple[str, int], username: str, password: str) -> None:
        self.server = server
        self.username = username
        self.password = password
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)
        self.realm: bytes | None = None
        self.nonce: bytes | None = None
        self.relayed: tuple[str, int] | None = None

    def close(self) -> None:
        if self.relayed is not None:
            # A lifetime of 0 frees the allocation; coturn frees it on expiry anyway.
            with contextlib.suppress(TurnError, TimeoutError):
                self.request(Method.REFRESH, lambda _: [(Attr.LIFETIME, struct.pack("!I", 0))])
            self.relayed = None
        self.sock.close()

    def __enter__(self) -> TurnClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _key(self) -> bytes:
        assert self.realm is not None
        text = f"{self.username}:{self.realm.decode()}:{self.password}"
        return hashlib.md5(text.encode(), usedforsecurity=False).digest()

    def _transact(self, method: Method, attributes: Attributes, authenticated: bool) -> Response:
        transaction_id = os.urandom(12)
        body = attributes(transaction_id)
        key = None
        if authenticated:
            assert self.realm is not None
            assert self.nonce is not None
            body += [
                (Attr.USERNAME, self.username.encode()),
                (Attr.REALM, self.realm),
                (Attr.NONCE, self.nonce),
            ]
            key = self._key()
        message = _encode(method, transaction_id, body, key)
        for _ in range(7):  # about 3.5 s in all
            self.sock.sendto(message, self.server)
            try:
                while True:
                    response = _decode(self.sock.recv(2048), method, transaction_id)
                    if response is not None:
                        return response
            except TimeoutError:
                continue
        raise TimeoutError(f"no answer to {method.name} from {self.server}")

    def request(self, method: Method, attributes: Attributes) -> Response:
        """An authenticated request; a 401 (first request) or 438 (stale nonce) is answered
        once with the realm and nonce the server sent."""
        response = self._transact(method, attributes, self.nonce is not None)
        if not response.success and response.error()[0] in (401, 438):
            self.realm = response.attributes.get(Attr.REALM, self.realm)
            self.nonce = response.attributes[Attr.NONCE]
            response = self._transact(method, attributes, True)
        if not response.success:
            raise TurnError(method, *response.error())
        return response

    def binding(self) -> tuple[str, int]:
        """A STUN Binding (no credentials): the client's address as the server sees it."""
        response = self._transact(Method.BINDING, lambda _: [], authenticated=False)
        return response.address(Attr.XOR_MAPPED_ADDRESS)

    def allocate(self, family: int = 4) -> tuple[str, int]:
        """A UDP relayed address of the given IP family (4 or 6)."""
        attributes = [
            (Attr.REQUESTED_TRANSPORT, struct.pack("!B3x", UDP)),
            (Attr.REQUESTED_ADDRESS_FAMILY, struct.pack("!B3x", _FAMILIES[family])),
            (Attr.LIFETIME, struct.pack("!I", 600)),
        ]
        response = self.request(Method.ALLOCATE, lambda _: list(attributes))
        self.relayed = response.address(Attr.XOR_RELAYED_ADDRESS)
        return self.relayed

    def create_permission(self, host: str, port: int = 9) -> None:
        """The peer's port means nothing to a permission (RFC 8656 section 9)."""
        self.request(
            Method.CREATE_PERMISSION,
            lambda tid: [(Attr.XOR_PEER_ADDRESS, _xor_address(host, port, tid))],
        )

    def channel_bind(self, number: int, host: str, port: int = 9) -> None:
        """Channel numbers are 0x4000-0x4FFF (RFC 8656 section 12)."""
        self.request(
            Method.CHANNEL_BIND,
            lambda tid: [
                (Attr.CHANNEL_NUMBER, struct.pack("!H2x", number)),
                (Attr.XOR_PEER_ADDRESS, _xor_address(host, port, tid)),
            ],
        )
