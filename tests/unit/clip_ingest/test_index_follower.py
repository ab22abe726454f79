"""The clip index follower: its rebuild starts even when the old generation's consumer cannot
stop, and both kinds of deletion event leave the index."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from privacam.clips.v1 import events_pb2 as events
from privacam.types.v1 import types_pb2
from services.clip_ingest.streams import index_follower
from services.clip_ingest.streams.index_follower import IndexFollower
from services.common.settings import KafkaSettings


class FakeConsumer:
    started: ClassVar[list[str]] = []

    def __init__(self, kafka: Any, topic: Any, group_id: str, handler: Any, **options: Any) -> None:
        self.group_id = group_id
        assert options["dead_letter_group"] == "clip_ingest.index"

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
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", security_protocol="PLAINTEXT")
    follower = IndexFollower(kafka, index, None, None, watch_seconds=0.02)  # type: ignore[arg-type]
    await follower.start()
    assert FakeConsumer.started == ["clip_ingest.index.old"]
    index.current = "new"  # Redis came back empty: a new generation was drawn
    deadline = asyncio.get_running_loop().time() + 2
    while FakeConsumer.started[-1] != "clip_ingest.index.new":
        assert asyncio.get_running_loop().time() < deadline, "the rebuild never started"
        await asyncio.sleep(0.02)
    await asyncio.wait_for(follower.stop(), 2)


class RecordingClips:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str, list[str]]] = []

    async def on_deleted(self, tenant_id: str, device_id: str, clip_ids: list[str]) -> None:
        self.deleted.append((tenant_id, device_id, list(clip_ids)))


async def test_an_owners_deletion_and_a_sweeps_batch_both_leave_the_index() -> None:
    clips = RecordingClips()
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", security_protocol="PLAINTEXT")
    follower = IndexFollower(kafka, FakeIndex(), clips, None)  # type: ignore[arg-type]
    one = events.ClipEvent(
        metadata=types_pb2.EventMetadata(tenant_id="t-1"),
        clip_deleted=events.ClipDeleted(device_id="d-1", clip_id="c-1"),
    )
    batch = events.ClipEvent(
        metadata=types_pb2.EventMetadata(tenant_id="t-1"),
        clips_deleted=events.ClipsDeleted(
            device_id="d-2",
            clips=[events.DeletedClip(clip_id="c-2"), events.DeletedClip(clip_id="c-3")],
        ),
    )
    await follower.on_event(one, None)  # type: ignore[arg-type]
    await follower.on_event(batch, None)  # type: ignore[arg-type]
    assert clips.deleted == [("t-1", "d-1", ["c-1"]), ("t-1", "d-2", ["c-2", "c-3"])]
