"""The clip index's rebuild starts even when the old generation's consumer cannot stop."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from services.clip_ingest.streams import index_follower
from services.clip_ingest.streams.index_follower import IndexFollower
from services.common.settings import KafkaSettings


class FakeConsumer:
    started: ClassVar[list[str]] = []

    def __init__(self, kafka: Any, topic: Any, group_id: str, handler: Any) -> None:
        self.group_id = group_id

    async def start(self) -> None:
        FakeConsumer.started.append(self.group_id)

    async def stop(self) -> None:
        if self.group_id.endswith(".old"):
            await asyncio.Event().wait()  # Kafka died mid-commit: this stop never returns


class FakeIndex:
    def __init__(self) -> None:
        self.current = "old"

    async def generation(self, namespace: str, make: str) -> str:
        return self.current


async def test_a_lost_index_is_rebuilt_even_if_the_old_consumer_hangs_on_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_follower, "EventConsumer", FakeConsumer)
    FakeConsumer.started = []
    index = FakeIndex()
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    follower = IndexFollower(kafka, index, None, watch_seconds=0.02)  # type: ignore[arg-type]
    await follower.start()
    assert FakeConsumer.started == ["clip_ingest.index.old"]
    index.current = "new"  # Redis came back empty: a new generation was drawn
    deadline = asyncio.get_running_loop().time() + 2
    while FakeConsumer.started[-1] != "clip_ingest.index.new":
        assert asyncio.get_running_loop().time() < deadline, "the rebuild never started"
        await asyncio.sleep(0.02)
    await asyncio.wait_for(follower.stop(), 2)
