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
from collections.abc import Iterator

import pytest

from tests.harness import ROOT, Coturn, own_coturn
from tests.turn_client import Method, TurnClient, TurnError

PRODUCTION = ROOT / "charts" / "privacam" / "files" / "turnserver.conf"
RELAY_PORTS = 16
# What the chart would append for values turn.deniedPeerIps (templates/coturn-configmap.yaml):
# a single address and a range, both public-looking, so only these lines refuse them.
NODE_ADDRESSES = ("198.41.0.4", "2a00:1450:4001::-2a00:1450:4001:ffff:ffff:ffff:ffff:ffff")


@pytest.fixture(scope="module")
def production_coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    production = PRODUCTION.read_text()
    # Production listens on every interface; this one only on loopback, where its peers are not.
    assert not re.search(r"^(listening|relay)-ip=", production, re.MULTILINE)
    server = own_coturn(
        tmp_path_factory.mktemp("coturn-production"),
        PRODUCTION,
        added=(
            "listening-ip=127.0.0.1",
            "listening-ip=::1",
            "relay-ip=127.0.0.1",
            "relay-ip=::1",
            *(f"denied-peer-ip={address}" for address in NODE_ADDRESSES),
        ),
        relay_ports=RELAY_PORTS,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


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
