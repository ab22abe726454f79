"""The chart on a real Kubernetes (the one-node cluster of `make k8s`): `helm install` into a
namespace enforcing the `restricted` Pod Security level, with the Secrets made as the NOTES
tell a platform team, against the backing servers of stack/k8s/backing.sh.

The tests share one release (tests/k8s/conftest.py: `release`) and run in file order:
installed and serving over mutual TLS, a camera's life through the cluster's Services, the
NetworkPolicies enforced, a rolling upgrade under load without a failed call, and last
`helm uninstall` leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.relay.v1 import relay_broker_service_pb2 as relay_pb
from privacam_sdk import PrivacamClient, access_log_cli
from privacam_sdk.cli import build_parser
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from privacam_sdk.enrollment import Enrollment
from privacam_sdk.profile import Profile
from services.common.catalog import SERVICES
from tests.k8s.chart_secrets import TRUST_DOMAIN
from tests.k8s.conftest import (
    RELEASE,
    REPO,
    RESOURCE_KINDS,
    Release,
    component_running,
    helm_values,
)
from tests.live_view import CameraAgent, relay_stub, watch
from tests.media import make_mp4

PIN = "2468"
PASSPHRASE = "correct horse battery staple"


def test_helm_install_serves_mtls(release: Release) -> None:
    """Every Deployment available on the image built here (never pulled); `helm test`
    finds each service SERVING, and over mutual TLS presenting its own SPIFFE ID."""
    cluster, ns = release.cluster, release.namespace
    deployments = release.deployments()
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        release.fullname(s) for s in SERVICES
    )
    pods = cluster.get("pods", "-n", ns, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            assert container["image"] == cluster.image
            assert container["imagePullPolicy"] == "Never"
    events = cluster.get("events", "-n", ns)["items"]
    pulls = [e["message"] for e in events if e.get("reason") in ("Pulling", "ErrImageNeverPull")]
    assert not pulls, pulls

    out = cluster.helm("test", RELEASE, "-n", ns, "--timeout", "10m")
    print(out)
    succeeded = [line for line in out.splitlines() if line.strip() == "Phase:          Succeeded"]
    assert len(succeeded) == len(SERVICES), out


def _profile_endpoints(release: Release) -> tuple[dict[str, str], str]:
    endpoints = {s: release.endpoint(s) for s in SERVICES if s != "privacy_watch"}
    return endpoints, release.endpoint("device_auth", port="enroll")


async def _owner(release: Release, home: Path, label: str) -> tuple[Profile, Enrollment]:
    endpoints, enroll = _profile_endpoints(release)
    enrollment = Enrollment(
        release.material.ca_file.read_bytes(), enroll, endpoints, TRUST_DOMAIN, home
    )
    login = f"{label}-{secrets.token_hex(4)}"
    owner, _ = await enrollment.register_account(label, login, PASSPHRASE, f"{label}'s phone")
    return owner, enrollment


async def _camera(
    app: PrivacamClient, owner: Profile, enrollment: Enrollment
) -> tuple[Profile, str]:
    identity = app.device_auth()
    token = await identity.CreateClaimToken(id_pb.CreateClaimTokenRequest())
    camera, device = await enrollment.enroll_camera(
        f"camera-{secrets.token_hex(3)}",
        token.claim_token,
        f"SN-K8S-{secrets.token_hex(4)}",
        [owner.cert_file.read_bytes()],
    )
    await identity.UpdateCameraSettings(
        id_pb.UpdateCameraSettingsRequest(device_id=device, activity_alerts_enabled=True)
    )
    await identity.SetPin(id_pb.SetPinRequest(device_id=device, pin=PIN))
    return camera, device


@pytest.mark.timeout(900)
async def test_camera_life_on_kubernetes(release: Release, tmp_path: Path) -> None:
    """The demo's camera life against the cluster's Services, from outside the pods: an owner
    registers, a camera pairs, sends an alert clip, the owner plays it back (PIN, logged
    access, key released), watches the camera live (the broker's signaling, peer to peer),
    and the household's log verifies."""
    owner, enrollment = await _owner(release, tmp_path, "owner")
    ca = release.material.ca_file.read_bytes()
    async with PrivacamClient(owner, timeout=30) as app:
        camera, device = await _camera(app, owner, enrollment)
        clip = make_mp4(6.0, seed=7)
        clip_id = f"motion-{secrets.token_hex(3)}"
        async with PrivacamClient(camera, timeout=30) as cam:
            stored = await upload_clip(cam, clip, clip_id, datetime.now(UTC))
        assert stored.created
        listed = [c.clip_id async for c in list_clips(app, device)]
        assert listed == [clip_id]
        _, played = await download_clip(app, device, clip_id, pin=PIN)
        assert played == clip

        agent = CameraAgent(camera)
        await agent.start()
        try:
            view = await watch(app, device, ca_pem=ca, trust_domain=TRUST_DOMAIN, pin=PIN)
            assert view.first_frame_after is not None
            print(
                "live view through the cluster's relay-broker: first frame after "
                f"{view.first_frame_after * 1000:.0f} ms, "
                f"path {view.viewer.selected_candidate_types()}"
            )
            await relay_stub(app).EndLiveView(
                relay_pb.EndLiveViewRequest(session_id=view.session_id)
            )
            await view.close()
        finally:
            await agent.stop()

    # What `privacam access-log list --camera <id>` runs: every entry verified against the
    # household's signed log (the listing, the playback and the view among them).
    args = build_parser().parse_args(["access-log", "list", "--camera", device])
    assert await access_log_cli.run(args, owner) == 0


def _connects(release: Release, source: str, target: str, port: int) -> bool:
    """Whether a pod of `source` opens a TCP connection to `target`'s Service port."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({target!r}, {port}), timeout=3).close()\n"
        "except OSError:\n"
        "    sys.exit(3)\n"
    )
    out = subprocess.run(
        [
            release.cluster.kubectl,
            "--kubeconfig",
            release.cluster.kubeconfig,
            *("-n", release.namespace, "exec", f"deploy/{release.fullname(source)}", "--"),
            *("python", "-c", code),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode in (0, 3), f"kubectl exec: {out.stderr.strip()}"
    return out.returncode == 0


def test_network_policies_enforced(release: Release) -> None:
    """The chart's NetworkPolicies, enforced by the policy agent of stack/k8s/: a pod of
    clip-ingest reaches key-manager, a pod of relay-broker does not."""
    assert component_running("kube-router"), "no NetworkPolicy agent: start it with make k8s"
    key_manager = release.fullname("key_manager")
    assert _connects(release, "clip_ingest", key_manager, 8443)
    assert not _connects(release, "relay_broker", key_manager, 8443)
    # Both still reach what the design lets them: device-auth (every service calls it).
    assert _connects(release, "relay_broker", release.fullname("device_auth"), 8443)


def _pods(release: Release) -> set[str]:
    """The release's pods, terminating ones included."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    items = release.cluster.get("pods", "-n", release.namespace, "-l", selector)["items"]
    return {p["metadata"]["name"] for p in items}


def _wait_gone(release: Release, pods: set[str], timeout: float = 180) -> set[str]:
    """Waits until none of `pods` exists; returns those left at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := pods & _pods(release)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


@pytest.mark.timeout(900)
async def test_helm_upgrade_without_failed_calls(release: Release, tmp_path: Path) -> None:
    """`helm upgrade` with a changed setting rolls every Deployment (maxSurge 1,
    maxUnavailable 0, a preStop pause, a graceful drain) while an app and a camera keep
    calling: not one call fails."""
    cluster, ns = release.cluster, release.namespace
    before = _pods(release)
    owner, enrollment = await _owner(release, tmp_path, "upgrade")
    calls = 0
    failures: list[str] = []
    done = asyncio.Event()

    async with PrivacamClient(owner, timeout=30) as app:
        camera, device = await _camera(app, owner, enrollment)
        async with PrivacamClient(camera, timeout=30) as cam:

            async def cameras() -> None:
                await app.device_auth().ListCameras(id_pb.ListCamerasRequest())

            async def clips() -> None:
                [c async for c in list_clips(app, device)]

            async def upload(n: int) -> None:
                clip = make_mp4(1.0, seed=n)
                await upload_clip(cam, clip, f"upgrade-{n}", datetime.now(UTC))

            async def load() -> None:
                nonlocal calls
                n = 0
                while not done.is_set():
                    n += 1
                    steps = [("ListCameras", cameras()), ("ListClips", clips())]
                    if n % 5 == 0:
                        steps.append(("UploadClip", upload(n)))
                    for name, step in steps:
                        try:
                            await step
                            calls += 1
                        except grpc.aio.AioRpcError as error:
                            failures.append(f"{name}: {error.code().name}: {error.details()}")
                    await asyncio.sleep(0.2)

            worker = asyncio.create_task(load())
            await asyncio.sleep(2)
            started = time.monotonic()
            await asyncio.to_thread(
                cluster.helm,
                "upgrade",
                RELEASE,
                str(REPO / "charts/privacam"),
                *("-n", ns),
                *helm_values(cluster),
                *("--set", "serviceDefaults.logLevel=DEBUG"),
            )
            await asyncio.to_thread(release.wait_available)
            rolled = time.monotonic() - started
            # The load goes on until every old pod is gone: through their preStop pause
            # and their drain, not only until the new ones are ready.
            left = await asyncio.to_thread(_wait_gone, release, before)
            done.set()
            await worker

    after = _pods(release)
    print(f"upgrade rolled in {rolled:.0f} s under load: {calls} calls, {len(failures)} failed")
    assert not left, f"old pods still there: {sorted(left)}"
    assert not (before & after), f"pods not replaced: {sorted(before & after)}"
    assert calls > 50
    assert not failures, failures[:10]


def test_helm_uninstall_leaves_nothing(release: Release) -> None:
    cluster, ns = release.cluster, release.namespace
    cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "180s")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    deadline = time.monotonic() + 90
    while True:
        left = json.loads(
            cluster.run("get", RESOURCE_KINDS, "-n", ns, "-l", selector, "-o", "json")
        )
        if not left["items"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left["items"], [f"{i['kind']}/{i['metadata']['name']}" for i in left["items"]]
