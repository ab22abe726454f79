"""Live view: time to first frame, signaling cost, and memory per idle camera.

Real processes (device_auth, access_log, relay_broker; real Kafka, Redis, coturn), a real
WebRTC camera and viewer (aiortc) on loopback:
(a) "app asks to watch" (StartLiveView) to "first frame decoded", peer to peer, against the
    same two WebRTC peers negotiating in-process without any platform (the physical floor of
    ICE + DTLS + the first keyframe); target at least 0.5x (the platform at most doubles it);
(b) the same through coturn only (relay candidates only) against (a); target at least 0.77x
    (relayed at most 1.3x the P2P time). Times are the best of alternating attempts
    (medians are printed too); rates are 1 / seconds, higher is better;
(c) signaling round trips (app -> broker -> camera -> broker -> app, validated, across the
    replica bus) per second, against grpc.health Check round trips on the same server and
    channel; target at least 0.8x;
(d) TURN credential renewals (RenewTurnCredentials for a running session: the caller must
    be a side of it) per second against the same no-op; target at least 0.8x: the
    credential issuance of the issue's "credential issuance plus signaling round trips";
(e) live-view setups (StartLiveView: device_auth authorization, a durable access-log append,
    TURN credentials for both sides, the camera told; then EndLiveView and its access-log
    append) per second against two no-op calls (a setup is two calls), reported without a
    target: the authorization and the log entry made before any credential exists are the
    point of it, and each is a call to another service; (c) to (e) alternate rounds with
    their no-op, and the ratio is the median of the ratios of adjacent rounds;
(g) the camera's own checks of a session request (privacam_sdk.camera: the access-log
    receipt of the session, then the app's signed fingerprint), on a real request from the
    platform, per second against their two signature verifications alone (Ed25519 of the
    log's head, ECDSA P-256 of the app's fingerprint), the physical floor of the check;
    reported without a target, with its cost per session in microseconds (the first-frame
    figures (a) and (b) include it);
(f) idle cameras: CAMERAS control streams (one mTLS connection each, as real cameras) held
    open on one broker process, its RSS growth per camera, against idle mTLS connections (a
    health Check each, kept open) to another fresh broker process; figure in streams per MiB,
    target at least 0.5x of the bare connections, and the goal of at most 50 KB per camera is
    printed alongside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks import Result
from benchmarks.timing import paired_rates
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from privacam_core.identity import PrincipalKind, principal_from_pem, spiffe_uri
from privacam_core.receipts import tree_head_signing_input
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.camera import SessionGate
from privacam_sdk.enrollment import Enrollment
from privacam_sdk.live_view import Signer, sign_dtls_fingerprint, signed_payload
from services.common.pki import certificate_pem, issue_leaf, new_private_key, private_key_pem
from services.relay_broker.adapters.links import turn_pb
from services.relay_broker.domain import turn
from services.relay_broker.domain.model import Side
from tests.harness import (
    ServiceProcess,
    cleanup_namespace,
    local_stack,
    make_service,
    make_services,
    new_namespace,
    process_memory_kib,
)
from tests.live_view import (
    CameraAgent,
    key_and_chain,
    open_control,
    open_signal,
    read_signal,
    relay_stub,
    watch,
)
from tests.pki_helpers import PkiFactory
from tests.webrtc_peers import CameraPeer, ViewerPeer, ice_servers

ATTEMPTS = 8
IN_FLIGHT = 4
CAMERAS = int(os.environ.get("BENCH_RELAY_CAMERAS", "10000"))
CONNECT_BATCH = 100
CONNECT_SECONDS = 30
GOAL_KB_PER_CAMERA = 50
CANDIDATE = pb.SignalMessage(
    candidate=pb.IceCandidate(
        candidate="candidate:1 1 UDP 2122260223 127.0.0.1 54400 typ host", sdp_mid="0"
    )
)


async def _in_process_first_frame(stack: dict[str, str]) -> float:
    """The floor: both peers in this process, SDP handed over directly, no platform."""
    secret = stack["PRIVACAM_TURN_SHARED_SECRET"].encode()
    uris = tuple(stack["PRIVACAM_TURN_URIS"].split(","))
    sid = "00000000-0000-4000-8000-00000000beef"
    key = new_private_key()
    now = datetime.now(UTC)
    camera = CameraPeer(
        key, [], ice_servers(turn_pb(turn.issue(secret, uris, sid, Side.CAMERA, now, 600)))
    )
    viewer = ViewerPeer(ice_servers(turn_pb(turn.issue(secret, uris, sid, Side.APP, now, 600))))
    began = time.perf_counter()
    try:
        answer, _ = await camera.answer(sid, await viewer.offer())
        await viewer.accept(answer)
        return await asyncio.wait_for(viewer.first_frame_at, 20) - began
    finally:
        await viewer.close()
        await camera.close()


async def _platform_first_frame(
    app: PrivacamClient, device: str, ca: bytes, trust_domain: str, relay_only: bool
) -> float:
    view = await watch(app, device, ca_pem=ca, trust_domain=trust_domain, relay_only=relay_only)
    try:
        assert view.first_frame_after is not None
        return view.first_frame_after
    finally:
        await relay_stub(app).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
        await view.close()


async def _with_camera(
    profile: Profile,
    relay_only: bool,
    work: Callable[[], Awaitable[float]],
    seen: dict[str, pb.SessionRequested] | None = None,
) -> float:
    agent = CameraAgent(profile, relay_only=relay_only)
    await agent.start()
    try:
        return await work()
    finally:
        await agent.stop()
        if seen is not None:
            seen.update(agent.requests)
        for error in agent.errors:
            print(f"camera error: {error!r}", file=sys.stderr)


class EchoCamera:
    """A camera without media: joins every session and sends each signal straight back."""

    def __init__(self, client: PrivacamClient) -> None:
        self._stub = relay_stub(client)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._control = open_control(self._stub)
        await self._control.write(
            pb.CameraControlRequest(
                hello=pb.CameraHello(firmware_version="bench", max_sessions=IN_FLIGHT)
            )
        )
        await self._control.read()
        self._spawn(self._run())

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        async for message in self._control:
            if message.HasField("heartbeat"):
                await self._control.write(pb.CameraControlRequest(heartbeat=message.heartbeat))
            elif message.HasField("session_requested"):
                self._spawn(self._echo(message.session_requested.session_id))

    async def _echo(self, session_id: str) -> None:
        call = open_signal(self._stub)
        await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=session_id)))
        # A setup measured by (d) may end before the camera joins: NOT_FOUND, as designed.
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in call:
                if response.HasField("signal"):
                    await call.write(pb.SignalRequest(signal=response.signal))
                elif response.HasField("session_closed"):
                    return

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._control.cancel()


async def _live(
    services: dict[str, ServiceProcess], pki: PkiFactory, stack: dict[str, str], home: Path
) -> list[Result]:
    endpoints = {name: s.endpoint for name, s in services.items()}
    enrollment = Enrollment(
        pki.ca_file.read_bytes(),
        f"127.0.0.1:{services['device_auth'].public_port}",
        endpoints,
        home=home,
    )
    suffix = secrets.token_hex(3)
    owner, _ = await enrollment.register_account(
        "bench-owner", f"bench-{suffix}", "a long enough passphrase"
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
    camera, device = await enrollment.enroll_camera("bench-cam", token.claim_token, f"SN-{suffix}")
    ca = pki.ca_file.read_bytes()
    floor: list[float] = []
    direct: list[float] = []
    relayed: list[float] = []
    requests: dict[str, pb.SessionRequested] = {}
    failed = 0

    async def attempt(into: list[float], work: Awaitable[float]) -> None:
        nonlocal failed
        try:
            into.append(await asyncio.wait_for(work, 60))
        except (TimeoutError, AssertionError, grpc.aio.AioRpcError) as error:
            failed += 1  # counted and reported, never silently dropped
            print(f"attempt failed: {error!r}", file=sys.stderr)

    async with PrivacamClient(owner, timeout=20) as app:
        for _ in range(ATTEMPTS):
            await attempt(floor, _in_process_first_frame(stack))
            await attempt(
                direct,
                _with_camera(
                    camera,
                    False,
                    lambda: _platform_first_frame(app, device, ca, pki.trust_domain, False),
                    requests,
                ),
            )
            await attempt(
                relayed,
                _with_camera(
                    camera,
                    True,
                    lambda: _platform_first_frame(app, device, ca, pki.trust_domain, True),
                ),
            )
        print(f"{failed} of {3 * ATTEMPTS} first-frame attempts failed", file=sys.stderr)
        t_floor, t_direct, t_relayed = (min(x) for x in (floor, direct, relayed))
        ms = {
            name: f"{min(x) * 1000:.0f} / {statistics.median(x) * 1000:.0f} ms"
            for name, x in (("in-process", floor), ("P2P", direct), ("relayed", relayed))
        }
        print(
            f"first frame, best / median of {ATTEMPTS}: "
            + ", ".join(f"{name} {value}" for name, value in ms.items()),
            file=sys.stderr,
        )

        echo = EchoCamera(PrivacamClient(camera))
        await echo.start()
        stub = relay_stub(app)
        health = health_pb2_grpc.HealthStub(app.channel("relay_broker"))
        check = health_pb2.HealthCheckRequest()
        calls = []
        for _ in range(IN_FLIGHT):
            started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=device))
            call = open_signal(stub)
            await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=started.session_id)))
            assert (await read_signal(call)).HasField("peer_joined")
            calls.append((started.session_id, call))

        async def round_trip(worker: int) -> None:
            call = calls[worker][1]
            await call.write(pb.SignalRequest(signal=CANDIDATE))
            response = await read_signal(call)
            assert response.HasField("signal")

        async def noop(_: int) -> None:
            await health.Check(check)

        signaling = await paired_rates(round_trip, noop, in_flight=IN_FLIGHT)

        async def renew(worker: int) -> None:
            request = pb.RenewTurnCredentialsRequest(session_id=calls[worker][0])
            assert (await stub.RenewTurnCredentials(request)).turn.password

        renewals = await paired_rates(renew, noop, in_flight=IN_FLIGHT)
        for session_id, call in calls:
            await stub.EndLiveView(pb.EndLiveViewRequest(session_id=session_id))
            call.cancel()

        async def setup(_: int) -> None:
            started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=device))
            await stub.EndLiveView(pb.EndLiveViewRequest(session_id=started.session_id))

        async def two_noops(_: int) -> None:
            await health.Check(check)
            await health.Check(check)

        setups = await paired_rates(setup, two_noops, in_flight=IN_FLIGHT, rounds=4)
        await echo.stop()
    checks, verifications = _camera_check_rates(camera, owner, next(iter(requests.values())))

    return [
        Result.compare(
            "live view P2P: first frames/s", 1 / t_direct, "1/s",
            "same peers in-process, no platform", 1 / t_floor, 0.5,
        ),
        Result.compare(
            "live view relayed: first frames/s", 1 / t_relayed, "1/s",
            "live view P2P", 1 / t_direct, 1 / 1.3,
        ),
        Result.compare(
            "signaling round trips", signaling.figure, "trips/s",
            "health Check, same server", signaling.baseline, 0.8, signaling.ratio,
        ),
        Result.compare(
            "TURN credential renewals", renewals.figure, "renewals/s",
            "health Check, same server", renewals.baseline, 0.8, renewals.ratio,
        ),
        Result.compare(
            "live-view setups (start + end)", setups.figure, "sessions/s",
            "two health Checks, same server", setups.baseline, None, setups.ratio,
        ),
        Result.compare(
            "camera's checks of a session (receipt + viewer)", checks, "sessions/s",
            "their two signature verifications alone", verifications, None,
        ),
    ]  # fmt: skip


def _camera_check_rates(
    camera: Profile, app: Profile, request: pb.SessionRequested, rounds: int = 5, count: int = 200
) -> tuple[float, float]:
    """Best of ``rounds`` of ``count`` checks, alternating with as many bare verifications."""
    me = principal_from_pem(camera.cert_file.read_bytes(), camera.trust_domain)
    assert me.tenant_id is not None
    app_key, chain = key_and_chain(app)
    fingerprint = ":".join(["7E"] * 32)
    offer = f"v=0\r\ns=-\r\na=fingerprint:sha-256 {fingerprint}\r\n"
    proof = sign_dtls_fingerprint(
        app_key, chain, request.session_id, "sha-256", fingerprint, Signer.APP
    )
    log_keys = camera.log_keys()
    ca = camera.ca_file.read_bytes()
    now = datetime.now(UTC)
    head = request.receipt.tree_head
    head_key = log_keys[head.key_id]
    head_input = tree_head_signing_input(
        head.tenant_id, head.tree_size, head.timestamp.ToNanoseconds(), head.root_hash
    )
    app_public = app_key.public_key()
    fingerprint_input = signed_payload(request.session_id, "sha-256", fingerprint, Signer.APP)

    def check() -> None:
        gate = SessionGate(  # a new camera each time: one gate serves a session once
            tenant_id=me.tenant_id or "",
            device_id=me.name,
            log_keys=log_keys,
            trusted_ca_pem=ca,
            trust_domain=camera.trust_domain,
            max_age=timedelta(hours=1),
        )
        gate.check_viewer(gate.check_request(request, now), proof, offer, now)

    def verify() -> None:
        head_key.verify(head.signature, head_input)
        app_public.verify(proof.signature, fingerprint_input, ec.ECDSA(hashes.SHA256()))

    best = {check: 0.0, verify: 0.0}
    for _ in range(rounds):
        for work in (check, verify):
            began = time.perf_counter()
            for _ in range(count):
                work()
            best[work] = max(best[work], count / (time.perf_counter() - began))
    print(
        f"camera's checks: {1e6 / best[check]:.0f} us a session; "
        f"the two verifications alone: {1e6 / best[verify]:.0f} us",
        file=sys.stderr,
    )
    return best[check], best[verify]


def _camera_credentials(pki: PkiFactory, count: int) -> list[grpc.ChannelCredentials]:
    """One certificate per simulated camera (one key for all: signing is not measured)."""
    key = new_private_key()
    key_pem = private_key_pem(key)
    ca = pki.ca_file.read_bytes()
    now = datetime.now(UTC)
    tenant = "bench-" + secrets.token_hex(3)
    credentials = []
    for number in range(count):
        uri = spiffe_uri(pki.trust_domain, PrincipalKind.CAMERA, f"cam-{number}", tenant)
        leaf = issue_leaf(pki.issuing, key.public_key(), uri, now, timedelta(hours=2))
        chain = certificate_pem(leaf, pki.issuing.certificate)
        credentials.append(grpc.ssl_channel_credentials(ca, key_pem, chain))
    return credentials


async def _hold_connections(
    endpoint: str, credentials: list[grpc.ChannelCredentials], streams: bool
) -> tuple[list[grpc.aio.Channel], list[asyncio.Task[None]], int]:
    """Open one mTLS connection per credential; with `streams`, a camera control stream on
    each (heartbeats echoed), else one health Check (the connection then idles)."""
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Task[None]] = []

    async def camera(channel: grpc.aio.Channel, ready: asyncio.Future[None]) -> None:
        call = open_control(pb_grpc.RelayBrokerServiceStub(channel))
        await call.write(
            pb.CameraControlRequest(hello=pb.CameraHello(firmware_version="b", max_sessions=1))
        )
        await call.read()
        ready.set_result(None)
        async for message in call:
            if message.HasField("heartbeat"):
                await call.write(pb.CameraControlRequest(heartbeat=message.heartbeat))

    held = 0

    async def open_one(creds: grpc.ChannelCredentials) -> None:
        nonlocal held
        channel = grpc.aio.secure_channel(endpoint, creds)
        channels.append(channel)
        try:
            if not streams:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=CONNECT_SECONDS
                )
            else:
                ready = asyncio.get_running_loop().create_future()
                tasks.append(asyncio.ensure_future(camera(channel, ready)))
                await asyncio.wait_for(ready, CONNECT_SECONDS)
            held += 1
        except (TimeoutError, grpc.aio.AioRpcError):
            pass  # counted: the figure is per connection actually held

    for start in range(0, len(credentials), CONNECT_BATCH):
        before = held
        await asyncio.gather(*(open_one(c) for c in credentials[start : start + CONNECT_BATCH]))
        if held == before:  # a whole batch refused or stalled: measure what is held
            print(f"connections stalled at {held}", file=sys.stderr, flush=True)
            break
    return channels, tasks, held


async def _memory(
    broker: ServiceProcess, credentials: list[grpc.ChannelCredentials], streams: bool
) -> float:
    """KiB of broker RSS per connection (or per camera stream)."""
    assert broker.process is not None
    pid = broker.process.pid
    await asyncio.sleep(1)
    before = process_memory_kib(pid)
    channels, tasks, held = await _hold_connections(broker.endpoint, credentials, streams)
    await asyncio.sleep(3)  # a heartbeat or so, then the process settles
    after = process_memory_kib(pid)
    kind = "camera streams" if streams else "idle connections"
    print(f"{held} of {len(credentials)} {kind} held", file=sys.stderr, flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close(grace=None)
    return (after - before) / max(held, 1)


def _broker(
    pki: PkiFactory,
    stack: dict[str, str],
    namespace: str,
    logs: Path,
    peers: dict[str, ServiceProcess],
) -> ServiceProcess:
    broker = make_service("relay_broker", pki, stack, namespace, logs)
    broker.env.update({f"PRIVACAM_PEER_{n.upper()}": s.endpoint for n, s in peers.items()})
    # Idle cameras: a realistic keep-alive, not the tests' half second.
    broker.env["PRIVACAM_RELAY_BROKER_HEARTBEAT_INTERVAL_SECONDS"] = "10"
    return broker


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        pki = PkiFactory(root / "pki")
        namespace = new_namespace(stack, "bench-relay")
        logs = root / "logs"
        logs.mkdir()
        services = make_services(
            ("device_auth", "access_log", "relay_broker"), pki, stack, namespace, logs
        )
        try:
            for service in services.values():
                service.start()
            for service in services.values():
                service.wait_serving()
            results = asyncio.run(_live(services, pki, stack, root / "home"))
            for result in results:  # early, in case the memory phase is cut short
                print(
                    f"{result.name}: {result.ratio:.2f}x (target {result.target_text})",
                    file=sys.stderr,
                )
            services["relay_broker"].stop()
            print(f"making {CAMERAS} camera certificates ...", file=sys.stderr, flush=True)
            credentials = _camera_credentials(pki, CAMERAS)
            per_kib = {}
            for streams in (False, True):
                broker = _broker(pki, stack, namespace, logs, services)
                broker.start()
                broker.wait_serving()
                try:
                    per_kib[streams] = asyncio.run(_memory(broker, credentials, streams))
                finally:
                    broker.stop()
            print(
                f"{CAMERAS} idle cameras: {per_kib[True]:.1f} KiB each "
                f"(goal {GOAL_KB_PER_CAMERA} KB); idle mTLS connection: {per_kib[False]:.1f} KiB",
                file=sys.stderr,
            )
            results.append(
                Result.compare(
                    f"{CAMERAS} idle camera streams per MiB",
                    1024 / per_kib[True],
                    "cameras/MiB",
                    "idle mTLS connections per MiB",
                    1024 / per_kib[False],
                    0.5,
                )
            )
            return results
        finally:
            for service in services.values():
                service.stop()
            cleanup_namespace(stack, namespace)
