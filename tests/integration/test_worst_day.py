"""The worst day: crash every part of the platform during steady ingest and playback.

Cameras upload clips without pause (retrying a refused clip later with the same id, as
firmware does) while the test kills, with SIGKILL, one part after another: each service
process, then MinIO, Redis and Kafka themselves, restarted by the project's own scripts.
Afterwards every clip acknowledged to a camera must be listed once, download and decrypt
to its exact bytes, and have exactly one ClipIngested event; nothing needs a manual step.
It runs last (see conftest.py) because it restarts the shared stack.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from privacam.clips.v1.events_pb2 import ClipEvent
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam_sdk import PrivacamClient
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from services.common.clip_events import clip_deletions
from services.common.healthcheck import serving
from tests.harness import ROOT, RUN_DIR, Platform, kafka_options
from tests.integration.test_clip_ingest import Home, _home
from tests.media import make_mp4

pytestmark = pytest.mark.restarts_stack  # see conftest.py

CAMERAS = 3


@dataclass
class Ledger:
    acknowledged: dict[str, set[str]] = field(default_factory=dict)  # device -> clip ids
    refused: Counter[str] = field(default_factory=Counter)
    last_ack: float = 0.0


async def _camera_loop(home: Home, clip: bytes, ledger: Ledger, stop: asyncio.Event) -> None:
    done = ledger.acknowledged.setdefault(home.device, set())
    number = 0
    async with PrivacamClient(home.camera, timeout=20) as camera:
        while not stop.is_set():
            clip_id = f"steady-{number:05d}"
            try:
                await upload_clip(camera, clip, clip_id)
            except grpc.aio.AioRpcError as error:
                ledger.refused[error.code().name] += 1
                await asyncio.sleep(0.3)
                continue  # the same clip id again, as a camera retries its backlog
            done.add(clip_id)
            ledger.last_ack = time.monotonic()
            number += 1


def _kill_stack_server(name: str) -> None:
    pid = int((RUN_DIR / "pids" / f"{name}.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)


def _restart_stack() -> None:
    subprocess.run(["bash", str(ROOT / "stack" / "up.sh")], check=True, capture_output=True)


async def _recovered(ledger: Ledger, since: float, within: float = 120) -> float:
    """Seconds from `since` until a camera's upload is acknowledged again."""
    deadline = since + within
    while ledger.last_ack <= since:
        assert time.monotonic() < deadline, f"no clip acknowledged {within} s after the fault"
        await asyncio.sleep(0.1)
    return ledger.last_ack - since


async def _clip_events(
    platform: Platform,
) -> tuple[Counter[tuple[str, str]], set[tuple[str, str]]]:
    """(ClipIngested count per (device, clip), clips deleted since) from the clip topic."""
    topic = platform.namespace + "privacam.clips.v1"
    consumer = AIOKafkaConsumer(
        **kafka_options(platform.stack_env),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, 0)]  # the test platform's topics have one
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        seen: Counter[tuple[str, str]] = Counter()
        deleted: set[tuple[str, str]] = set()
        while await consumer.position(partitions[0]) < ends[partitions[0]]:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    event = ClipEvent.FromString(message.value)
                    if event.WhichOneof("event") == "clip_ingested":
                        ingested = event.clip_ingested
                        seen[(ingested.device_id, ingested.clip_id)] += 1
                    else:
                        deleted.update((d.device_id, d.clip_id) for d in clip_deletions(event))
        return seen, deleted
    finally:
        await consumer.stop()


async def test_every_acknowledged_clip_survives_crashes_of_every_part(
    platform: Platform, profiles_home: Path
) -> None:
    homes = [await _home(platform, profiles_home) for _ in range(CAMERAS)]
    for home in homes:  # the longest retention: earlier tests may have moved its clock ahead
        async with PrivacamClient(home.owner) as app:
            await app.device_auth().UpdateCameraSettings(
                id_pb.UpdateCameraSettingsRequest(device_id=home.device, retention_days=30)
            )
    clip = make_mp4(2.0, width=320, height=180)
    ledger = Ledger()
    stop = asyncio.Event()
    loops = [asyncio.create_task(_camera_loop(home, clip, ledger, stop)) for home in homes]
    recovery: dict[str, float] = {}
    try:
        await _recovered(ledger, time.monotonic())
        for name in ("clip_ingest", "key_manager", "access_log", "device_auth", "retention"):
            process = platform.services[name]
            assert process.process is not None
            process.process.send_signal(signal.SIGKILL)
            process.process.wait()
            crashed = time.monotonic()
            process.start()
            await asyncio.to_thread(process.wait_serving, 120)
            recovery[name] = await _recovered(ledger, crashed)
        for server in ("minio", "redis", "kafka"):
            _kill_stack_server(server)
            crashed = time.monotonic()
            await asyncio.sleep(2)  # an outage, not a blip
            await asyncio.to_thread(_restart_stack)
            recovery[server] = await _recovered(ledger, crashed, within=180)
        await asyncio.sleep(2)  # steady again
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
    for name, process in platform.services.items():
        assert serving(f"127.0.0.1:{process.health_port}"), f"{name} did not recover"

    # Clips retention deleted meanwhile are not lost (earlier tests may have moved
    # retention's development clock weeks ahead): each left a ClipDeleted event.
    events, deleted = await _clip_events(platform)

    def expected(home: Home) -> set[str]:
        return {c for c in ledger.acknowledged[home.device] if (home.device, c) not in deleted}

    # Redis came back empty: the clip index rebuilds itself from Kafka. Wait until it has
    # (bounded), then every acknowledged clip must be listed once and play byte for byte.
    started = time.monotonic()
    while time.monotonic() - started < 120:
        complete = True
        for home in homes:
            async with PrivacamClient(home.owner, timeout=30) as app:
                listed_ids = {c.clip_id async for c in list_clips(app, home.device)}
            complete &= expected(home) <= listed_ids
        if complete:
            break
        await asyncio.sleep(1)
        events, deleted = await _clip_events(platform)
    recovery["clip index"] = time.monotonic() - started
    lost = duplicated = 0
    digest = hashlib.sha256(clip).digest()
    for home in homes:
        acknowledged = expected(home)
        async with PrivacamClient(home.owner, timeout=30) as app:
            listed = Counter([c.clip_id async for c in list_clips(app, home.device)])
            lost += len(acknowledged - set(listed))
            duplicated += sum(count - 1 for count in listed.values())
            for clip_id in sorted(acknowledged & set(listed))[:: max(1, len(acknowledged) // 5)]:
                try:
                    _, data = await download_clip(app, home.device, clip_id)
                except grpc.aio.AioRpcError as error:
                    # Only retention may have taken it since the listing, with its event.
                    code = error.code()
                    _, deleted = await _clip_events(platform)
                    assert code is grpc.StatusCode.NOT_FOUND
                    assert (home.device, clip_id) in deleted, f"{clip_id} lost"
                    continue
                assert hashlib.sha256(data).digest() == digest
    acknowledged_keys = {(d, c) for d, ids in ledger.acknowledged.items() for c in ids}
    missing_events = len(acknowledged_keys - set(events))
    repeated_events = sum(n - 1 for key, n in events.items() if key in acknowledged_keys and n > 1)
    total = len(acknowledged_keys)
    print(
        f"\nworst day: {total} clips acknowledged ({len(deleted & acknowledged_keys)} since "
        f"deleted by retention), {lost} lost, {duplicated} duplicated, "
        f"{missing_events} without an event, {repeated_events} repeated events; refused while "
        f"down: {dict(ledger.refused)}; recovery (crash to next acknowledged clip, and the "
        "index complete again after Redis): "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in recovery.items())
    )
    assert total >= 10
    assert (lost, duplicated, missing_events, repeated_events) == (0, 0, 0, 0)
    # A part down is a status the camera retries, never "internal error" (which it would not).
    assert not {"INTERNAL", "UNKNOWN"} & set(ledger.refused), ledger.refused
