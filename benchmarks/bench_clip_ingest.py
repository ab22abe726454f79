"""Clip uploads through clip_ingest against raw MinIO PUTs of the same bytes.

Real processes on the local stack: device_auth, key_manager and clip_ingest (mutual TLS,
Kafka with acks=all, Redis, MinIO). Eight enrolled cameras with alerts on upload at once,
each clip over the full path (settings check, data key, streaming MP4 check and
encryption, MinIO, ClipIngested on Kafka, index). The baseline is the same MinIO client
library PUTting the same bytes with the same eight-way concurrency, in the same run, so
the ratios say what the platform's work costs on top of storing the bytes at all.

Figures, for 256 KiB, 1 MiB and 2 MiB clips: clips per second (target at least 0.8x the
raw PUT's) and the p99 latency as "raw p99 / our p99" (target at least 0.8, i.e. our p99
at most 1.25x). Rounds alternate between the two sides; the best round of each is kept.
Alongside, the CPU time every process on the path spent per clip, each side summed over
its rounds: with client, services and servers on the same 2 cores, the throughput ratio
is bounded by the ratio of those totals. From those, one row per size: MinIO's CPU per
clip over clip_ingest's in the same uploads (target at least 1.0: the service never
needs more machines than the object store it writes to), and key_manager's plus the Kafka
broker JVM's CPU per clip over MinIO's (target at most 0.3x). Those two are counted net of
what they spend per second anyway: the broker is shared with whatever else runs on the
stack, and consumers poll while idle, so their gross CPU per clip grows with the rounds'
length rather than with the clips. That background is the lowest CPU per second seen in
the raw PUT rounds, which touch neither; other load that comes and goes thus errs towards
a higher figure, never a lower one.
Then the service's peak resident memory (VmHWM) is read after N = 64 more 2 MiB clips (the
throughput rounds before are the warm-up) and after 4N: "peak after N / peak after 4N" must
stay above 0.9 (flat: memory per upload is bounded, nothing accumulates per clip).
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from minio import Minio

from benchmarks import Result
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam_sdk import PrivacamClient
from privacam_sdk.clips import upload_clip
from tests.harness import (
    RUN_DIR,
    Platform,
    cleanup_namespace,
    local_stack,
    make_services,
    new_namespace,
    process_memory_kib,
    running,
    stack_minio,
)
from tests.media import padded_mp4
from tests.pki_helpers import PkiFactory

CAMERAS = 8
SIZES = {"256 KiB": 256 * 1024, "1 MiB": 1024 * 1024, "2 MiB": 2 * 1024 * 1024}
ROUNDS = 3
CLIPS_PER_ROUND = 48
THROUGHPUT_TARGET = 0.8
P99_TARGET = 0.8  # raw p99 / our p99: ours at most 1.25x
MEMORY_TARGET = 0.9
CPU_TARGET = 1.0  # MinIO's CPU per clip / clip_ingest's: ours at most MinIO's (issue #24)
KEYS_AND_EVENTS_CPU_TARGET = 0.3  # (key_manager + Kafka) CPU per clip / MinIO's, at most
BUCKET = "privacam-bench"


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _round(
    operation: Callable[[int, int], Awaitable[None]], clips: int
) -> tuple[float, list[float]]:
    """Clips per second and each clip's latency, CAMERAS at a time."""
    latencies: list[float] = []
    queue = iter(range(clips))

    async def worker(camera: int) -> None:
        for number in queue:
            began = time.perf_counter()
            await operation(camera, number)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(CAMERAS)))
    return clips / (time.perf_counter() - began), latencies


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _CpuMeter:
    """CPU seconds per process, summed over the rounds measured inside `measure`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.spent = dict.fromkeys(pids, 0.0)
        self.clips = 0
        self.seconds = 0.0
        self.least_rate = dict.fromkeys(pids, float("inf"))
        """The lowest CPU seconds per second of each process over the rounds."""

    async def measure(
        self, operation: Callable[[int, int], Awaitable[None]], clips: int
    ) -> tuple[float, list[float]]:
        before = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        began = time.perf_counter()
        result = await _round(operation, clips)
        elapsed = time.perf_counter() - began
        for name, pid in self.pids.items():
            used = _cpu_seconds(pid) - before[name]
            self.spent[name] += used
            self.least_rate[name] = min(self.least_rate[name], used / elapsed)
        self.seconds += elapsed
        self.clips += clips
        return result

    def ms_per_clip(self, name: str) -> float:
        return 1000 * self.spent[name] / self.clips

    def net_ms_per_clip(self, name: str, idle: _CpuMeter) -> float:
        """CPU per clip less the least the process spent per second in `idle`'s rounds."""
        background = idle.least_rate[name] * self.seconds
        return 1000 * (self.spent[name] - background) / self.clips

    def per_clip_ms(self) -> str:
        parts = {name: 1000 * spent / self.clips for name, spent in self.spent.items()}
        listed = ", ".join(f"{name} {ms:.2f}" for name, ms in parts.items() if ms >= 0.005)
        return f"{sum(parts.values()):.2f} ms ({listed})"


def _stack_pid(name: str) -> int:
    return int((RUN_DIR / "pids" / f"{name}.pid").read_text().split()[0])


async def _cameras(platform: Platform, home: Path) -> tuple[str, list[PrivacamClient]]:
    enrollment = platform.enrollment(home)
    suffix = secrets.token_hex(3)
    owner, tenant = await enrollment.register_account(
        f"bench-{suffix}", f"bench-{suffix}", "a long enough passphrase"
    )
    clients = []
    async with PrivacamClient(owner) as app:
        for n in range(CAMERAS):
            token = await app.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
            camera, device = await enrollment.enroll_camera(
                f"bench-cam-{suffix}-{n}", token.claim_token, f"SN-{suffix}-{n}"
            )
            await app.device_auth().UpdateCameraSettings(
                id_pb.UpdateCameraSettingsRequest(device_id=device, activity_alerts_enabled=True)
            )
            clients.append(PrivacamClient(camera, timeout=60))
    return tenant, clients


async def _measure(platform: Platform, home: Path, minio: Minio) -> list[Result]:
    tenant, cameras = await _cameras(platform, home)
    results: list[Result] = []
    run = secrets.token_hex(3)
    pids = {
        name: service.process.pid
        for name, service in platform.services.items()
        if service.process is not None
    }
    pids |= {name: _stack_pid(name) for name in ("minio", "kafka", "redis")}
    pids["cameras and raw client"] = os.getpid()
    try:
        for label, size in SIZES.items():
            data = padded_mp4(size, seed=size)

            async def ours(
                camera: int, number: int, data: bytes = data, label: str = label
            ) -> None:
                clip_id = f"{run}-{label.replace(' ', '')}-{camera}-{number}-{secrets.token_hex(2)}"
                await upload_clip(cameras[camera], data, clip_id, datetime.now(UTC))

            async def raw(camera: int, number: int, data: bytes = data) -> None:
                name = f"raw/{run}/{camera}/{number}-{secrets.token_hex(2)}"
                await asyncio.to_thread(minio.put_object, BUCKET, name, io.BytesIO(data), len(data))

            await _round(ours, CAMERAS)  # warm-up: channels, key versions, caches
            await _round(raw, CAMERAS)
            best_ours: tuple[float, list[float]] = (0.0, [])
            best_raw: tuple[float, list[float]] = (0.0, [])
            ours_cpu, raw_cpu = _CpuMeter(pids), _CpuMeter(pids)
            for _ in range(ROUNDS):
                measured = await ours_cpu.measure(ours, CLIPS_PER_ROUND)
                best_ours = max(best_ours, measured, key=lambda r: r[0])
                measured = await raw_cpu.measure(raw, CLIPS_PER_ROUND)
                best_raw = max(best_raw, measured, key=lambda r: r[0])
            print(
                f"{label}: CPU per clip, ours {ours_cpu.per_clip_ms()}; "
                f"raw PUT {raw_cpu.per_clip_ms()}",
                file=sys.stderr,
                flush=True,
            )
            results.append(
                Result.compare(
                    f"{label} clip uploads, {CAMERAS} cameras",
                    best_ours[0],
                    "clips/s",
                    "raw MinIO PUT, same bytes",
                    best_raw[0],
                    THROUGHPUT_TARGET,
                )
            )
            results.append(
                Result.compare(
                    f"{label} clip_ingest CPU/clip (MinIO's / ours)",
                    ours_cpu.ms_per_clip("clip_ingest"),
                    "ms",
                    "MinIO CPU/clip, same uploads",
                    ours_cpu.ms_per_clip("minio"),
                    CPU_TARGET,
                    ours_cpu.ms_per_clip("minio") / ours_cpu.ms_per_clip("clip_ingest"),
                )
            )
            keys = ours_cpu.net_ms_per_clip("key_manager", raw_cpu)
            events = ours_cpu.net_ms_per_clip("kafka", raw_cpu)
            print(
                f"{label}: net of their least CPU per second in the raw rounds, key_manager "
                f"{keys:.2f} ms per clip, Kafka {events:.2f}",
                file=sys.stderr,
                flush=True,
            )
            results.append(
                Result.compare(
                    f"{label} key_manager + Kafka CPU/clip (net) / MinIO's",
                    keys + events,
                    "ms",
                    "MinIO CPU/clip, same uploads",
                    ours_cpu.ms_per_clip("minio"),
                    KEYS_AND_EVENTS_CPU_TARGET,
                    at_most=True,
                )
            )
            results.append(
                Result.compare(
                    f"{label} upload p99 (raw p99 / ours)",
                    1 / _p99(best_ours[1]),
                    "1/s",
                    "raw MinIO PUT p99",
                    1 / _p99(best_raw[1]),
                    P99_TARGET,
                )
            )
        # Peak memory stays flat as the clip count grows: the peak after N clips (past a
        # warm-up) against the peak after 4N.
        pid = platform.services["clip_ingest"].process.pid  # type: ignore[union-attr]
        data = padded_mp4(SIZES["2 MiB"], seed=7)

        async def more(camera: int, number: int) -> None:
            clip_id = f"{run}-mem-{camera}-{number}-{secrets.token_hex(2)}"
            await upload_clip(cameras[camera], data, clip_id, datetime.now(UTC))

        await _round(more, 64)
        after_n = process_memory_kib(pid, "VmHWM") * 1024
        await _round(more, 192)
        after_4n = process_memory_kib(pid, "VmHWM") * 1024
        results.append(
            Result.compare(
                "clip_ingest peak RSS after N / after 4N clips",
                after_n / 2**20,
                "MiB",
                "peak RSS after 4N (MiB)",
                after_4n / 2**20,
                MEMORY_TARGET,
            )
        )
    finally:
        for camera in cameras:
            await camera.close()
        for item in minio.list_objects("privacam-clips", prefix=f"t/{tenant}/", recursive=True):
            minio.remove_object("privacam-clips", item.object_name or "")
    return results


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        pki = PkiFactory(Path(scratch) / "pki")
        namespace = new_namespace(stack, "bench")
        services = make_services(
            ("device_auth", "key_manager", "clip_ingest"), pki, stack, namespace, Path(scratch)
        )
        minio = stack_minio(stack, BUCKET)
        try:
            with running(*services.values()):
                platform = Platform(services, pki, namespace, stack)
                return asyncio.run(_measure(platform, Path(scratch) / "home", minio))
        finally:
            cleanup_namespace(stack, namespace)
            for item in minio.list_objects(BUCKET, recursive=True):
                minio.remove_object(BUCKET, item.object_name or "")
