"""The export builder: bounded memory whatever the number of clips, and a build killed at
any point goes on (or starts over cleanly) with every clip in the archive exactly once,
no part uploaded twice below the checkpoint and no unfinished upload left behind."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import tracemalloc
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from privacam_core import clip_format
from services.retention.domain.archive import (
    FIRST_PART_SEGMENTS,
    SealedArchive,
    ZipStream,
    json_document,
    segments_in_part,
)
from services.retention.domain.exports import ExportState, archive_binding
from services.retention.domain.model import ScheduledClip
from tests.unit.retention.export_fakes import Killed, MemoryLeases, clip_bytes
from tests.unit.retention.test_exports import World, make_world

MiB = 1024 * 1024


async def opened_archive(world: World, tenant: str, export_id: str) -> zipfile.ZipFile:
    """The stored archive, decrypted with its key (as a download would)."""
    sealed = world.archives.path(tenant, export_id).read_bytes()
    header = clip_format.read_header(sealed)
    key = world.archives.keys[header.key_reference]
    plain = clip_format.decrypt_all(sealed, key, archive_binding(tenant, export_id))
    return zipfile.ZipFile(io.BytesIO(plain))


async def check_complete(world: World, export_id: str, clips: int, clip_size: int) -> None:
    """READY, every clip present once with its bytes, nothing unfinished left."""
    job = world.store.jobs[("t1", export_id)]
    assert job.state is ExportState.READY, job.failure_reason
    with await opened_archive(world, "t1", export_id) as opened:
        assert opened.testzip() is None
        names = opened.namelist()
        expected = [f"clips/cam/c{i}.mp4" for i in range(clips)]
        assert names == ["export.json", *expected]
        for i in range(clips):
            clip = world.schedule.clips[f"t1/cam/c{i}"]
            media = b"".join([c async for c in clip_bytes(clip, clip_size)])
            assert opened.read(f"clips/cam/c{i}.mp4") == media
        document = json.loads(opened.read("export.json"))
    assert [c["file"] for c in document["clips"]] == expected
    assert world.archives.uploads == {}
    assert world.archives.leftovers() == []
    assert world.progress.states == {}
    assert world.store.queue == {}


# --- the archive ----------------------------------------------------------------------


async def test_export_json_is_what_json_dumps_writes() -> None:
    generator = random.Random(7)
    cases: list[list[list[dict[str, Any]]]] = [
        [],
        [[]],
        [[{"a": 1}]],
        [[{"b": [1, {"c": "é"}]}, {}], [], [{"x": None}]],
    ]
    for pages in cases:
        flat = [item for page in pages for item in page]
        fields: dict[str, Any] = {
            "format": "f",
            "account": {"nested": {"list": [1, 2], "empty": {}}, "n": generator.random()},
            "tenant_id": "t",
        }

        async def paged(pages: list[list[dict[str, Any]]] = pages) -> AsyncIterator[Any]:
            for page in pages:
                yield page

        async def empty() -> AsyncIterator[Any]:
            yield []

        streamed = b"".join(
            [
                piece
                async for piece in json_document(fields, {"access_log": paged(), "clips": empty()})
            ]
        )
        whole = {**fields, "access_log": flat, "clips": []}
        assert streamed.decode() == json.dumps(whole, indent=2, sort_keys=True)


def test_parts_are_at_least_5_mib_and_grow_to_fit_s3s_10000_parts() -> None:
    segment = clip_format.DEFAULT_SEGMENT_SIZE + clip_format.TAG_LENGTH
    assert FIRST_PART_SEGMENTS * segment >= 5 * MiB
    assert segments_in_part(1000) == FIRST_PART_SEGMENTS
    assert segments_in_part(1001) == 2 * FIRST_PART_SEGMENTS
    total = sum(segments_in_part(n) for n in range(1, 10_001)) * clip_format.DEFAULT_SEGMENT_SIZE
    assert total > 250 * 1024**3


async def test_many_entries_use_zip64_end_records() -> None:
    parts: list[bytes] = []

    class Sink:
        async def upload_part(self, number: int, data: clip_format.BytesLike) -> str:
            parts.append(bytes(data))
            return str(number)

    async def nothing() -> None:
        return None

    sealer = clip_format.SegmentSealer.new(
        b"k" * 32, b"ref", archive_binding("t", "e"), clip_format.MIN_SEGMENT_SIZE
    )
    out = SealedArchive(sealer, Sink(), nothing)
    archive = ZipStream(out, datetime(2026, 1, 2, tzinfo=UTC))

    async def one() -> AsyncIterator[bytes]:
        yield b"x"

    for i in range(70_000):
        await archive.add(f"f{i}", one())
    await archive.close()
    await out.finish()
    plain = clip_format.decrypt_all(b"".join(parts), b"k" * 32, archive_binding("t", "e"))
    with zipfile.ZipFile(io.BytesIO(plain)) as opened:
        assert len(opened.infolist()) == 70_000
        assert opened.read("f69999") == b"x"


# --- memory -------------------------------------------------------------------------------


async def peak_of_build(tmp_path: Path, clips: int) -> tuple[int, int]:
    """(tracemalloc peak, archive size) of building an export of `clips` 1 MiB clips."""
    tmp_path.mkdir()  # noqa: ASYNC240 - a test's own scratch directory
    world = make_world(tmp_path, clips=clips, clip_size=MiB)
    job = await world.exports.request("t1")
    tracemalloc.start()
    try:
        await world.builder.build_next()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await check_complete(world, job.export_id, clips, MiB)
    return peak, world.store.jobs[("t1", job.export_id)].size_bytes


async def test_memory_stays_bounded_whatever_the_number_of_clips(tmp_path: Path) -> None:
    few, few_size = await peak_of_build(tmp_path / "few", 4)
    many, many_size = await peak_of_build(tmp_path / "many", 48)
    print(
        f"peak {few / MiB:.1f} MiB for {few_size / MiB:.0f} MiB (4 clips), "
        f"{many / MiB:.1f} MiB for {many_size / MiB:.0f} MiB (48 clips, 10 parts)"
    )
    assert many_size > 9 * 5 * MiB
    assert many <= 1.2 * max(few, 6 * MiB)
    assert many < 16 * MiB  # about two parts: one being filled, one being joined


# --- crashes --------------------------------------------------------------------------------

CLIPS, SIZE = 30, 600_000  # 18 MB: four parts, a checkpoint every 5 MiB


def kill_at_part(number: int) -> Any:
    def before(part: int) -> None:
        if part == number:
            raise Killed

    return before


async def killed_then_resumed(world: World, arrange: Any) -> str:
    job = await world.exports.request("t1")
    arrange()
    with pytest.raises(Killed):
        await world.builder.build("t1", job.export_id)  # no lease: the process is gone
    world.archives.before_part = world.archives.before_complete = None
    world.archives.after_complete = None
    world.sources.kill_at_clip = None
    # Another replica (or the same, restarted) takes it over.
    assert await world.builder.build_next()
    return job.export_id


@pytest.mark.parametrize("part", [2, 3, 4])
async def test_a_build_killed_while_uploading_goes_on_from_its_last_part(
    tmp_path: Path, part: int
) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)

    def arrange() -> None:
        world.archives.before_part = kill_at_part(part)

    export_id = await killed_then_resumed(world, arrange)
    await check_complete(world, export_id, CLIPS, SIZE)
    assert world.metrics.attempts == ["fresh", "resumed"]
    numbers = [number for _, number in world.archives.part_calls]
    # Parts before the checkpoint are never sent again; the one cut off is.
    assert numbers == sorted(numbers)
    assert numbers == list(range(1, len(numbers) + 1))
    assert len({upload for upload, _ in world.archives.part_calls}) == 1
    # The export's key was unwrapped again, logged: once to go on, once to hash it back.
    assert world.archives.unwrapped == [("t1", export_id)] * 2
    assert world.sources.account_reads == 1


async def test_a_build_killed_mid_clip_regenerates_that_clip_only(tmp_path: Path) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)

    def arrange() -> None:
        world.sources.kill_at_clip = ("c20", SIZE // 2)

    export_id = await killed_then_resumed(world, arrange)
    await check_complete(world, export_id, CLIPS, SIZE)
    released = world.sources.keys_released
    # Each clip read once, but those from the checkpoint's entry on (read again).
    repeated = {clip for clip in released if released.count(clip) > 1}
    assert repeated
    assert all(int(clip[1:]) <= 24 for clip in repeated)
    assert len(repeated) <= 10


@pytest.mark.parametrize("when", ["before completion", "after completion"])
async def test_a_build_killed_at_the_end_finishes(tmp_path: Path, when: str) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)

    def arrange() -> None:
        def killed() -> None:
            raise Killed

        if when == "before completion":
            world.archives.before_complete = killed
        else:
            world.archives.after_complete = killed

    export_id = await killed_then_resumed(world, arrange)
    await check_complete(world, export_id, CLIPS, SIZE)
    starts = world.metrics.attempts
    if when == "before completion":
        assert starts == ["fresh", "resumed"]
    else:  # the upload was completed: going on finds it gone and starts over
        assert starts == ["fresh", "resumed", "restarted"]


async def test_a_build_killed_inside_export_json_starts_over_cleanly(tmp_path: Path) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)
    # An access log long enough that export.json (deflated) runs past the first part.
    noise = random.Random(3)
    world.sources.log_pages = [
        [
            {"index": i, "note": base64.b64encode(noise.randbytes(450)).decode()}
            for i in range(p, p + 500)
        ]
        for p in range(0, 16_000, 500)
    ]
    job = await world.exports.request("t1")
    world.archives.before_part = kill_at_part(2)
    with pytest.raises(Killed):
        await world.builder.build("t1", job.export_id)
    first = dict(world.progress.states[("t1", job.export_id)])
    assert [number for _, number in world.archives.part_calls] == [1]
    assert first["checkpoint"] is None  # part 1 ended inside export.json
    world.archives.before_part = None
    assert await world.builder.build_next()
    await check_complete(world, job.export_id, CLIPS, SIZE)
    assert world.metrics.attempts == ["fresh", "restarted"]
    assert world.archives.aborted == [first["upload_id"]]
    assert world.sources.account_reads == 2


async def test_a_checkpoint_that_no_longer_matches_starts_over(tmp_path: Path) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)

    def arrange() -> None:
        world.archives.before_part = kill_at_part(3)

    job = await world.exports.request("t1")
    arrange()
    with pytest.raises(Killed):
        await world.builder.build("t1", job.export_id)
    world.archives.before_part = None
    # The clip being written at the checkpoint now reads differently (it cannot, for an
    # authentic clip; if it ever did, resealing would reuse nonces): start over instead.
    checkpoint = world.progress.states[("t1", job.export_id)]["checkpoint"]
    current = world.schedule.clips[f"t1/cam/c{len(checkpoint.entries) - 1}"]
    changed = ScheduledClip("t1", "cam", "other", "x", 1, current.due_at)
    original = world.sources.clip_media

    async def other_bytes(clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
        mine = changed if clip.member == current.member else clip
        async for chunk in original(mine, data_key):
            yield chunk

    world.sources.clip_media = other_bytes  # type: ignore[method-assign]
    assert await world.builder.build_next()
    assert world.metrics.attempts == [
        "fresh",
        "resumed",
        "restarted",
    ]
    assert world.store.jobs[("t1", job.export_id)].state is ExportState.READY
    assert world.archives.uploads == {}
    assert world.archives.leftovers() == []


async def test_an_export_that_keeps_killing_its_builders_fails(tmp_path: Path) -> None:
    world = make_world(tmp_path, clips=3, clip_size=1000)
    world.sources.kill_at_clip = ("c1", 0)
    job = await world.exports.request("t1")
    for _ in range(5):
        with pytest.raises(Killed):
            await world.builder.build("t1", job.export_id)
    await world.builder.build("t1", job.export_id)
    failed = world.store.jobs[("t1", job.export_id)]
    assert failed.state is ExportState.FAILED
    assert failed.failure_reason == "the export could not be built in 5 attempts"
    assert world.archives.uploads == {}
    assert world.progress.states == {}


# --- leases and leftovers ----------------------------------------------------------------


async def test_a_replica_leaves_an_export_another_holds_until_its_lease_lapses(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    leases: MemoryLeases = world.builder._leases  # type: ignore[assignment]
    job = await world.exports.request("t1")
    other = leases.lease("t1", job.export_id)
    assert await other.try_acquire()
    assert not await world.builder.build_next()
    leases.holders.clear()  # the holder died and its lease lapsed
    assert await world.builder.build_next()
    assert world.store.jobs[("t1", job.export_id)].state is ExportState.READY
    assert leases.holders == {}


async def test_a_builder_that_loses_its_lease_stops_and_another_goes_on(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)
    world.builder._renew = 0.001
    leases: MemoryLeases = world.builder._leases  # type: ignore[assignment]
    job = await world.exports.request("t1")
    original = world.sources.clip_media

    lapsed: list[None] = []

    async def lapse_at_c20(clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
        if clip.clip_id == "c20" and not lapsed:
            lapsed.append(None)
            leases.holders[("t1", job.export_id)] = object()  # another replica took it
            await asyncio.sleep(0.05)
        async for chunk in original(clip, data_key):
            yield chunk

    world.sources.clip_media = lapse_at_c20  # type: ignore[method-assign]
    assert await world.builder.build_next()
    assert world.store.jobs[("t1", job.export_id)].state is ExportState.BUILDING
    leases.holders.clear()
    assert await world.builder.build_next()
    await check_complete(world, job.export_id, CLIPS, SIZE)
    assert world.metrics.attempts == ["fresh", "resumed"]


async def test_the_janitor_cleans_up_after_builds_whose_export_is_gone(tmp_path: Path) -> None:
    world = make_world(tmp_path, clips=CLIPS, clip_size=SIZE)
    world.archives.before_part = kill_at_part(2)
    gone = (await world.exports.request("t1")).export_id
    building = (await world.exports.request("t2")).export_id
    for tenant, export_id in (("t1", gone), ("t2", building)):
        with pytest.raises(Killed):
            await world.builder.build(tenant, export_id)
    # t1's job went while no replica built it, and the delete could not reach MinIO: its
    # build state and its unfinished upload are left.
    world.store.jobs.pop(("t1", gone))
    assert len(world.archives.uploads) == 2
    assert await world.builder.clean_abandoned() == 1
    assert [u.export_id for u in world.archives.uploads.values()] == [building]
    assert set(world.progress.states) == {("t2", building)}  # an open build is left alone
    assert await world.builder.clean_abandoned() == 0
