"""Redis pub/sub between broker replicas: a message for a stream reaches the replica
that holds it, whichever replica produced it.

A camera's control stream, each side of a session's signaling and each app's notice
stream subscribe to a channel on their replica's one pub/sub connection; anyone
publishes to it. Pub/sub is fire-and-forget, which fits: these streams are live
(a message for a stream that is gone has no one to go to), and what must not be
lost (session state, the access log, events) is stored elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger("privacam.relay_broker.bus")

Handler = Callable[[bytes], None]
PatternHandler = Callable[[str, bytes], None]


class Bus:
    def __init__(self, redis: Redis, namespace: str = "") -> None:
        self._redis = redis
        self._namespace = namespace  # channels of one environment only
        self._pubsub: PubSub = redis.pubsub()
        self._handlers: dict[str, set[Handler]] = {}
        self._patterns: dict[str, PatternHandler] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A channel of our own, so the connection is in subscribed mode from the start.
        await self._pubsub.subscribe(self._namespace + "relay:ch:keepalive")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._redis.publish(self._namespace + channel, payload)

    async def send(self, channel: str, payload: bytes) -> None:
        """For a channel with one subscriber (a session side): delivered in this process
        when the subscriber is here, which skips the Redis round trip; published otherwise."""
        handlers = self._handlers.get(self._namespace + channel)
        if handlers:
            for handler in list(handlers):
                handler(payload)
            return
        await self.publish(channel, payload)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Returns once Redis confirmed the subscription: nothing published after is missed."""
        channel = self._namespace + channel
        handlers = self._handlers.setdefault(channel, set())
        handlers.add(handler)
        if len(handlers) > 1:
            pending = self._confirmed.get(channel)
            if pending is not None:
                await asyncio.shield(pending)
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel] = confirmed
        await self._pubsub.subscribe(channel)
        await asyncio.wait_for(asyncio.shield(confirmed), 10)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        channel = self._namespace + channel
        handlers = self._handlers.get(channel)
        if handlers is None:
            return
        handlers.discard(handler)
        if not handlers:
            del self._handlers[channel]
            self._confirmed.pop(channel, None)
            with contextlib.suppress(RedisError):
                await self._pubsub.unsubscribe(channel)

    async def psubscribe(self, pattern: str, handler: PatternHandler) -> None:
        """A pattern as is, outside our namespace (coturn's reports)."""
        self._patterns[pattern] = handler
        await self._pubsub.psubscribe(pattern)

    def subscriptions(self) -> int:
        return len(self._handlers)

    async def _run(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except RedisError as error:
                # redis-py reconnects and subscribes again on the next read.
                log.warning("pub/sub connection lost", extra={"error": type(error).__name__})
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            self._dispatch(message)

    def _dispatch(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = _text(message["channel"])
        if kind == "subscribe":
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "message":
            data = message["data"]
            assert isinstance(data, bytes)
            for handler in list(self._handlers.get(channel, ())):
                handler(data)
        elif kind == "pmessage":
            pattern_handler = self._patterns.get(_text(message["pattern"]))
            data = message["data"]
            if pattern_handler is not None and isinstance(data, bytes):
                pattern_handler(channel, data)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
