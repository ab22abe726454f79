"""Ask a plaintext health port whether a service is SERVING (used by scripts and probes).

    python -m services.common.healthcheck 127.0.0.1:7101 [--wait 60]
Exits 0 once SERVING, 1 if it is not by the deadline.
"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to keep trying")
    args = parser.parse_args()
    deadline = time.monotonic() + args.wait
    while not serving(args.address):
        if time.monotonic() >= deadline:
            raise SystemExit(1)
        time.sleep(0.25)


if __name__ == "__main__":
    main()
