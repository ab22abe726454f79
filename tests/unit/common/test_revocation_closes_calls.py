"""A revoked identity's open calls end at once, and its new calls are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from privacam_core.identity import Principal
from services.common.auth import OPERATOR, Authorizer
from services.common.interceptors import OpenCalls, ServerInterceptor
from tests.pki_helpers import PkiFactory

METHOD = "/test.Feed/Follow"


class Revoked:
    def __init__(self) -> None:
        self.uris: set[str] = set()

    def is_revoked(self, principal: Principal) -> bool:
        return principal.uri in self.uris


async def follow(request: bytes, context: Any) -> AsyncIterator[bytes]:
    while True:  # a long-lived stream, like a camera's control channel
        yield b"tick"
        await asyncio.sleep(0.05)


async def _drain(stream: Any) -> None:
    while True:
        await stream.read()


def _follow(channel: grpc.aio.Channel) -> Any:
    return channel.unary_stream(METHOD, None, None)(b"")


@pytest.fixture
async def server(pki: PkiFactory) -> AsyncIterator[tuple[int, Revoked, OpenCalls]]:
    revoked, calls = Revoked(), OpenCalls()
    server = grpc.aio.server(
        interceptors=[
            ServerInterceptor(Authorizer({METHOD: OPERATOR}, revoked), "privacam.local", calls)
        ]
    )
    handler = grpc.unary_stream_rpc_method_handler(follow)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Feed", {"Follow": handler})]
    )
    ca, cert, key = pki.service("relay_broker").credentials()
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True),
    )
    await server.start()
    yield port, revoked, calls
    await server.stop(0)


async def test_revocation_closes_the_open_stream_and_refuses_the_next_call(
    server: tuple[int, Revoked, OpenCalls], pki: PkiFactory
) -> None:
    port, revoked, calls = server
    ca, cert, key = pki.operator().credentials()
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca, key, cert)
    ) as channel:
        stream = _follow(channel)
        assert await stream.read() == b"tick"
        assert len(calls) == 1
        uri = "spiffe://privacam.local/operator/demo"
        revoked.uris.add(uri)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert calls.close(lambda principal: principal.uri == uri) == 1
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(_drain(stream), timeout=5)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert loop.time() - started < 2
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _follow(channel).read()
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (refused.value.details() or "")
        assert len(calls) == 0


CHAT = "/test.Feed/Chat"


async def _until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


UPLOAD = "/test.Feed/Upload"


@pytest.fixture
async def chat_server(pki: PkiFactory) -> AsyncIterator[tuple[int, OpenCalls]]:
    """A bidi stream that echoes each message, and a client stream that reads until the
    client ends it."""
    calls = OpenCalls()

    async def chat(requests: Any, context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    async def upload(requests: Any, context: Any) -> bytes:
        async for _ in requests:
            pass
        return b"stored"

    server = grpc.aio.server(
        interceptors=[
            ServerInterceptor(
                Authorizer({CHAT: OPERATOR, UPLOAD: OPERATOR}, Revoked()), "privacam.local", calls
            )
        ]
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Feed",
                {
                    "Chat": grpc.stream_stream_rpc_method_handler(chat),
                    "Upload": grpc.stream_unary_rpc_method_handler(upload),
                },
            )
        ]
    )
    ca, cert, key = pki.service("relay_broker").credentials()
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True),
    )
    await server.start()
    yield port, calls
    await server.stop(0)


async def test_a_stream_waiting_on_its_client_ends_at_revocation_and_costs_no_task_per_message(
    chat_server: tuple[int, OpenCalls], pki: PkiFactory
) -> None:
    port, calls = chat_server
    ca, cert, key = pki.operator().credentials()
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca, key, cert)
    ) as channel:
        chat = channel.stream_stream(CHAT, None, None)()  # type: ignore[call-arg]
        await chat.write(b"first")
        assert await chat.read() == b"first"
        # No task is made per message (client and server share this loop: count both).
        loop = asyncio.get_running_loop()
        created = 0

        def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
            nonlocal created
            created += 1
            return asyncio.Task(coro, loop=loop)

        loop.set_task_factory(counting_factory)
        try:
            for n in range(50):
                await chat.write(b"%d" % n)
                assert await chat.read() == b"%d" % n
        finally:
            loop.set_task_factory(None)
        assert created < 10, f"{created} tasks for 50 messages"
        upload = channel.stream_unary(UPLOAD, None, None)()  # type: ignore[call-arg]
        await upload.write(b"part")
        await _until(lambda: len(calls) == 2)  # the upload's handler starts on its side
        # Both handlers now wait on their client; the revocation ends both at once.
        assert calls.close(lambda principal: True) == 2
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(chat.read(), 5)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(upload, 5)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (ended.value.details() or "")
        assert len(calls) == 0
