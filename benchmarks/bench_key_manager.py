"""Key manager round trips against a no-op RPC on the same server.

A real key_manager process (real Kafka, mutual TLS, the shared interceptor) serves both
sides: the figure is GenerateDataKey followed by ListKeyVersions of its tenant (two RPCs:
one wrap, then a read of the tenant's key state: what clip_ingest asks on an upload),
as clip_ingest; the baseline is two calls of DiagnosticsService.GetProbe, which does no
work, as an operator (only operators may probe) over its own reused channel. So the
ratio is what key work costs on top of the RPC itself. (Until Rewrap was removed, the
figure was GenerateDataKey followed by Rewrap; the README's row is that measurement.)
Target: at least 0.85x. Each side runs with 8 calls in flight on one reused channel,
alternating rounds of about half a second; the ratio is the median of the ratios of
adjacent rounds.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import grpc

from benchmarks import Result
from benchmarks.timing import Rates, paired_rates
from privacam.diagnostics.v1 import diagnostics_service_pb2 as diagnostics_pb
from privacam.diagnostics.v1 import diagnostics_service_pb2_grpc as diagnostics_grpc
from privacam.keys.v1 import key_manager_service_pb2 as pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc
from privacam.keys.v1 import keys_pb2
from tests.harness import cleanup_namespace, local_stack, make_service, new_namespace
from tests.pki_helpers import PkiFactory

TARGET = 0.85
IN_FLIGHT = 8
ROUND_SECONDS = 0.5
ROUNDS = 6


async def _measure(endpoint: str, pki: PkiFactory) -> Rates:
    ca, cert, key = pki.service("clip_ingest").credentials()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    ca, cert, key = pki.operator().credentials()
    operator = grpc.ssl_channel_credentials(ca, key, cert)
    async with (
        grpc.aio.secure_channel(endpoint, credentials) as channel,
        grpc.aio.secure_channel(endpoint, operator) as probe_channel,
    ):
        keys: pb_grpc.KeyManagerServiceAsyncStub = pb_grpc.KeyManagerServiceStub(channel)
        probes: diagnostics_grpc.DiagnosticsServiceAsyncStub = (
            diagnostics_grpc.DiagnosticsServiceStub(probe_channel)
        )
        probe = diagnostics_pb.GetProbeRequest(probe_id="0" * 32)

        async def noop_pair(_: int) -> None:
            await probes.GetProbe(probe)
            await probes.GetProbe(probe)

        async def key_pair(worker: int) -> None:
            context = keys_pb2.KeyContext(
                tenant_id=f"tenant-{worker}", device_id="cam-1", clip_id="clip-1"
            )
            generated = await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=context))
            assert generated.wrapped_key.key_version
            await keys.ListKeyVersions(pb.ListKeyVersionsRequest(tenant_id=context.tenant_id))

        return await paired_rates(
            key_pair, noop_pair, in_flight=IN_FLIGHT, rounds=ROUNDS, round_seconds=ROUND_SECONDS
        )


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        pki = PkiFactory(Path(scratch) / "pki")
        namespace = new_namespace(stack, "bench")
        service = make_service("key_manager", pki, stack, namespace, Path(scratch))
        service.start()
        try:
            service.wait_serving()
            rates = asyncio.run(_measure(service.endpoint, pki))
        finally:
            service.stop()
            cleanup_namespace(stack, namespace)
    return [
        Result.compare(
            "GenerateDataKey+ListKeyVersions round trips",
            rates.figure,
            "pairs/s",
            "2 no-op RPCs, same server",
            rates.baseline,
            TARGET,
            rates.ratio,
        )
    ]
