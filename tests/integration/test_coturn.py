"""coturn with the chart's PRODUCTION configuration refuses to relay into private networks.

The local stack's coturn allows loopback peers (its test peers live on 127.0.0.1), so it
proves nothing about production. This module starts a second coturn from the Debian
`turnserver` binary with charts/privacam/files/turnserver.conf, changed only where a
second server on a shared machine must differ (listening ports, relay port range, TLS files,
loopback listening and relay addresses), and asks it, as a TURN client holding REST
credentials minted by relay_broker's own code, for permissions and channels towards the
addresses an attacker would aim at.

No Redis statistics: production passes `--redis-statsdb` on coturn's command line, not in the
file, so there is nothing to strip; this coturn runs without it, since its traffic reports
would land on the shared stack's Redis channel that the running relay_broker replicas read.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.relay_broker.domain import turn
from services.relay_broker.domain.model import Side
from tests.harness import ROOT, free_port
from tests.turn_client import Method, TurnClient, TurnError

PRODUCTION = ROOT / "charts" / "privacam" / "files" / "turnserver.conf"
RELAY_PORTS = 16
# What the chart would append for values turn.deniedPeerIps (templates/coturn-configmap.yaml):
# a single address and a range, both public-looking, so only these lines refuse them.
NODE_ADDRESSES = ("198.41.0.4", "2a00:1450:4001::-2a00:1450:4001:ffff:ffff:ffff:ffff:ffff")


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: bytes
    log_file: Path

    def client(self, host: str = "127.0.0.1") -> TurnClient:
        grant = turn.issue(self.secret, (), secrets.token_hex(8), Side.APP, datetime.now(UTC), 600)
        return TurnClient((host, self.port), grant.username, grant.password)


def _udp_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def _free_ports(count: int) -> int:
    """The first of `count` consecutive ports free for UDP and TCP on 127.0.0.1 and ::1."""
    for _ in range(100):
        first = free_port()
        if first + count < 65_536 and all(_udp_free(p) for p in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def render(production: str, overrides: dict[str, str], added: list[str]) -> str:
    """The production text with each overridden option's value replaced (each must occur
    exactly once, so a renamed option fails here rather than silently keeping 3478) and the
    added lines at the end."""
    lines = production.splitlines()
    for option, value in overrides.items():
        found = [i for i, line in enumerate(lines) if line.split("=", 1)[0] == option]
        assert len(found) == 1, f"{option} appears {len(found)} times in {PRODUCTION.name}"
        lines[found[0]] = f"{option}={value}"
    return "\n".join([*lines, "", "# --- Added by tests/integration/test_coturn.py", *added, ""])


@pytest.fixture(scope="module")
def production_coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    # turnserver and openssl, if missing (the module needs no other part of the stack).
    subprocess.run(["bash", str(ROOT / "stack" / "install.sh"), "coturn"], check=True)
    directory = tmp_path_factory.mktemp("coturn-production")
    production = PRODUCTION.read_text()
    # Production listens on every interface; this one only on loopback, where its peers are not.
    assert not re.search(r"^(listening|relay)-ip=", production, re.MULTILINE)
    key, certificate = directory / "tls.key", directory / "tls.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=turn.test",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    port, tls_port = _free_ports(2), _free_ports(2)  # coturn may also open port + 1
    relay = _free_ports(RELAY_PORTS)
    config = render(
        production,
        {
            "listening-port": str(port),
            "tls-listening-port": str(tls_port),
            "min-port": str(relay),
            "max-port": str(relay + RELAY_PORTS - 1),
            "cert": str(certificate),
            "pkey": str(key),
        },
        [
            "listening-ip=127.0.0.1",
            "listening-ip=::1",
            "relay-ip=127.0.0.1",
            "relay-ip=::1",
            *(f"denied-peer-ip={address}" for address in NODE_ADDRESSES),
        ],
    )
    (directory / "turnserver.conf").write_text(config)
    secret = secrets.token_urlsafe(32)
    log_file = directory / "coturn.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [
                "turnserver",
                "-c",
                str(directory / "turnserver.conf"),
                f"--static-auth-secret={secret}",  # production's comes from a Secret too
                # Not in production's file either: its sqlite database (unused with
                # use-auth-secret) and pid file default to /var.
                f"--userdb={directory / 'turndb'}",
                f"--pidfile={directory / 'turnserver.pid'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    server = Coturn(port, secret.encode(), log_file)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"turnserver exited:\n{log_file.read_text()[-3000:]}")
            try:
                with server.client() as probe:
                    probe.binding()
                break
            except TimeoutError:
                assert time.monotonic() < deadline, log_file.read_text()[-3000:]
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _outcome(client: TurnClient, method: Method, peer: str, channel: int) -> str:
    try:
        if method is Method.CREATE_PERMISSION:
            client.create_permission(peer)
        else:
            client.channel_bind(channel, peer)
    except TurnError as refused:
        return f"{refused.code} {refused.reason}"
    return "allowed"


FORBIDDEN = "403 Forbidden IP"


def test_coturn_refuses_private_peers(production_coturn: Coturn) -> None:
    """Each private, loopback, metadata or embedded-IPv4 peer is refused 403 Forbidden IP, for
    a permission and for a channel; a public address is allowed, so refusing everything fails.

    IPv6 peers are asked on an IPv6 allocation: on an IPv4 one, RFC 8656 section 9.1 answers
    443 Peer Address Family Mismatch whatever the address (checked below), which would hide
    whether the denied list covers it.
    """
    ipv4 = {
        "127.0.0.1": FORBIDDEN,
        "10.0.0.1": FORBIDDEN,
        "169.254.169.254": FORBIDDEN,  # cloud metadata
        "0.0.0.0": FORBIDDEN,
        "100.64.0.1": FORBIDDEN,
        "172.16.0.1": FORBIDDEN,
        "192.168.1.1": FORBIDDEN,
        "203.0.113.5": FORBIDDEN,  # TEST-NET-3: production denies the documentation ranges
        NODE_ADDRESSES[0]: FORBIDDEN,  # public, refused only as one of the deployment's own
        "8.8.8.8": "allowed",  # a permission and a channel send nothing to the peer
    }
    ipv6 = {
        "::1": FORBIDDEN,
        "::ffff:127.0.0.1": FORBIDDEN,  # IPv4-mapped
        "::": FORBIDDEN,
        # IPv4-compatible (::/96), one address for each of its four ranges in the config
        "::127.0.0.1": FORBIDDEN,
        "::169.254.169.0": FORBIDDEN,
        "::10.1.0.0": FORBIDDEN,
        "::10.0.0.0": FORBIDDEN,
        "64:ff9b:1::a00:1": FORBIDDEN,  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::": FORBIDDEN,  # 6to4 of 127.0.0.1
        "fd00:ec2::254": FORBIDDEN,  # AWS metadata (unique-local)
        "fe80::1": FORBIDDEN,
        "2001:4860:4860::8888": "allowed",
        "2a00:1450:4001:80b::200e": FORBIDDEN,  # public, in the deployment's own range
    }
    seen: dict[tuple[str, str], str] = {}
    for family, peers, server in ((4, ipv4, "127.0.0.1"), (6, ipv6, "::1")):
        with production_coturn.client(server) as client:
            relayed = client.allocate(family)
            assert ":" in relayed[0] if family == 6 else "." in relayed[0], relayed
            for index, peer in enumerate(peers):
                for method in (Method.CREATE_PERMISSION, Method.CHANNEL_BIND):
                    seen[peer, method.name] = _outcome(client, method, peer, 0x4000 + index)
    with production_coturn.client() as client:
        client.allocate(4)
        mismatch = _outcome(client, Method.CREATE_PERMISSION, "2001:4860:4860::8888", 0)
    print()
    for (peer, name), outcome in seen.items():
        print(f"{name:<18} {peer:<24} {outcome}")
    print(f"CREATE_PERMISSION  2001:4860:4860::8888 on an IPv4 allocation: {mismatch}")
    methods = (Method.CREATE_PERMISSION.name, Method.CHANNEL_BIND.name)
    expected = {(peer, m): outcome for peer, outcome in (ipv4 | ipv6).items() for m in methods}
    assert seen == expected
    assert mismatch.startswith("443 Peer Address Family Mismatch"), mismatch
