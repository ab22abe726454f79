"""The production coturn configuration stays strict; only the local stack's may relay to
loopback (its test peers live on 127.0.0.1)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = ROOT / "charts" / "privacam" / "files" / "turnserver.conf"
LOCAL = ROOT / "stack" / "config" / "turnserver.conf.tmpl"


def _options(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_production_never_relays_into_the_platform() -> None:
    options = _options(PRODUCTION)
    assert not any(o.startswith("allow-loopback-peers") for o in options)
    denied = {o.split("=", 1)[1] for o in options if o.startswith("denied-peer-ip=")}
    for needed in (
        "127.0.0.0-127.255.255.255",
        "::1",
        "10.0.0.0-10.255.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "169.254.0.0-169.254.255.255",  # cloud metadata
        "100.64.0.0-100.127.255.255",
        "::ffff:0.0.0.0-::ffff:255.255.255.255",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
        "2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ):
        assert needed in denied, needed
    # coturn 4.6 reads a range whose first address is all zeros as unbounded below, and an
    # IPv4 peer as below any IPv6 address: `::-...` would refuse every IPv4 peer, `::` every peer.
    for entry in denied:
        first = entry.split("-")[0]
        assert first != "0.0.0.0" or "-" in entry, entry
        assert ipaddress.ip_address(first) != ipaddress.IPv6Address("::"), entry
    for required in ("use-auth-secret", "no-cli", "no-multicast-peers", "no-tlsv1", "no-tlsv1_1"):
        assert required in options
    assert any(o.startswith("tls-listening-port=") for o in options)
    assert any(o.startswith("user-quota=") for o in options)
    assert any(o.startswith("total-quota=") for o in options)
    assert not any(o.startswith("static-auth-secret") for o in options)  # a Secret, not a file


def test_the_local_stack_reports_traffic_and_is_marked_dev_only() -> None:
    text = LOCAL.read_text()
    assert "DEV/TEST ONLY" in text
    assert any(o.startswith("redis-statsdb=") for o in _options(LOCAL))
