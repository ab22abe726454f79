"""A client that cancels its call cancels the handler too (it runs its cleanup), rather
than leaving it running as an orphan behind the interceptor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from privacam_core.identity import Principal
from services.common.auth import OPERATOR, Authorizer
from services.common.interceptors import OpenCalls, ServerInterceptor
from tests.pki_helpers import PkiFactory


class _NoRevocations:
    def is_revoked(self, principal: Principal) -> bool:
        return False


async def test_a_cancelled_client_stream_cancels_its_handler(pki: PkiFactory) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(requests: Any, context: Any) -> bytes:
        started.set()
        try:
            await asyncio.sleep(30)  # e.g. waiting on a store, not on the stream
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    server = grpc.aio.server(
        interceptors=[
            ServerInterceptor(
                Authorizer({"/t.Upload/Send": OPERATOR}, _NoRevocations()),
                "privacam.local",
                OpenCalls(),
            )
        ]
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "t.Upload", {"Send": grpc.stream_unary_rpc_method_handler(slow)}
            )
        ]
    )
    ca, cert, key = pki.service("clip_ingest").credentials()
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True),
    )
    await server.start()
    try:
        ca, cert, key = pki.operator().credentials()
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca, key, cert)
        ) as channel:

            async def one() -> AsyncIterator[bytes]:
                yield b"x"
                await asyncio.sleep(30)

            call = channel.stream_unary("/t.Upload/Send", None, None)(one())
            await asyncio.wait_for(started.wait(), 10)
            call.cancel()
            await asyncio.wait_for(cancelled.wait(), 5)
    finally:
        await server.stop(0)
