"""The load-and-soak driver shared by tests/integration/test_soak.py (bounded, asserts the
guarantees) and benchmarks/bench_soak.py (longer, reports the figures).

Households of one owner app each own cameras, dealt round-robin. For the whole run:

- every camera uploads a small real MP4 (tests/media.py) on a steady schedule, one
  upload in flight at a time; a camera that falls behind uploads back to back and its
  schedule slips (it never bursts to catch up), and a refused clip is retried with the
  same id, as firmware does;
- every camera is also online on the broker as a tests/live_view.CameraAgent;
- every app browses: lists the newest page of one of its cameras, downloads one of the
  listed clips and checks its bytes, pauses, and again;
- every app holds live-view sessions open: StartLiveView, both sides join signaling,
  the session is held, then ended, and the next one starts. Signaling only, no media:
  aiortc's encoding and DTLS would take most of this 2-core machine and measure the
  test process rather than the platform (the relay benchmark measures media).

Every second a sampler reads each service's resident memory (VmRSS) and the Kafka lag of
every consumer (LagProbe); every `window_seconds` it closes a window: clips acknowledged,
upload latency, the window's lowest memory and lag samples, and errors by status.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DescribeGroupsRequest_v2
from aiokafka.protocol.api import Request

from privacam.clips.v1 import clip_service_pb2 as clips_pb
from privacam.clips.v1.events_pb2 import ClipEvent
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.relay.v1 import relay_broker_service_pb2 as relay_pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as relay_grpc
from privacam.relay.v1 import relay_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from privacam_sdk.enrollment import Enrollment
from services.common import topics
from services.common.clip_events import clip_deletions
from tests.harness import SERVICES, Platform, kafka_options, process_memory_kib
from tests.live_view import CameraAgent, SignalCall, open_signal, read_signal
from tests.media import make_mp4

PASSWORD = "a long enough passphrase"
RETENTION_DAYS = 30
"""The longest retention: earlier tests of a session may have moved retention's clock ahead."""
BROWSE_PAGE = 20
SAMPLE_SECONDS = 1.0
ACCESS_LOG_REPLICA = "access_log (replica)"
"""access_log reads the access topic outside any consumer group (every replica reads every
partition), so it commits no offsets; its lag is its own gauge on /metrics."""
_ACCESS_LOG_LAG = re.compile(rb"^privacam_access_log_consumer_lag_messages (\S+)$", re.M)


@dataclass(frozen=True)
class SoakPlan:
    cameras: int
    apps: int
    load_seconds: float
    """Measured load, after the warm-up."""
    window_seconds: float
    clips_per_camera_per_second: float
    warmup_seconds: float = 0.0
    live_views_per_app: int = 1
    live_view_hold_seconds: float = 15.0
    browse_pause_seconds: float = 1.0
    clip_seconds: float = 2.0
    call_timeout_seconds: float = 60.0

    @property
    def offered_clips_per_second(self) -> float:
        return self.cameras * self.clips_per_camera_per_second


@dataclass
class Camera:
    profile: Profile
    device: str
    clip: bytes


@dataclass
class Household:
    app: Profile
    tenant: str
    cameras: list[Camera] = field(default_factory=list)


@dataclass
class Window:
    number: int
    warmup: bool
    seconds: float
    acknowledged: int
    latencies: list[float]
    rss: dict[str, int]
    """Bytes of resident memory per service: the lowest of the window's samples, i.e. what
    the service holds on to, without the buffers of the uploads in flight at one instant
    (those alone move clip_ingest's RSS by several MiB from one second to the next)."""
    lag: dict[str, int]
    """Messages behind per consumer: the lowest of the window's samples. A consumer that
    falls behind for good raises it; one caught mid-batch at a sample does not."""
    errors: Counter[str]
    listings: int
    downloads: int
    live_views: int
    """Live-view sessions started in the window."""
    peak_lag: int = 0
    """The most messages any consumer was behind at any sample of the window."""

    @property
    def clips_per_second(self) -> float:
        return self.acknowledged / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    @property
    def max_lag(self) -> int:
        return max(self.lag.values(), default=0)


@dataclass
class Ledger:
    """What the load did, and what it has done since the sampler last looked."""

    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    """Device id -> clip ids acknowledged to the camera, in order."""
    errors: Counter[str] = field(default_factory=Counter)
    vanished: set[tuple[str, str]] = field(default_factory=set)
    """(device, clip) a download found NOT_FOUND (only retention may have taken it)."""
    window_acknowledged: int = 0
    window_latencies: list[float] = field(default_factory=list)
    window_errors: Counter[str] = field(default_factory=Counter)
    window_listings: int = 0
    window_downloads: int = 0
    window_live_views: int = 0

    def acknowledge(self, device: str, clip_id: str, latency: float) -> None:
        self.acknowledged.setdefault(device, []).append(clip_id)
        self.window_acknowledged += 1
        self.window_latencies.append(latency)

    def error(self, what: str, status: str) -> None:
        self.errors[f"{what} {status}"] += 1
        self.window_errors[f"{what} {status}"] += 1

    def close_window(self, number: int, warmup: bool, seconds: float) -> Window:
        window = Window(
            number,
            warmup,
            seconds,
            self.window_acknowledged,
            self.window_latencies,
            {},
            {},
            self.window_errors,
            self.window_listings,
            self.window_downloads,
            self.window_live_views,
        )
        self.window_acknowledged = self.window_listings = 0
        self.window_downloads = self.window_live_views = 0
        self.window_latencies, self.window_errors = [], Counter()
        return window


@dataclass
class SoakRun:
    plan: SoakPlan
    windows: list[Window]
    ledger: Ledger
    agent_errors: list[str]
    """What went wrong on the cameras' side of live views (each one is an error)."""

    @property
    def measured(self) -> list[Window]:
        return [w for w in self.windows if not w.warmup]

    @property
    def sustained_clips_per_second(self) -> float:
        measured = self.measured
        seconds = sum(w.seconds for w in measured)
        return sum(w.acknowledged for w in measured) / seconds if seconds > 0 else 0.0


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def status_of(error: grpc.aio.AioRpcError) -> str:
    code: grpc.StatusCode = error.code()
    return str(code.name)


# --- households ---------------------------------------------------------------------------


async def enroll(platform: Platform, home: Path, plan: SoakPlan) -> list[Household]:
    """`plan.apps` accounts, each an owner app; `plan.cameras` cameras dealt among them,
    alerts on, the longest retention, each with its own clip."""
    enrollment = Enrollment(
        platform.pki.ca_file.read_bytes(),
        platform.endpoints()["device_auth_enrollment"],
        platform.endpoints(),
        home=home,
    )
    run = secrets.token_hex(3)
    households = []
    for number in range(plan.apps):
        login = f"soak-{run}-{number}"
        app, tenant = await enrollment.register_account(login, login, PASSWORD)
        households.append(Household(app, tenant))
    for number in range(plan.cameras):
        household = households[number % plan.apps]
        async with PrivacamClient(household.app) as owner:
            token = await owner.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
            profile, device = await enrollment.enroll_camera(
                f"soak-cam-{run}-{number}", token.claim_token, f"SN-soak-{run}-{number}"
            )
            await owner.device_auth().UpdateCameraSettings(
                id_pb.UpdateCameraSettingsRequest(
                    device_id=device,
                    activity_alerts_enabled=True,
                    retention_days=RETENTION_DAYS,
                )
            )
        clip = make_mp4(plan.clip_seconds, width=320, height=180, seed=number)
        household.cameras.append(Camera(profile, device, clip))
    return households


def cameras_of(households: Iterable[Household]) -> list[Camera]:
    return [camera for household in households for camera in household.cameras]


# --- measurements -------------------------------------------------------------------------


def rss_bytes(platform: Platform) -> dict[str, int]:
    """Each running service's resident memory now (/proc/<pid>/status VmRSS)."""
    sizes = {}
    for name, service in platform.services.items():
        if service.process is None or service.process.poll() is not None:
            continue
        with contextlib.suppress(OSError):
            sizes[name] = process_memory_kib(service.process.pid) * 1024
    return sizes


class _DescribeGroups(Request[DescribeGroupsRequest_v2]):  # type: ignore[misc]
    """DescribeGroups pinned to v2: aiokafka 0.14 reads a v3 answer with the v2 schema
    (its DescribeGroupsRequest_v3.RESPONSE_TYPE) and fails with a buffer underrun, and
    AIOKafkaAdminClient.describe_consumer_groups negotiates v3 with Kafka 4."""

    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(self, request_struct_class: type[DescribeGroupsRequest_v2]) -> Any:
        return DescribeGroupsRequest_v2(self._groups)


class LagProbe:
    """Kafka consumer lag of the platform's consumers: for every consumer group of the
    namespace that has members, committed offsets against end offsets (admin and consumer
    APIs); plus access_log's replica, which commits nothing and reports its own lag."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._admin = AIOKafkaAdminClient(**kafka_options(platform.stack_env))
        self._offsets = AIOKafkaConsumer(
            **kafka_options(platform.stack_env), enable_auto_commit=False
        )

    async def __aenter__(self) -> LagProbe:
        await self._admin.start()
        await self._offsets.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def _with_members(self, groups: list[str]) -> list[str]:
        """The groups some consumer belongs to now (a group left behind, such as an old
        generation of the clip index, would otherwise show a lag nobody works off)."""
        by_coordinator: dict[int, list[str]] = {}
        for group in groups:
            by_coordinator.setdefault(await self._admin.find_coordinator(group), []).append(group)
        active = []
        for node, ours in by_coordinator.items():
            response = await self._admin._client.send(node, _DescribeGroups(ours))
            # (error_code, group, state, protocol_type, protocol, members)
            active += [g[1] for g in response.groups if g[5]]
        return active

    def _label(self, group: str) -> str:
        name = group.removeprefix(self._platform.namespace)
        # The index follower's group carries the index's generation, a random id.
        return "clip_ingest.index" if name.startswith("clip_ingest.index.") else name

    async def measure(self) -> dict[str, int]:
        namespace = self._platform.namespace
        ours = [
            group
            for group, *_ in await self._admin.list_consumer_groups()
            if str(group).startswith(namespace)
        ]
        active = await self._with_members(ours)
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in active:
            offsets = await self._admin.list_consumer_group_offsets(group)
            committed[group] = {tp: o.offset for tp, o in offsets.items() if o.offset >= 0}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await self._offsets.end_offsets(partitions) if partitions else {}
        lag: dict[str, int] = {}
        for group, offsets in committed.items():
            behind = sum(max(0, ends[tp] - offset) for tp, offset in offsets.items())
            label = self._label(group)
            lag[label] = max(lag.get(label, 0), behind)
        replica = await asyncio.to_thread(self._access_log_replica_lag)
        if replica is not None:
            lag[ACCESS_LOG_REPLICA] = replica
        return lag

    def _access_log_replica_lag(self) -> int | None:
        service = self._platform.services.get("access_log")
        if service is None:
            return None
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5
            ) as reply:
                found = _ACCESS_LOG_LAG.search(reply.read())
        except OSError:
            return None
        return int(float(found.group(1))) if found else None


async def wait_for_lag_to_drain(
    platform: Platform, within_seconds: float
) -> tuple[float, dict[str, int]]:
    """Seconds until every consumer has caught up (or `within_seconds` passed), and the lag
    seen last."""
    started = time.monotonic()
    async with LagProbe(platform) as probe:
        while True:
            lag = await probe.measure()
            elapsed = time.monotonic() - started
            if not any(lag.values()) or elapsed > within_seconds:
                return elapsed, lag
            await asyncio.sleep(0.5)


# --- the load -----------------------------------------------------------------------------


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))


async def _camera_uploads(
    camera: Camera, plan: SoakPlan, ledger: Ledger, stop: asyncio.Event, phase: float, run: str
) -> None:
    period = 1 / plan.clips_per_camera_per_second
    loop = asyncio.get_running_loop()
    number = 0
    async with PrivacamClient(camera.profile, timeout=plan.call_timeout_seconds) as client:
        due = loop.time() + phase * period  # cameras spread over the period, not in step
        while not stop.is_set():
            await _pause(stop, due - loop.time())
            if stop.is_set():
                return
            due = max(due + period, loop.time())  # behind: the schedule slips, no burst
            clip_id = f"soak-{run}-{number:06d}"  # a repeated id would store nothing
            began = time.perf_counter()
            try:
                await upload_clip(client, camera.clip, clip_id)
            except grpc.aio.AioRpcError as error:
                ledger.error("upload", status_of(error))
                continue  # the same clip id next time, as a camera retries its backlog
            ledger.acknowledge(camera.device, clip_id, time.perf_counter() - began)
            number += 1


async def _browse(
    household: Household,
    plan: SoakPlan,
    ledger: Ledger,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    async with PrivacamClient(household.app, timeout=plan.call_timeout_seconds) as client:
        while not stop.is_set():
            camera = rng.choice(household.cameras)
            try:
                page = await client.clips().ListClips(
                    clips_pb.ListClipsRequest(
                        device_id=camera.device,
                        captured=types_pb2.TimeRange(),
                        page_size=BROWSE_PAGE,
                    ),
                    timeout=client.timeout,
                )
                ledger.window_listings += 1
            except grpc.aio.AioRpcError as error:
                ledger.error("list", status_of(error))
                await _pause(stop, plan.browse_pause_seconds)
                continue
            if page.clips:
                clip_id = rng.choice(page.clips).clip_id
                try:
                    _, data = await download_clip(client, camera.device, clip_id)
                except grpc.aio.AioRpcError as error:
                    if error.code() is grpc.StatusCode.NOT_FOUND:
                        ledger.vanished.add((camera.device, clip_id))
                    else:
                        ledger.error("download", status_of(error))
                else:
                    ledger.window_downloads += 1
                    if data != camera.clip:
                        ledger.error("download", "WRONG_BYTES")
            await _pause(stop, plan.browse_pause_seconds)


async def _end_reason(call: SignalCall) -> str:
    """Read a joined session's stream until the broker closes it; the reason. (A pending
    read is never cancelled: cancelling a read cancels the call, which ends the session.)"""
    while True:
        message = await call.read()
        if not isinstance(message, relay_pb.SignalResponse):  # grpc.aio.EOF
            return "STREAM_ENDED"
        if message.HasField("session_closed"):
            return str(relay_pb2.SessionEndReason.Name(message.session_closed.reason))


async def _watch(
    household: Household,
    plan: SoakPlan,
    ledger: Ledger,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    async with PrivacamClient(household.app, timeout=30) as client:
        # Without the tracing interceptor: through it, every cancelled Signal stream leaves
        # a pending request-iterator task that asyncio reports when it is collected.
        stub = relay_grpc.RelayBrokerServiceStub(client.untraced_channel("relay_broker"))
        while not stop.is_set():
            camera = rng.choice(household.cameras)
            try:
                started = await stub.StartLiveView(
                    relay_pb.StartLiveViewRequest(device_id=camera.device), timeout=30
                )
            except grpc.aio.AioRpcError as error:
                ledger.error("start live view", status_of(error))
                await _pause(stop, 1.0)
                continue
            ledger.window_live_views += 1
            call = open_signal(stub)
            try:
                join = relay_pb.SignalJoin(session_id=started.session_id)
                await call.write(relay_pb.SignalRequest(join=join))
                first = await asyncio.wait_for(read_signal(call), 30)
                if not first.HasField("peer_joined"):
                    ledger.error("live view", "NO_PEER_JOINED")
                    continue
                ended = asyncio.ensure_future(_end_reason(call))
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {ended, stopped},
                    timeout=plan.live_view_hold_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stopped.cancel()
                if ended.done():
                    ledger.error("live view ended early", ended.result())
                    continue
                await stub.EndLiveView(
                    relay_pb.EndLiveViewRequest(session_id=started.session_id), timeout=30
                )
                reason = await asyncio.wait_for(ended, 30)
                if reason != "SESSION_END_REASON_VIEWER_ENDED":
                    ledger.error("live view ended as", reason)
            except grpc.aio.AioRpcError as error:
                ledger.error("live view", status_of(error))
            except TimeoutError:
                ledger.error("live view", "NO_ANSWER_IN_30_S")
            finally:
                call.cancel()


async def run_load(
    platform: Platform,
    households: list[Household],
    plan: SoakPlan,
    *,
    progress: TextIO | None = sys.stderr,
    seed: int = 0,
) -> SoakRun:
    """Drive the plan's load for its warm-up and measured time and sample every window;
    the table's rows go to `progress` as they close."""
    rng = random.Random(seed)
    run_id = secrets.token_hex(3)
    ledger = Ledger()
    stop = asyncio.Event()
    cameras = cameras_of(households)
    agents = [CameraAgent(camera.profile) for camera in cameras]
    for agent in agents:
        await agent.start()
    loads: list[Coroutine[Any, Any, None]] = []
    for number, camera in enumerate(cameras):
        phase = number / len(cameras)
        loads.append(_camera_uploads(camera, plan, ledger, stop, phase, run_id))
    for household in households:
        loads.append(_browse(household, plan, ledger, stop, random.Random(rng.random())))
        loads += [
            _watch(household, plan, ledger, stop, random.Random(rng.random()))
            for _ in range(plan.live_views_per_app)
        ]
    windows: list[Window] = []
    tasks = [asyncio.create_task(load) for load in loads]
    try:
        async with LagProbe(platform) as probe:
            if progress is not None:
                print(window_header(platform), file=progress, flush=True)
            schedule = [(True, plan.warmup_seconds)] if plan.warmup_seconds > 0 else []
            measured = max(1, round(plan.load_seconds / plan.window_seconds))
            schedule += [(False, plan.load_seconds / measured)] * measured
            number = 0 if plan.warmup_seconds > 0 else 1
            for warmup, seconds in schedule:
                began = time.monotonic()
                lowest: dict[str, int] = {}
                least_behind: dict[str, int] = {}
                peak_lag = 0
                while (left := began + seconds - time.monotonic()) > 0:
                    await asyncio.sleep(min(SAMPLE_SECONDS, left))
                    for name, size in rss_bytes(platform).items():
                        lowest[name] = min(lowest.get(name, size), size)
                    for name, behind in (await probe.measure()).items():
                        least_behind[name] = min(least_behind.get(name, behind), behind)
                        peak_lag = max(peak_lag, behind)
                for task in tasks:  # a load loop that died would quietly lighten the load
                    if task.done():
                        task.result()
                window = ledger.close_window(number, warmup, time.monotonic() - began)
                window.rss, window.lag, window.peak_lag = lowest, least_behind, peak_lag
                windows.append(window)
                if progress is not None:
                    print(window_row(platform, window), file=progress, flush=True)
                number += 1
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        agent_errors = [f"{type(e).__name__}: {e}" for agent in agents for e in agent.errors]
        for agent in agents:
            await agent.stop()
    return SoakRun(plan, windows, ledger, agent_errors)


# --- verification -------------------------------------------------------------------------


@dataclass
class Verification:
    acknowledged: int
    lost: list[tuple[str, str]]
    """Acknowledged, not deleted by retention, and not listed."""
    duplicated: list[tuple[str, str]]
    """Listed more than once."""
    deleted_by_retention: set[tuple[str, str]]
    listed_unacknowledged: int
    """Listed though never acknowledged: an upload whose answer was lost after it was stored
    and that the load stopped before retrying. Not a loss; reported."""


async def deleted_clips(platform: Platform) -> set[tuple[str, str]]:
    """(device, clip) of every clip deletion event on the namespace's clip topic."""
    topic = platform.namespace + topics.CLIPS.name
    consumer = AIOKafkaConsumer(
        **kafka_options(platform.stack_env),
        enable_auto_commit=False,
    )
    await consumer.start()
    deleted: set[tuple[str, str]] = set()
    try:
        await consumer.topics()  # a consumer without a subscription fetches metadata on demand
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            return deleted
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    event = ClipEvent.FromString(record.value or b"")
                    deleted.update((d.device_id, d.clip_id) for d in clip_deletions(event))
    finally:
        await consumer.stop()
    return deleted


async def verify_listed(
    platform: Platform, households: list[Household], *ledgers: Ledger, within_seconds: float = 30
) -> Verification:
    """Every acknowledged clip listed exactly once by its owner's app (clips retention
    deleted meanwhile excepted: each left a ClipDeleted event); listings are retried for
    a bounded time before a clip counts as lost."""
    acknowledged = {(d, c) for x in ledgers for d, ids in x.acknowledged.items() for c in ids}
    deadline = time.monotonic() + within_seconds
    while True:
        listed: Counter[tuple[str, str]] = Counter()
        for household in households:
            async with PrivacamClient(household.app, timeout=60) as app:
                for camera in household.cameras:
                    async for clip in list_clips(app, camera.device, page_size=100):
                        listed[(camera.device, clip.clip_id)] += 1
        deleted = await deleted_clips(platform)
        lost = sorted(acknowledged - deleted - set(listed))
        if not lost or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    return Verification(
        acknowledged=len(acknowledged),
        lost=lost,
        duplicated=sorted(key for key, count in listed.items() if count > 1),
        deleted_by_retention=deleted & acknowledged,
        listed_unacknowledged=len(set(listed) - acknowledged),
    )


# --- the table ----------------------------------------------------------------------------

_SHORT = {
    "device_auth": "da",
    "key_manager": "km",
    "clip_ingest": "ci",
    "relay_broker": "rb",
    "retention": "re",
    "access_log": "al",
}


def window_header(platform: Platform) -> str:
    """Columns: clips acknowledged and their upload latency; app listings, downloads and
    live views started; each service's RSS; lag (each consumer's lowest sample of the
    window) of clip_ingest's index follower and retention's schedule (the clip topic's
    readers), of access_log's replica (the access topic), the most behind consumer of
    the namespace, and the most any consumer was behind at any sample."""
    names = [n for n in SERVICES if n in platform.services]
    rss = " ".join(f"{_SHORT.get(n, n):>5}" for n in names)
    return (
        f"{'window':>7} {'s':>5} {'clips':>5} {'clip/s':>6} {'p50ms':>6} {'p99ms':>6} "
        f"{'lists':>5} {'dls':>4} {'lives':>5} | RSS MiB {rss} | lag: {'index':>5} "
        f"{'sched':>5} {'alog':>5} {'any':>5} {'peak':>5} | errors"
    )


def window_row(platform: Platform, window: Window) -> str:
    names = [n for n in SERVICES if n in platform.services]
    rss = " ".join(f"{window.rss.get(n, 0) / 2**20:5.0f}" for n in names)
    label = "warm-up" if window.warmup else str(window.number)
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(window.errors.items())) or "-"
    return (
        f"{label:>7} {window.seconds:5.1f} {window.acknowledged:5d} "
        f"{window.clips_per_second:6.1f} {window.p50 * 1000:6.0f} {window.p99 * 1000:6.0f} "
        f"{window.listings:5d} {window.downloads:4d} {window.live_views:5d} | "
        f"        {rss} | lag: {window.lag.get('clip_ingest.index', 0):5d} "
        f"{window.lag.get('retention.schedule', 0):5d} "
        f"{window.lag.get(ACCESS_LOG_REPLICA, 0):5d} {window.max_lag:5d} {window.peak_lag:5d} | "
        f"{errors}"
    )


def format_windows(platform: Platform, windows: list[Window]) -> str:
    return "\n".join([window_header(platform), *(window_row(platform, w) for w in windows)])
