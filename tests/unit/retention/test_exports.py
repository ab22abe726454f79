"""Exports: one building at a time, progress while building, only the owner's data, a
streamed download, expiry, and a delete that wins over a build in progress."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common.clock import FakeClock
from services.common.errors import FailedPrecondition, NotFound, OutOfRange
from services.retention.domain.export_build import ExportBuilder
from services.retention.domain.exports import Exports, ExportState
from services.retention.domain.model import ScheduledClip
from tests.unit.retention.export_fakes import (
    DiskArchiveStore,
    Events,
    Killed,
    MemoryBuildProgress,
    MemoryLeases,
    Metrics,
    StreamSources,
    clip_bytes,
)
from tests.unit.retention.fakes import MemoryExportStore, MemorySchedule

START = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class World:
    exports: Exports
    builder: ExportBuilder
    store: MemoryExportStore
    sources: StreamSources
    archives: DiskArchiveStore
    progress: MemoryBuildProgress
    events: Events
    clock: FakeClock
    schedule: MemorySchedule
    metrics: Metrics


def make_world(tmp_path: Path, clips: int = 2, clip_size: int = 10_000) -> World:
    clock = FakeClock(START)
    store = MemoryExportStore()
    schedule = MemorySchedule()
    for tenant in ("t1", "t2"):
        for i in range(clips):
            clip = ScheduledClip(tenant, "cam", f"c{i}", f"t/{tenant}/cam/c{i}", 1, START)
            schedule.clips[clip.member] = clip
    sources, archives = StreamSources(clip_size), DiskArchiveStore(tmp_path)
    progress, events, metrics = MemoryBuildProgress(store), Events(), Metrics()
    exports = Exports(store, archives, progress, events, clock)
    builder = ExportBuilder(
        store,
        sources,
        archives,
        progress,
        MemoryLeases(),
        schedule,
        events,
        metrics,
        clock,
        timedelta(days=7),
        renew_seconds=10,
    )
    return World(
        exports, builder, store, sources, archives, progress, events, clock, schedule, metrics
    )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


async def download(exports: Exports, tenant: str, export_id: str, offset: int = 0) -> bytes:
    _, chunks = await exports.download(tenant, export_id, offset, 4096)
    return b"".join([chunk async for chunk in chunks])


async def expected_media(clip: ScheduledClip, size: int) -> bytes:
    return b"".join([chunk async for chunk in clip_bytes(clip, size)])


async def test_an_export_is_built_with_progress_and_holds_only_the_tenants_data(
    world: World,
) -> None:
    exports, sources = world.exports, world.sources
    job = await exports.request("t1")
    assert job.state is ExportState.PENDING
    with pytest.raises(FailedPrecondition, match="already being built"):
        await exports.request("t1")
    progress_seen: list[tuple[int, int]] = []
    media = sources.clip_media

    def watched(clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
        current = world.store.jobs[("t1", job.export_id)]
        progress_seen.append((current.items_done, current.items_total))
        return media(clip, data_key)

    sources.clip_media = watched  # type: ignore[method-assign]
    assert await world.builder.build_next()
    assert not await world.builder.build_next()  # nothing else queued
    assert progress_seen == [(3, 5), (4, 5)]
    ready = await exports.get("t1", job.export_id)
    assert ready.state is ExportState.READY
    assert (ready.items_done, ready.items_total) == (5, 5)
    assert ready.expires_at == START + timedelta(days=7)
    archive = await download(exports, "t1", job.export_id)
    assert (len(archive), hashlib.sha256(archive).digest()) == (ready.size_bytes, ready.sha256)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.testzip() is None
        assert opened.namelist() == ["export.json", "clips/cam/c0.mp4", "clips/cam/c1.mp4"]
        document = json.loads(opened.read("export.json"))
        c0 = world.schedule.clips["t1/cam/c0"]
        assert opened.read("clips/cam/c0.mp4") == await expected_media(c0, 10_000)
    assert document["account"]["login"] == "login-t1"
    assert [c["file"] for c in document["clips"]] == ["clips/cam/c0.mp4", "clips/cam/c1.mp4"]
    assert [e["index"] for e in document["access_log"]] == [0, 1]
    assert "t2" not in json.dumps(document)
    assert world.events.seen == [
        ("requested", ExportState.PENDING),
        ("ready", ExportState.READY),
    ]
    # Downloading opens the export's key: logged (once per download).
    assert world.archives.unwrapped == [("t1", job.export_id)]
    assert world.progress.states == {}
    assert world.archives.uploads == {}
    with pytest.raises(NotFound):
        await exports.get("t2", job.export_id)
    world.clock.advance(timedelta(days=7))
    assert await exports.expire_due() == 1
    with pytest.raises(NotFound):
        await exports.get("t1", job.export_id)
    assert list(world.archives.root.iterdir()) == []


async def test_a_download_goes_on_from_an_offset(world: World) -> None:
    job = await world.exports.request("t1")
    await world.builder.build_next()
    whole = await download(world.exports, "t1", job.export_id)
    for offset in (1, 4095, 4096, len(whole) // 2, len(whole) - 1):
        assert await download(world.exports, "t1", job.export_id, offset) == whole[offset:]
    with pytest.raises(OutOfRange):
        await world.exports.download("t1", job.export_id, len(whole), 4096)


async def test_a_damaged_archive_fails_its_download(world: World) -> None:
    job = await world.exports.request("t1")
    await world.builder.build_next()
    path = world.archives.path("t1", job.export_id)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(FailedPrecondition, match="damaged"):
        await download(world.exports, "t1", job.export_id)


async def test_a_failed_build_says_why_and_keeps_nothing(world: World) -> None:
    world.sources.refuse_clip = "c1"
    job = await world.exports.request("t1")
    await world.builder.build_next()
    assert world.events.seen[-1] == ("deleted", ExportState.FAILED)
    failed = await world.exports.get("t1", job.export_id)
    assert (failed.state, failed.failure_reason) == (ExportState.FAILED, "receipt refused")
    assert world.archives.uploads == {}
    assert list(world.archives.root.iterdir()) == []
    assert world.progress.states == {}
    assert world.store.queue == {}
    with pytest.raises(FailedPrecondition, match="failed"):
        await world.exports.download("t1", job.export_id, 0, 4096)
    assert (await world.exports.request("t1")).state is ExportState.PENDING  # may ask again


@pytest.mark.parametrize("deleted_during", ["clip", "completion"])
async def test_an_export_deleted_while_it_builds_stays_deleted(
    world: World, deleted_during: str
) -> None:
    job = await world.exports.request("t1")
    deletions: list[None] = []

    async def delete_now() -> None:
        if not deletions:
            deletions.append(None)
            await world.exports.delete("t1", job.export_id)

    if deleted_during == "clip":
        media = world.sources.clip_media

        async def media_then_delete(clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
            async for chunk in media(clip, data_key):
                yield chunk
            await delete_now()

        world.sources.clip_media = media_then_delete  # type: ignore[method-assign]
    else:
        complete = world.archives.complete_upload

        async def complete_then_delete(
            tenant_id: str, export_id: str, upload_id: str, etags: Sequence[str]
        ) -> None:
            await complete(tenant_id, export_id, upload_id, etags)
            await delete_now()

        world.archives.complete_upload = complete_then_delete  # type: ignore[method-assign]
    await world.builder.build_next()
    assert deletions
    assert world.store.jobs == {}
    assert world.store.queue == {}
    assert world.progress.states == {}
    assert world.archives.uploads == {}
    assert list(world.archives.root.iterdir()) == []
    assert ("ready", ExportState.READY) not in world.events.seen
    with pytest.raises(NotFound):
        await world.exports.get("t1", job.export_id)


async def test_the_request_is_queued_with_the_job_and_the_event_only_confirms_it(
    world: World,
) -> None:
    job = await world.exports.request("t1")
    assert await world.store.queued(START, 10) == [("t1", job.export_id)]
    world.store.queue.clear()  # as if the job had been stored by an older version
    assert await world.exports.enqueue("t1", job.export_id)
    assert await world.store.queued(START, 10) == [("t1", job.export_id)]
    assert not await world.exports.enqueue("t1", "no-such-export")
    await world.builder.build_next()
    assert not await world.exports.enqueue("t1", job.export_id)  # ready: not built again


async def test_forgetting_a_tenant_leaves_no_export_behind(world: World) -> None:
    ready = await world.exports.request("t1")
    await world.builder.build_next()
    building = await world.exports.request("t1")
    world.sources.kill_at_clip = ("c1", 0)
    with pytest.raises(Killed):
        await world.builder.build("t1", building.export_id)
    assert world.archives.uploads
    assert await world.exports.forget_tenant("t1") == 2
    assert world.store.jobs == {}
    assert world.store.queue == {}
    assert world.progress.states == {}
    assert world.archives.uploads == {}
    assert list(world.archives.root.iterdir()) == []
    assert ready.export_id != building.export_id
