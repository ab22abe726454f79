"""Load across replicas: one peer name for three replicas, calls spread round robin, and a
replica killed under load costs no call (services.common.peers)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest

from privacam.diagnostics.v1 import diagnostics_service_pb2 as diagnostics_pb
from privacam.diagnostics.v1 import diagnostics_service_pb2_grpc as diagnostics_grpc
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import list_clips, upload_clip
from services.common.healthcheck import serving
from tests.harness import (
    Platform,
    ServiceProcess,
    cleanup_namespace,
    make_service,
    make_services,
    new_namespace,
    running,
)
from tests.media import make_mp4
from tests.pki_helpers import PkiFactory

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CALLS = 60
CAMERAS = 3


@dataclass
class Replica(ServiceProcess):
    """A service process listening on its own loopback address (as pods have their own)."""

    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def wait_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not serving(f"{self.host}:{self.health_port}"):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_file.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not serving:\n{self.log_file.read_text()[-3000:]}")
            time.sleep(0.2)

    def handled(self, method: str) -> float:
        """Calls of `method` this replica has answered (grpc_server_handled_total)."""
        url = f"http://{self.host}:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in line
        )


@dataclass
class Replicated:
    platform: Platform
    key_managers: list[Replica]
    device_auths: list[Replica]


def replicas(
    name: str,
    pki: PkiFactory,
    stack: dict[str, str],
    namespace: str,
    log_dir: Path,
    hosts: tuple[str, ...] = HOSTS,
) -> list[Replica]:
    made = []
    for n, host in enumerate(hosts):
        one = make_service(name, pki, stack, namespace, log_dir)
        one.env[f"PRIVACAM_{name.upper()}_BIND_HOST"] = host
        made.append(
            Replica(
                one.name,
                one.grpc_port,
                one.health_port,
                one.metrics_port,
                log_dir / f"{name}-{n}.log",
                env=one.env,
                public_port=one.public_port,
                host=host,
            )
        )
    return made


def one_name(replicas: list[Replica]) -> str:
    """The peer target naming every replica; the peer channel checks their certificates
    against PRIVACAM_PEER_IPV4_AUTHORITY, "localhost", which the test PKI's carry."""
    return "ipv4:" + ",".join(r.endpoint for r in replicas)


@pytest.fixture(scope="module")
def replicated(
    stack_env: dict[str, str], pki: PkiFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicated]:
    namespace = new_namespace(stack_env, "replicas")
    log_dir = tmp_path_factory.mktemp("replica-logs")
    services = make_services(("clip_ingest", "access_log"), pki, stack_env, namespace, log_dir)
    key_managers = replicas("key_manager", pki, stack_env, namespace, log_dir)
    # The first on 127.0.0.1: the harness's enrollment endpoint is there.
    device_auths = replicas(
        "device_auth", pki, stack_env, namespace, log_dir, ("127.0.0.1", *HOSTS[1:])
    )
    peers = {
        "PRIVACAM_PEER_KEY_MANAGER": one_name(key_managers),
        "PRIVACAM_PEER_DEVICE_AUTH": one_name(device_auths),
        **{f"PRIVACAM_PEER_{n.upper()}": s.endpoint for n, s in services.items()},
    }
    for service in [*services.values(), *key_managers, *device_auths]:
        service.env.update(peers)
    # Apps and cameras enroll and sign in at the first device_auth replica.
    everything = {**services, "key_manager": key_managers[0], "device_auth": device_auths[0]}
    try:
        with running(*key_managers, *device_auths, *services.values()):
            yield Replicated(
                Platform(everything, pki, namespace, stack_env), key_managers, device_auths
            )
    finally:
        cleanup_namespace(stack_env, namespace)


@cache
def clip(seed: int) -> bytes:
    return make_mp4(2.0, seed=seed)


async def home(platform: Platform, directory: Path) -> tuple[Profile, Profile, str]:
    """A household with one camera whose alerts are on: (owner, camera, device id)."""
    enrollment = platform.enrollment(directory)
    suffix = secrets.token_hex(4)
    owner, _ = await enrollment.register_account(
        f"replicas-{suffix}", f"replicas-{suffix}", "a long enough passphrase"
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
        profile, device = await enrollment.enroll_camera(
            f"cam-{suffix}", token.claim_token, f"SN-{suffix}"
        )
        await app.device_auth().UpdateCameraSettings(
            id_pb.UpdateCameraSettingsRequest(device_id=device, activity_alerts_enabled=True)
        )
    return owner, profile, device


async def list_many(
    owner: Profile, device: str, count: int, until: asyncio.Event | None = None
) -> tuple[int, list[BaseException]]:
    """`count` listings of the camera's clips (or as many as fit until `until` is set)."""
    failures: list[BaseException] = []
    n = 0
    async with PrivacamClient(owner, timeout=20) as client:
        while n < count if until is None else not until.is_set():
            try:
                [clip async for clip in list_clips(client, device)]
            except Exception as error:
                failures.append(error)
            n += 1
    return n, failures


async def upload_many(
    profile: Profile, prefix: str, count: int, until: asyncio.Event | None = None
) -> tuple[int, list[BaseException]]:
    """`count` uploads one after another (or as many as fit until `until` is set): how
    many were made, and the failures."""
    failures: list[BaseException] = []
    n = 0
    async with PrivacamClient(profile, timeout=20) as client:
        while n < count if until is None else not until.is_set():
            try:
                assert (await upload_clip(client, clip(n % 4), f"{prefix}-{n}")).created
            except Exception as error:
                failures.append(error)
            n += 1
    return n, failures


Load = Callable[
    [str, int, "asyncio.Event | None"], Coroutine[Any, Any, tuple[int, list[BaseException]]]
]


async def spreads_and_survives_a_kill(replicas: list[Replica], method: str, load: Load) -> None:
    """`load` (prefix, count, until) makes calls that each cost one `method` call on some
    replica: each replica answers 20-47 % of them, and one SIGKILLed under load fails
    none of them."""
    before = [r.handled(method) for r in replicas]
    started = time.monotonic()
    made, failures = await load("spread", CALLS, None)
    assert failures == [], failures
    calls = [r.handled(method) - b for r, b in zip(replicas, before, strict=True)]
    shares = [c / sum(calls) for c in calls]
    print(
        f"\n{made} calls in {time.monotonic() - started:.1f} s; {method} per replica "
        f"{calls}, shares {[f'{s:.0%}' for s in shares]}"
    )
    assert sum(calls) >= made
    assert all(0.20 <= s <= 0.47 for s in shares), shares

    # One replica SIGKILLed under load: its calls go to the others, none fails.
    stop = asyncio.Event()
    running_load = asyncio.create_task(load("kill", 0, stop))
    await asyncio.sleep(2)
    victim, survivors = replicas[1], (replicas[0], replicas[2])
    assert victim.process is not None
    victim_calls = victim.handled(method) - before[1] - calls[1]
    victim.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.process.wait)
    after_kill = [r.handled(method) for r in survivors]
    await asyncio.sleep(5)
    stop.set()
    made, failures = await running_load
    served = [r.handled(method) - b for r, b in zip(survivors, after_kill, strict=True)]
    print(
        f"{made} calls; the replica on {victim.host} was killed after {victim_calls:.0f} of "
        f"them, the two left answered {served} in the 5 s after; {len(failures)} failed"
    )
    assert failures == [], failures
    assert all(s > 0 for s in served)


async def test_load_spreads_across_replicas(replicated: Replicated, profiles_home: Path) -> None:
    """Each clip upload asks key_manager for a data key (GenerateDataKey)."""
    platform = replicated.platform
    cameras = [(await home(platform, profiles_home))[1] for _ in range(CAMERAS)]

    async def uploads(
        prefix: str, count: int, until: asyncio.Event | None
    ) -> tuple[int, list[BaseException]]:
        results = await asyncio.gather(
            *(
                upload_many(c, f"{prefix}-{n}", count // CAMERAS, until)
                for n, c in enumerate(cameras)
            )
        )
        return sum(n for n, _ in results), [f for _, failed in results for f in failed]

    await spreads_and_survives_a_kill(replicated.key_managers, "GenerateDataKey", uploads)


async def test_device_auth_load_spreads_across_replicas(
    replicated: Replicated, profiles_home: Path
) -> None:
    """Each clip listing asks device_auth whether the app may see the camera
    (AuthorizeCameraAccess)."""
    platform = replicated.platform
    homes = [await home(platform, profiles_home) for _ in range(CAMERAS)]

    async def listings(
        prefix: str, count: int, until: asyncio.Event | None
    ) -> tuple[int, list[BaseException]]:
        results = await asyncio.gather(
            *(list_many(owner, device, count // CAMERAS, until) for owner, _, device in homes)
        )
        return sum(n for n, _ in results), [f for _, failed in results for f in failed]

    await spreads_and_survives_a_kill(replicated.device_auths, "AuthorizeCameraAccess", listings)


async def _listed(owner: Profile, device: str, prefix: str) -> set[str]:
    async with PrivacamClient(owner, timeout=20) as client:
        return {c.clip_id async for c in list_clips(client, device) if c.clip_id.startswith(prefix)}


async def _whole_fleet(replicated: Replicated) -> list[Replica]:
    """Every replica of key_manager and device_auth, serving: those earlier tests killed
    (the spread tests kill one of each) are started again."""
    fleet = [*replicated.key_managers, *replicated.device_auths]
    for replica in fleet:
        if replica.process is None or replica.process.poll() is not None:
            replica.start()
    for replica in fleet:
        await asyncio.to_thread(replica.wait_serving)
    return fleet


@pytest.mark.timeout(600)
async def test_rolling_restart_under_load(replicated: Replicated, profiles_home: Path) -> None:
    """Every replica of key_manager and device_auth restarted one at a time, as a rollout
    does (SIGTERM, drain, a new process on the same address), while cameras upload and apps
    list clips through the SDK: no call fails, and every clip uploaded is listed after."""
    platform = replicated.platform
    fleet = await _whole_fleet(replicated)
    homes = [await home(platform, profiles_home) for _ in range(2)]
    prefix = f"roll-{secrets.token_hex(3)}"

    stop = asyncio.Event()
    load = [
        asyncio.create_task(upload_many(camera, f"{prefix}-{n}", 0, stop))
        for n, (_, camera, _) in enumerate(homes)
    ] + [asyncio.create_task(list_many(owner, device, 0, stop)) for owner, _, device in homes]
    await asyncio.sleep(2)
    rolled = []
    started = time.monotonic()
    for replica in fleet:
        began = time.monotonic()
        code = await asyncio.to_thread(replica.stop)
        assert code == 0, f"{replica.name} on {replica.host} did not drain cleanly: {code}"
        replica.start()
        await asyncio.to_thread(replica.wait_serving)
        rolled.append(f"{replica.name}@{replica.host} {time.monotonic() - began:.1f} s")
        await asyncio.sleep(1)  # a rollout waits for readiness, then a little more
    await asyncio.sleep(2)
    stop.set()
    results = await asyncio.gather(*load)
    failures = [f for _, failed in results for f in failed]
    uploads = sum(n for n, _ in results[: len(homes)])
    listings = sum(n for n, _ in results[len(homes) :])
    print(
        f"\nrolled {len(fleet)} replicas in {time.monotonic() - started:.1f} s "
        f"({'; '.join(rolled)}); {uploads} uploads and {listings} listings meanwhile, "
        f"{len(failures)} failed"
    )
    assert failures == [], failures
    assert uploads > 0
    assert listings > 0
    for n, (owner, _, device) in enumerate(homes):
        made = results[n][0]
        expected = {f"{prefix}-{n}-{i}" for i in range(made)}
        deadline = time.monotonic() + 30
        while (listed := await _listed(owner, device, f"{prefix}-{n}-")) != expected:
            assert time.monotonic() < deadline, f"lost: {sorted(expected - listed)[:5]}"
            await asyncio.sleep(0.5)


async def _get_probe(
    operator: Profile, replica: Replica, probe_id: str
) -> diagnostics_pb.GetProbeResponse:
    """GetProbe asked of this one replica (its certificate names "localhost")."""
    credentials = grpc.ssl_channel_credentials(
        operator.ca_file.read_bytes(),
        operator.key_file.read_bytes(),
        operator.cert_file.read_bytes(),
    )
    options = [("grpc.default_authority", "localhost")]
    async with grpc.aio.secure_channel(replica.endpoint, credentials, options) as channel:
        stub = diagnostics_grpc.DiagnosticsServiceStub(channel)
        request = diagnostics_pb.GetProbeRequest(probe_id=probe_id)
        return await stub.GetProbe(request, timeout=10)


async def test_probe_answered_across_replicas(replicated: Replicated, profiles_home: Path) -> None:
    """`privacam probe` asks one replica of each service whether the probe reached it:
    whichever replica the call lands on must know (every replica reads every probe)."""
    platform = replicated.platform
    fleet = await _whole_fleet(replicated)
    operator = platform.profile("operator", platform.pki.operator(), profiles_home)
    async with PrivacamClient(operator, timeout=10) as client:
        sent = await client.send_probe("device_auth")  # its first replica: 127.0.0.1
    started = time.monotonic()
    missing = {r.endpoint for r in fleet}
    while missing and time.monotonic() - started < 15:
        for replica in fleet:
            if replica.endpoint not in missing:
                continue
            seen = await _get_probe(operator, replica, sent.probe_id)
            if seen.received:
                assert seen.origin_service == "device_auth"
                missing.discard(replica.endpoint)
        await asyncio.sleep(0.2)
    print(
        f"\nprobe seen by {len(fleet) - len(missing)} of {len(fleet)} replicas "
        f"within {time.monotonic() - started:.1f} s"
    )
    assert not missing, f"replicas that never saw the probe: {sorted(missing)}"
