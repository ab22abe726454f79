"""The worst day: crash every part of the platform during steady ingest, playback and live view.

Cameras upload clips without pause (retrying a refused clip later with the same id, as
firmware does; every clip's bytes are its own) while the test kills, with SIGKILL, one part
after another: each service process including relay_broker, a coturn of the test's own
(the stack's coturn is shared, so this platform's relay_broker hands out a private one on
loopback ports of its own), then MinIO, Redis and Kafka themselves, restarted by the
project's own scripts. A relay-only live view (every packet through coturn) must resume
after relay_broker and after coturn come back, and once more at the end.

Retention runs all along with the cameras' longest setting, so it must delete nothing.
Afterwards every clip acknowledged to a camera must be stored, indexed and listed once,
download and decrypt to its exact bytes (every one, compared byte for byte), and have exactly
one ClipIngested event and no deletion event; nothing needs a manual step.
It runs last (see conftest.py) because it restarts the shared stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from minio import Minio
from redis.asyncio import Redis

from privacam.clips.v1.events_pb2 import ClipEvent
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.relay.v1 import relay_broker_service_pb2 as relay_pb
from privacam.retention.v1 import retention_service_pb2 as retention_pb
from privacam.retention.v1 import retention_service_pb2_grpc as retention_grpc
from privacam_sdk import PrivacamClient
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from services.clip_ingest.domain.model import object_name
from services.common.clip_events import clip_deletions
from services.common.healthcheck import serving
from tests.harness import (
    ROOT,
    RUN_DIR,
    SERVICES,
    Coturn,
    Platform,
    cleanup_namespace,
    make_services,
    new_namespace,
    own_coturn,
    partitions_of,
    read_all,
    retention_clock_file,
    running,
    stack_minio,
)
from tests.integration.test_clip_ingest import Home, _home
from tests.live_view import CameraAgent, LiveView, relay_stub, watch
from tests.media import make_mp4
from tests.pki_helpers import PkiFactory

pytestmark = pytest.mark.restarts_stack  # see conftest.py

CAMERAS = 3
RETENTION_DAYS = 30  # the longest a camera may keep clips: nothing is due during the run
CLIP_BUCKET = "privacam-clips"
DEV_TURNSERVER_CONF = ROOT / "stack" / "config" / "turnserver.conf.tmpl"


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """The stack's development coturn config (loopback peers allowed: the test's peers live
    on 127.0.0.1) on ports of its own, without the stack's secret, files and Redis reports."""
    server = own_coturn(
        tmp_path_factory.mktemp("coturn-worst-day"),
        DEV_TURNSERVER_CONF,
        overrides={
            "static-auth-secret": None,  # Coturn.start passes its own
            "userdb": None,
            "pidfile": None,
            "redis-statsdb": None,  # its reports would reach the stack's relay_broker replicas
            "log-file": str(tmp_path_factory.getbasetemp() / "coturn-worst-day.log"),
        },
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def platform(
    stack_env: dict[str, str],
    pki: PkiFactory,
    tmp_path_factory: pytest.TempPathFactory,
    coturn: Coturn,
) -> Iterator[Platform]:
    """The six services of this test only, handing out the test's coturn."""
    namespace = new_namespace(stack_env, "worst")
    log_dir = tmp_path_factory.mktemp("worst-day-logs")
    services = make_services(SERVICES, pki, stack_env, namespace, log_dir, coturn.service_env())
    try:
        with running(*services.values()):
            yield Platform(services, pki, namespace, stack_env)
    finally:
        cleanup_namespace(stack_env, namespace)


def clip_bytes(base: list[bytes], device: str, clip_id: str) -> bytes:
    """The clip a camera sends under this id: one of a few encodings, then a `free` box
    naming the camera and clip, so no two clips have the same bytes and a retry the same."""
    tag = f"{device}/{clip_id}".encode()
    number = int(clip_id.rsplit("-", 1)[1])
    return base[number % len(base)] + (8 + len(tag)).to_bytes(4, "big") + b"free" + tag


@dataclass
class Ledger:
    acknowledged: dict[str, set[str]] = field(default_factory=dict)  # device -> clip ids
    unacknowledged: dict[str, str] = field(default_factory=dict)
    """device -> the clip id it was still retrying when the run stopped (may be stored)."""
    refused: Counter[str] = field(default_factory=Counter)
    last_ack: float = 0.0


async def _camera_loop(home: Home, base: list[bytes], ledger: Ledger, stop: asyncio.Event) -> None:
    done = ledger.acknowledged.setdefault(home.device, set())
    number = 0
    async with PrivacamClient(home.camera, timeout=20) as camera:
        while not stop.is_set():
            clip_id = f"steady-{number:05d}"
            ledger.unacknowledged[home.device] = clip_id
            try:
                await upload_clip(camera, clip_bytes(base, home.device, clip_id), clip_id)
            except grpc.aio.AioRpcError as error:
                ledger.refused[error.code().name] += 1
                await asyncio.sleep(0.3)
                continue  # the same clip id again, as a camera retries its backlog
            done.add(clip_id)
            del ledger.unacknowledged[home.device]
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


@contextlib.asynccontextmanager
async def _live_view(platform: Platform, home: Home, coturn: Coturn) -> AsyncIterator[LiveView]:
    """The camera connects (as its firmware does after losing the broker) and the owner
    watches it relay-only through the test's coturn: frames arrive and keep arriving."""
    agent = CameraAgent(home.camera, relay_only=True)
    try:
        await agent.start()
        async with PrivacamClient(home.owner, timeout=10) as owner:
            view = await watch(
                owner,
                home.device,
                ca_pem=platform.pki.ca_file.read_bytes(),
                trust_domain=platform.pki.trust_domain,
                relay_only=True,
                frame_timeout=10,
            )
            try:
                assert all(f"127.0.0.1:{coturn.port}?" in uri for uri in view.turn.uris)
                assert view.viewer.selected_candidate_types() == ("relay", "relay")
                frames = view.viewer.frames
                await asyncio.sleep(0.5)
                assert view.viewer.frames > frames, "frames stopped"
                yield view
                with contextlib.suppress(grpc.aio.AioRpcError):  # the broker may be gone
                    await relay_stub(owner).EndLiveView(
                        relay_pb.EndLiveViewRequest(session_id=view.session_id)
                    )
            finally:
                await view.close()
    finally:
        await agent.stop()


async def _watch_once(platform: Platform, home: Home, coturn: Coturn) -> None:
    async with _live_view(platform, home, coturn):
        pass


async def _live_view_resumes(
    platform: Platform, home: Home, coturn: Coturn, since: float, within: float = 60
) -> float:
    """Seconds from `since` until a live view shows frames again (camera and app retry)."""
    deadline = since + within
    failures: Counter[str] = Counter()
    while True:
        try:
            await asyncio.wait_for(_watch_once(platform, home, coturn), 30)
            return time.monotonic() - since
        except (grpc.aio.AioRpcError, TimeoutError, ConnectionError) as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else None
            failures[code or type(error).__name__] += 1
            assert time.monotonic() < deadline, f"no live view {within} s after: {failures}"
            await asyncio.sleep(0.5)


async def _clip_events(
    platform: Platform, devices: set[str]
) -> tuple[Counter[tuple[str, str]], set[tuple[str, str]]]:
    """(ClipIngested count per (device, clip), clips named by deletion events) of these
    cameras, from the clip topic."""
    topic = platform.namespace + "privacam.clips.v1"
    seen: Counter[tuple[str, str]] = Counter()
    deleted: set[tuple[str, str]] = set()
    for _, _, value in await read_all(platform, await partitions_of(platform, [topic])):
        event = ClipEvent.FromString(value or b"")
        if event.WhichOneof("event") == "clip_ingested":
            ingested = event.clip_ingested
            if ingested.device_id in devices:
                seen[(ingested.device_id, ingested.clip_id)] += 1
        else:
            deleted.update(
                (d.device_id, d.clip_id) for d in clip_deletions(event) if d.device_id in devices
            )
    return seen, deleted


def _object_names(minio: Minio, prefix: str) -> set[str]:
    return {o.object_name or "" for o in minio.list_objects(CLIP_BUCKET, prefix=prefix)}


def _retention_offset(platform: Platform) -> float:
    path = retention_clock_file(platform.pki)
    return float(path.read_text()) if path.exists() else 0.0


async def _next_deletion(home: Home) -> datetime | None:
    async with PrivacamClient(home.owner) as app:
        stub = retention_grpc.RetentionServiceStub(app.channel("retention"))
        settings = await stub.GetRetentionSettings(
            retention_pb.GetRetentionSettingsRequest(device_id=home.device)
        )
    assert settings.retention_days == RETENTION_DAYS
    if not settings.HasField("next_deletion_at"):
        return None
    return settings.next_deletion_at.ToDatetime(tzinfo=UTC)


async def _download_all(
    home: Home, clip_ids: set[str], base: list[bytes], parallel: int = 8
) -> list[str]:
    """Every clip downloaded and compared byte for byte; the ids that differ or failed."""
    gate = asyncio.Semaphore(parallel)
    wrong: list[str] = []
    async with PrivacamClient(home.owner, timeout=30) as app:

        async def one(clip_id: str) -> None:
            async with gate:
                try:
                    _, data = await download_clip(app, home.device, clip_id)
                except grpc.aio.AioRpcError as error:
                    wrong.append(f"{clip_id}: {error.code().name}")
                    return
            if data != clip_bytes(base, home.device, clip_id):
                wrong.append(f"{clip_id}: other bytes")

        await asyncio.gather(*(one(c) for c in sorted(clip_ids)))
    return wrong


@pytest.mark.timeout(600)  # Kafka's restart alone takes a minute or more
async def test_worst_day(platform: Platform, profiles_home: Path, coturn: Coturn) -> None:
    started_at = time.monotonic()
    homes = [await _home(platform, profiles_home) for _ in range(CAMERAS)]
    for home in homes:  # the longest retention: earlier tests may have moved its clock ahead
        async with PrivacamClient(home.owner) as app:
            await app.device_auth().UpdateCameraSettings(
                id_pb.UpdateCameraSettingsRequest(
                    device_id=home.device, retention_days=RETENTION_DAYS
                )
            )
    devices = {home.device for home in homes}
    clock_before = _retention_offset(platform)
    base = [make_mp4(2.0, width=320, height=180, seed=seed) for seed in range(4)]
    ledger = Ledger()
    stop = asyncio.Event()
    loops = [asyncio.create_task(_camera_loop(home, base, ledger, stop)) for home in homes]
    recovery: dict[str, float] = {}
    live: dict[str, float] = {}
    try:
        await _recovered(ledger, time.monotonic())
        # Retention scheduled the first clips a full retention period after their upload,
        # and at least a day ahead of its own clock (which earlier tests may have moved up to
        # three weeks ahead): nothing can come due during a run of minutes.
        for home in homes:
            due = None
            for _ in range(100):
                if (due := await _next_deletion(home)) is not None:
                    break
                await asyncio.sleep(0.1)
            assert due is not None, "retention never scheduled the camera's clips"
            wall = datetime.now(UTC)
            assert due - wall > timedelta(days=RETENTION_DAYS - 1), (due, wall)
            retention_clock = wall + timedelta(seconds=clock_before)
            assert due - retention_clock > timedelta(days=1), (due, retention_clock)
        live["before"] = await _live_view_resumes(platform, homes[0], coturn, time.monotonic())
        for name in ("clip_ingest", "key_manager", "access_log", "device_auth", "retention"):
            process = platform.services[name]
            assert process.process is not None
            process.process.send_signal(signal.SIGKILL)
            process.process.wait()
            crashed = time.monotonic()
            process.start()
            await asyncio.to_thread(process.wait_serving, 120)
            recovery[name] = await _recovered(ledger, crashed)
        # relay_broker and coturn each crash under a live view; a new one starts after.
        broker = platform.services["relay_broker"]
        async with _live_view(platform, homes[0], coturn):
            assert broker.process is not None
            broker.process.send_signal(signal.SIGKILL)
            broker.process.wait()
            crashed = time.monotonic()
            broker.start()
            live["relay_broker"] = await _live_view_resumes(platform, homes[0], coturn, crashed)
        async with _live_view(platform, homes[0], coturn) as view:
            coturn.kill()
            crashed = time.monotonic()
            await asyncio.sleep(0.5)  # what was in flight and buffered has arrived
            frames = view.viewer.frames
            await asyncio.sleep(1.5)  # an outage, not a blip
            # Every frame came through the killed coturn: none arrives without it.
            assert view.viewer.frames == frames, "frames arrived without the test's coturn"
            await asyncio.to_thread(coturn.start)
            live["coturn"] = await _live_view_resumes(platform, homes[0], coturn, crashed)
        for server in ("minio", "redis", "kafka"):
            _kill_stack_server(server)
            crashed = time.monotonic()
            await asyncio.sleep(2)  # an outage, not a blip
            await asyncio.to_thread(_restart_stack)
            recovery[server] = await _recovered(ledger, crashed, within=180)
        live["after all"] = await _live_view_resumes(platform, homes[0], coturn, time.monotonic())
        await asyncio.sleep(2)  # steady again
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
    for name, process in platform.services.items():
        assert serving(f"127.0.0.1:{process.health_port}"), f"{name} did not recover"
    ingest_seconds = time.monotonic() - started_at

    # Redis came back empty: the clip index rebuilds itself from Kafka. Wait until it has
    # (bounded), then every acknowledged clip must be listed once and play byte for byte.
    started = time.monotonic()
    while time.monotonic() - started < 120:
        complete = True
        for home in homes:
            async with PrivacamClient(home.owner, timeout=30) as app:
                listed_ids = {c.clip_id async for c in list_clips(app, home.device)}
            complete &= ledger.acknowledged[home.device] <= listed_ids
        if complete:
            break
        await asyncio.sleep(1)
    recovery["clip index"] = time.monotonic() - started

    total = sum(len(ids) for ids in ledger.acknowledged.values())
    expected = {
        hashlib.sha256(clip_bytes(base, d, c)).digest()
        for d, ids in ledger.acknowledged.items()
        for c in ids
    }
    assert len(expected) == total, "two acknowledged clips have the same bytes"
    lost = duplicated = 0
    missing_objects: list[str] = []
    missing_index: list[str] = []
    wrong: list[str] = []
    minio = stack_minio(platform.stack_env)
    redis = Redis.from_url(platform.stack_env["PRIVACAM_CLIP_INGEST_REDIS_URL"])
    try:
        for home in homes:
            acknowledged = ledger.acknowledged[home.device]
            # A clip still retried at the stop may have been stored and indexed, unacknowledged.
            pending = ledger.unacknowledged.get(home.device)
            allowed = acknowledged | ({pending} if pending else set())
            async with PrivacamClient(home.owner, timeout=30) as app:
                listed = Counter([c.clip_id async for c in list_clips(app, home.device)])
            lost += len(acknowledged - set(listed))
            duplicated += sum(count - 1 for count in listed.values())
            assert set(listed) <= allowed, set(listed) - allowed
            prefix = object_name(home.tenant, home.device, "").rsplit("/", 1)[0] + "/"
            names = await asyncio.to_thread(_object_names, minio, prefix)
            missing_objects += [
                c for c in acknowledged if object_name(home.tenant, home.device, c) not in names
            ]
            assert names <= {object_name(home.tenant, home.device, c) for c in allowed}
            pipe = redis.pipeline(transaction=False)
            ordered = sorted(acknowledged)
            for clip_id in ordered:
                pipe.exists(f"clip_ingest:clip:{home.tenant}:{home.device}:{clip_id}")
            present = await pipe.execute()
            missing_index += [c for c, found in zip(ordered, present, strict=True) if not found]
    finally:
        await redis.aclose()
    started = time.monotonic()  # every clip of the three cameras at once, 8 at a time each
    for found in await asyncio.gather(
        *(_download_all(home, ledger.acknowledged[home.device], base) for home in homes)
    ):
        wrong += found
    download_seconds = time.monotonic() - started

    events, deleted = await _clip_events(platform, devices)
    acknowledged_keys = {(d, c) for d, ids in ledger.acknowledged.items() for c in ids}
    missing_events = len(acknowledged_keys - set(events))
    repeated_events = sum(n - 1 for key, n in events.items() if key in acknowledged_keys and n > 1)
    clock_after = _retention_offset(platform)
    print(
        f"\nworst day: {total} clips acknowledged, each its own bytes; {lost} lost, "
        f"{duplicated} duplicated, {len(missing_objects)} without an object, "
        f"{len(missing_index)} without an index entry, {len(wrong)} downloaded other bytes or "
        f"failed (all {total} downloaded in {download_seconds:.1f} s), {missing_events} without "
        f"an event, {repeated_events} repeated events, {len(deleted)} named by deletion "
        f"events; refused while down: {dict(ledger.refused)}; recovery (crash to next "
        "acknowledged clip, and the index complete again after Redis): "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in recovery.items())
        + "; live view relay-only through the test's coturn, first frame after: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in live.items())
        + f"; faults phase {ingest_seconds:.0f} s"
    )
    assert total >= 10
    # Retention deleted nothing: it announced no deletion of these cameras' clips and its
    # clock did not move while the test ran; and no object or index entry is gone.
    assert sorted(deleted) == [], sorted(deleted)[:10]
    assert clock_after == clock_before
    assert (lost, duplicated, missing_events, repeated_events) == (0, 0, 0, 0)
    assert (missing_objects, missing_index) == ([], []), (missing_objects[:10], missing_index[:10])
    assert wrong == [], wrong[:10]
    # A part down is a status the camera retries, never "internal error" (which it would not).
    assert not {"INTERNAL", "UNKNOWN"} & set(ledger.refused), ledger.refused
