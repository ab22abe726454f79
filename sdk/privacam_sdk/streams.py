"""Ending a bidirectional gRPC stream (Signal, CameraControl) in order.

On a channel with client interceptors (PrivacamClient.channel: OpenTelemetry's), grpc.aio
runs a bidirectional call's writes through a request pump: a task reading an async
generator that waits for the next write(). cancel() stops that task only while the call
is live; once the server has ended the call (a session closed, the broker said goodbye)
cancel() is a no-op, done_writing() may drop its end marker, and the pump waits for ever.
When the event loop closes, asyncio then reports "Task was destroyed but it is pending"
and "aclose(): asynchronous generator is already running". close_stream ends the pump in
every case: half-close while the call lives, the end marker handed to the pump after.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc


async def close_stream(call: Any) -> None:
    """Half-close our side, end grpc's request pump, cancel the call, let the pump finish.
    The pump is ended and the call cancelled even when this is cancelled while waiting."""
    try:
        if not call.done():
            with contextlib.suppress(
                asyncio.InvalidStateError, grpc.aio.AioRpcError, grpc.RpcError
            ):
                await asyncio.wait_for(call.done_writing(), 1)
    finally:
        _end_request_pump(call)
        call.cancel()
    await asyncio.sleep(0)  # the pump runs to its end before the caller moves on


def _end_request_pump(call: Any) -> None:
    # grpc.aio's own queue and end marker for an intercepted call's writes (no public way).
    queue: asyncio.Queue[object] | None = getattr(call, "_write_to_iterator_queue", None)
    end = getattr(call, "_FINISH_ITERATOR_SENTINEL", None)
    if queue is not None and end is not None and queue.empty():
        # The pump of a finished call still waits on this queue: give it the end marker.
        queue.put_nowait(end)


__all__ = ["close_stream"]
