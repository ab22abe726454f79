"""The demo of a camera's life, run by `make up` against the local platform.

It grows with the platform. Today: every service answers over mutual TLS, a
certificate from nowhere is turned away, an event crosses Kafka from one
service to all the others inside one trace, and a clip's key lives and dies:
wrapped under its household's key of the day, still readable after rotation,
unreadable anywhere once its period is crypto-shredded.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
from opentelemetry import trace

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as log_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as keys_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.clip_format import ClipBinding, ClipFormatError, decrypt_all, encrypt_all
from privacam_core.timestamps import to_timestamp
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.enrollment import Enrollment
from privacam_sdk.profile import SERVICES
from services.common.telemetry import setup_tracing

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("PRIVACAM_RUN_DIR", ROOT / ".run"))
HOME = RUN_DIR / "home"


def say(text: str) -> None:
    print(f"\n== {text}")


def operator_profile() -> Profile:
    pki = RUN_DIR / "pki"
    return Profile.import_files(
        "operator",
        pki / "ca.crt",
        pki / "operators/demo/tls.crt",
        pki / "operators/demo/tls.key",
        base=HOME,
    )


async def main() -> int:
    setup_tracing("privacam-demo")
    profile = operator_profile()
    print(f"acting as the support operator 'demo' (profile in {profile.directory})")
    async with PrivacamClient(profile, timeout=5) as client:
        say("Every service answers over mutual TLS")
        for service in SERVICES:
            print(f"  {service:14} {await client.health(service)}")

        say("A caller without a client certificate is turned away at the handshake")
        anonymous = grpc.ssl_channel_credentials(profile.ca_file.read_bytes())
        async with grpc.aio.secure_channel(profile.endpoint("clip_ingest"), anonymous) as channel:
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            try:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                print("  !! it was let in")
                return 1
            except grpc.aio.AioRpcError as error:
                print(f"  refused: {error.code().name}")

        say("An event crosses Kafka from device_auth to every service, in one trace")
        with trace.get_tracer("demo").start_as_current_span("demo probe") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            sent = await client.send_probe("device_auth")
        print(f"  device_auth published probe {sent.probe_id[:8]}… in trace {trace_id}")
        pending = set(SERVICES)
        for _ in range(100):
            for service in sorted(pending):
                probe = await client.get_probe(service, sent.probe_id)
                if probe.received:
                    verdict = "same trace" if probe.trace_id == trace_id else "DIFFERENT TRACE"
                    print(f"  {service:14} consumed it ({verdict})")
                    pending.discard(service)
            if not pending:
                break
            await asyncio.sleep(0.1)
        if pending:
            print(f"  !! not consumed by {', '.join(sorted(pending))}")
            return 1
    if await household() != 0:
        return 1
    from scripts.demo_clips import clips  # sample clips from PyAV (dev group)

    if await clips() != 0:
        return 1
    from scripts.demo_live_view import live_view  # real WebRTC peers (aiortc, dev group)

    if await live_view() != 0:
        return 1
    if await key_lifecycle() != 0:
        return 1
    from scripts.demo_watch import watch

    if await watch() != 0:
        return 1
    from scripts.demo_retention import retention  # last: it cancels the owner's account

    if await retention() != 0:
        return 1
    say("Done. Prometheus: http://127.0.0.1:9090/targets · stop with `make down`")
    return 0


async def household() -> int:
    """An owner registers, pairs a camera, turns alerts on, sets a PIN and shares it."""
    ca = (RUN_DIR / "pki" / "ca.crt").read_bytes()
    enrollment = Enrollment(ca, home=HOME)
    suffix = secrets.token_hex(3)
    say("An owner registers; the app's key is made on the phone and never leaves it")
    owner, tenant = await enrollment.register_account(
        "owner", f"alex-{suffix}", "correct horse battery staple", "Alex's phone"
    )
    print(f"  account {tenant[:8]}…, app certificate in {owner.directory}")
    async with PrivacamClient(owner) as app:
        identity = app.device_auth()
        token = await identity.CreateClaimToken(id_pb.CreateClaimTokenRequest())
        print(f"  claim token for a new camera (single use, 10 minutes): {token.claim_token[:6]}…")

        say("The camera pairs with the token and a CSR of its own key")
        # The app hands over its certificate with the token: the camera pins its key as the
        # only one whose privacy statements it will apply.
        camera, device = await enrollment.enroll_camera(
            "front-door", token.claim_token, "SN-DEMO-0001", [owner.cert_file.read_bytes()]
        )
        print(f"  camera {device[:8]}… holds {camera.cert_file}")
        print(f"  it pinned the owner app's key: {', '.join(camera.owner_keys())[:8]}…")
        try:
            await enrollment.enroll_camera("impostor", token.claim_token, "SN-EVIL-0002")
            print("  !! the token worked twice")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  the same token again: {error.code().name}")

        say("Alerts are off until the owner turns them on; the owner sets a PIN")
        cameras = (await identity.ListCameras(id_pb.ListCamerasRequest())).cameras
        print(
            f"  alerts={'on' if cameras[0].settings.activity_alerts_enabled else 'off'}, "
            f"retention={cameras[0].settings.retention_days} days"
        )
        updated = await identity.UpdateCameraSettings(
            id_pb.UpdateCameraSettingsRequest(device_id=device, activity_alerts_enabled=True)
        )
        print(f"  now alerts={'on' if updated.settings.activity_alerts_enabled else 'off'}")
        await identity.SetPin(id_pb.SetPinRequest(device_id=device, pin="4071"))
        print("  PIN set (stored as a salted argon2id hash)")

        say("The owner shares the camera with a household member")
        await enrollment.register_account("sam", f"sam-{suffix}", "another long passphrase")
        grant = await identity.CreateGrant(
            id_pb.CreateGrantRequest(
                device_id=device,
                grantee_login=f"sam-{suffix}",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE, identity_pb2.GRANT_SCOPE_CLIPS],
            )
        )
        print(f"  grant {grant.grant.grant_id[:8]}… for live view and clips")
    sam = Profile.load("sam", HOME)
    async with PrivacamClient(sam) as member:
        shared = (await member.device_auth().ListCameras(id_pb.ListCamerasRequest())).cameras
        print(
            f"  Sam sees {len(shared)} camera: {shared[0].device_id[:8]}… "
            f"({identity_pb2.CameraRole.Name(shared[0].role).removeprefix('CAMERA_ROLE_').lower()})"
        )
    return 0


async def key_lifecycle() -> int:
    """What clip_ingest and retention ask of the key manager (only services may)."""
    pki = RUN_DIR / "pki"
    as_service = Profile.import_files(
        "clip-ingest-service",
        pki / "ca.crt",
        pki / "services/clip_ingest/tls.crt",
        pki / "services/clip_ingest/tls.key",
        base=HOME,
    )
    tenant = "household-" + secrets.token_hex(3)
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id="front-door", clip_id="clip-0001")
    async with PrivacamClient(as_service, timeout=10) as client:
        keys: keys_grpc.KeyManagerServiceAsyncStub = keys_grpc.KeyManagerServiceStub(
            client.channel("key_manager")
        )
        say("A clip gets its own data key, wrapped under the household's key of the period")
        generated = await keys.GenerateDataKey(keys_pb.GenerateDataKeyRequest(context=context))
        clip = encrypt_all(
            b"\x00" * 300_000,
            generated.plaintext_key,
            generated.wrapped_key.SerializeToString(),
            ClipBinding(tenant, "front-door", "clip-0001"),
        )
        print(
            f"  key version {generated.wrapped_key.key_version}; clip encrypted: {len(clip)} bytes"
        )
        try:
            decrypt_all(
                clip, generated.plaintext_key, ClipBinding("other-house", "front-door", "clip-0001")
            )
            print("  !! opened under another household's name")
            return 1
        except ClipFormatError:
            print("  served under another household's name, it does not decrypt: fails closed")

        say("Playing it: the access is logged first, and the log's receipt unlocks the key once")
        log: log_grpc.AccessLogServiceAsyncStub = log_grpc.AccessLogServiceStub(
            client.channel("access_log")
        )
        access = log_pb2.AccessRecord(
            access_id=str(uuid.uuid4()),
            tenant_id=tenant,
            principal=types_pb2.Principal(
                kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id="owner-phone"
            ),
            resource=log_pb2.Resource(
                kind=log_pb2.RESOURCE_KIND_CLIP, device_id="front-door", clip_id="clip-0001"
            ),
            purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
            service="clip_ingest",
            occurred_at=to_timestamp(datetime.now(UTC)),
        )
        receipt = (await log.Append(log_pb.AppendRequest(record=access))).receipt
        play = keys_pb.UnwrapRequest(
            wrapped_key=generated.wrapped_key,
            context=context,
            purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
            receipt=receipt,
        )
        opened = (await keys.Unwrap(play)).plaintext_key == generated.plaintext_key
        print(
            f"  entry {receipt.leaf_index} of the household's log (head of "
            f"{receipt.tree_head.tree_size}, signed by {receipt.tree_head.key_id}); "
            f"key released: {opened}"
        )
        try:
            await keys.Unwrap(play)
            print("  !! the same receipt opened the key twice")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  the same receipt again: {error.code().name}")

        say("An operator starts a new period at once; new clips use the new key")
        async with PrivacamClient(operator_profile(), timeout=10) as operator:
            rotated = await keys_grpc.KeyManagerServiceStub(operator.channel("key_manager")).Rotate(
                keys_pb.RotateRequest(tenant_id=tenant)
            )
        fresh = await keys.GenerateDataKey(keys_pb.GenerateDataKeyRequest(context=context))
        print(
            f"  now version {rotated.current.version}; a new clip's key is wrapped under "
            f"version {fresh.wrapped_key.key_version}, the old one's stays under version 1"
        )

        say("retention destroys the old period: every copy of the clip, backups included, is noise")
        as_retention = Profile.import_files(
            "retention-service",
            pki / "ca.crt",
            pki / "services/retention/tls.crt",
            pki / "services/retention/tls.key",
            base=HOME,
        )
        async with PrivacamClient(as_retention, timeout=10) as retention:
            await keys_grpc.KeyManagerServiceStub(retention.channel("key_manager")).DestroyPeriod(
                keys_pb.DestroyPeriodRequest(tenant_id=tenant, key_version=1)
            )
        try:
            await keys.Unwrap(play)
            print("  !! the destroyed key still opened")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  {error.code().name}: {error.details()}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
