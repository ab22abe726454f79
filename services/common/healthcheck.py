"""Ask a plaintext health port whether a service is SERVING (used by scripts and probes).

    python -m services.common.healthcheck 127.0.0.1:7101 [--wait 60]
        [--mtls HOST:PORT --tls-dir DIR --expect-id spiffe://...]
Exits 0 once SERVING, 1 if it is not by the deadline. With --mtls it then also asks the gRPC port
over mutual TLS, as the identity in DIR (ca.crt, tls.crt, tls.key), and checks that the server
presents the SPIFFE ID given: the chart's `helm test` proves the certificates work both ways.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def server_spiffe_ids(address: str, tls_dir: Path, timeout: float = 2.0) -> list[str]:
    """The URI SANs of the certificate the server at `address` presents to our client
    certificate (a TLS handshake of its own: gRPC's Python API does not expose the peer's
    certificate to clients)."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    context.load_cert_chain(tls_dir / "tls.crt", tls_dir / "tls.key")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        names = (tls.getpeercert() or {}).get("subjectAltName", ())
    return [str(entry[1]) for entry in names if entry[0] == "URI"]


def serving_over_mtls(address: str, tls_dir: Path, timeout: float = 2.0) -> bool:
    credentials = grpc.ssl_channel_credentials(
        (tls_dir / "ca.crt").read_bytes(),
        (tls_dir / "tls.key").read_bytes(),
        (tls_dir / "tls.crt").read_bytes(),
    )
    with grpc.secure_channel(address, credentials) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _until(deadline: float, check: Callable[[], bool]) -> bool:
    while True:
        try:
            if check():
                return True
        except (OSError, ssl.SSLError):
            pass  # not up yet, or the handshake failed: tried again until the deadline
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to keep trying")
    parser.add_argument("--mtls", metavar="HOST:PORT", help="also ask this gRPC port over mTLS")
    parser.add_argument("--tls-dir", type=Path, help="ca.crt, tls.crt and tls.key for --mtls")
    parser.add_argument("--expect-id", help="the SPIFFE ID the --mtls server must present")
    args = parser.parse_args()
    if args.mtls and not (args.tls_dir and args.expect_id):
        parser.error("--mtls needs --tls-dir and --expect-id")
    deadline = time.monotonic() + args.wait
    if not _until(deadline, lambda: serving(args.address)):
        raise SystemExit(f"{args.address}: not SERVING within {args.wait:g} s")
    if args.mtls:
        if not _until(deadline, lambda: serving_over_mtls(args.mtls, args.tls_dir)):
            raise SystemExit(f"{args.mtls}: no SERVING answer over mutual TLS")
        presented = server_spiffe_ids(args.mtls, args.tls_dir)
        if presented != [args.expect_id]:
            raise SystemExit(f"{args.mtls} presents {presented}, not {args.expect_id}")
        print(f"{args.mtls}: SERVING over mutual TLS as {args.expect_id}")


if __name__ == "__main__":
    main()
