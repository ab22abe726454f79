"""Backup and restore of platform state (services/common/backup.py) against the real stack:
a backup taken from the running platform, restored into an empty namespace, served again
by fresh device_auth and key_manager processes, with the recovery time and point measured.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as keys_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk import PrivacamClient, Profile
from services.common import backup
from services.common.settings import KafkaSettings
from tests.harness import Platform, delete_namespace_topics, make_service, new_namespace
from tests.integration.test_key_manager import _receipt

PASSWORD = "a long enough passphrase"


def _kafka(platform: Platform, namespace: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=platform.stack_env["PRIVACAM_KAFKA_BOOTSTRAP_SERVERS"],
        namespace=namespace,
        topic_partitions=1,
    )


async def _cameras(profile: Profile, endpoint: str) -> list[str]:
    moved = Profile(
        profile.name,
        profile.directory,
        {**profile.endpoints, "device_auth": endpoint},
        profile.trust_domain,
    )
    async with PrivacamClient(moved, timeout=15) as app:
        reply = await app.device_auth().ListCameras(identity_pb.ListCamerasRequest())
    return [camera.device_id for camera in reply.cameras]


async def test_a_backup_restores_into_an_empty_stack(platform: Platform, tmp_path: Path) -> None:
    enrollment = platform.enrollment(tmp_path / "home")
    login = f"backup-{secrets.token_hex(4)}"
    owner, tenant = await enrollment.register_account("backup-owner", login, PASSWORD)
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
    _, device = await enrollment.enroll_camera("backup-cam", token.claim_token, "SN-BACKUP")
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id=device, clip_id="clip-before")
    service = platform.profile("as-clips", platform.pki.service("clip_ingest"), tmp_path / "h2")
    async with PrivacamClient(service) as client:
        keys = keys_grpc.KeyManagerServiceStub(client.channel("key_manager"))
        generated = await keys.GenerateDataKey(
            keys_pb.GenerateDataKeyRequest(context=context), timeout=10
        )

    backup_key = secrets.token_bytes(32)
    taken = await backup.create(
        _kafka(platform, platform.namespace), None, [], tmp_path / "backup", backup_key
    )
    assert taken.records["privacam.identity.state.v1"] > 0
    assert taken.records["privacam.keys.state.v1"] > 0
    # Encrypted at rest: no login, tenant or device id readable in any file but the manifest.
    for path in (tmp_path / "backup").glob("*.bin"):
        data = path.read_bytes()
        for secret in (login, tenant, device):
            assert secret.encode() not in data, path.name

    # After the backup: a second camera. It is past the recovery point and will be missing.
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
    _, later_device = await enrollment.enroll_camera("later-cam", token.claim_token, "SN-LATER")

    target = new_namespace("restore")
    processes = []
    try:
        started = time.monotonic()
        restored = await backup.restore(
            _kafka(platform, target), None, tmp_path / "backup", backup_key
        )
        assert restored.records == taken.records
        for name in ("device_auth", "key_manager"):
            process = make_service(name, platform.pki, platform.stack_env, target, tmp_path)
            process.start()
            processes.append(process)
        for process in processes:
            process.wait_serving()
        recovery_seconds = time.monotonic() - started
        device_auth, key_manager = processes

        # The household is back (the app's certificate, the account, the camera), as it was
        # at the recovery point: the camera paired after the backup is not.
        assert await _cameras(owner, device_auth.endpoint) == [device]
        assert later_device in await _cameras(owner, platform.services["device_auth"].endpoint)
        # The key manager opens a key wrapped before the backup (log before decrypt holds).
        moved = Profile(
            service.name,
            service.directory,
            {**service.endpoints, "key_manager": key_manager.endpoint},
            service.trust_domain,
        )
        async with PrivacamClient(moved) as client:
            keys = keys_grpc.KeyManagerServiceStub(client.channel("key_manager"))
            request = keys_pb.UnwrapRequest(
                wrapped_key=generated.wrapped_key,
                context=context,
                purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
            )
            request.receipt.CopyFrom(_receipt(platform, context, str(uuid.uuid4())))
            unwrapped = await keys.Unwrap(request, timeout=15)
        assert unwrapped.plaintext_key == generated.plaintext_key

        # Restore only rebuilds an empty stack; it never merges into live state.
        with pytest.raises(backup.BackupError, match="already holds state"):
            await backup.restore(_kafka(platform, target), None, tmp_path / "backup", backup_key)
        print(
            f"\nbackup of {sum(taken.records.values())} records in {taken.seconds:.2f} s; "
            f"restore and replay to SERVING in {recovery_seconds:.2f} s (RTO); "
            "recovery point: the backup's time (a camera paired after it was not restored)"
        )
    finally:
        for process in processes:
            process.stop()
        await delete_namespace_topics(platform.stack_env, target)


async def test_expired_altered_or_foreign_backups_are_refused_and_old_keys_stay_shredded(
    platform: Platform, tmp_path: Path
) -> None:
    tenant = str(uuid.uuid4())
    service = platform.profile("as-clips", platform.pki.service("clip_ingest"), tmp_path / "h")
    async with PrivacamClient(service) as client:
        keys = keys_grpc.KeyManagerServiceStub(client.channel("key_manager"))
        await keys.GenerateDataKey(
            keys_pb.GenerateDataKeyRequest(
                context=keys_pb2.KeyContext(tenant_id=tenant, device_id="cam-1", clip_id="c-1")
            ),
            timeout=10,
        )
    backup_key = secrets.token_bytes(32)
    source = _kafka(platform, platform.namespace)
    # Kept for 60 days (by default a backup lives as long as the longest retention, 30).
    policy = backup.Policy(max_age=timedelta(days=60))
    taken = await backup.create(source, None, [], tmp_path / "b", backup_key, policy)
    target = new_namespace("restore")
    try:
        with pytest.raises(backup.BackupError, match="expired"):
            await backup.restore(
                _kafka(platform, target),
                None,
                tmp_path / "b",
                backup_key,
                now=datetime.now(UTC) + timedelta(days=61),
            )
        with pytest.raises(backup.BackupError, match="does not open"):
            await backup.restore(
                _kafka(platform, target), None, tmp_path / "b", secrets.token_bytes(32)
            )
        # Restored 40 days on: every KEK whose clips are all past the longest retention
        # (30 days) is dropped, so a restore never brings a shredded period back.
        report = await backup.restore(
            _kafka(platform, target),
            None,
            tmp_path / "b",
            backup_key,
            policy,
            now=datetime.now(UTC) + timedelta(days=40),
        )
        assert report.dropped_keys >= 1
        # One altered byte in any file: nothing is restored.
        victim = next((tmp_path / "b").glob("topic-*.bin"))
        data = bytearray(victim.read_bytes())
        data[-1] ^= 1
        victim.write_bytes(bytes(data))
        with pytest.raises(backup.BackupError, match="altered"):
            await backup.restore(
                _kafka(platform, new_namespace("x")), None, tmp_path / "b", backup_key
            )
    finally:
        await delete_namespace_topics(platform.stack_env, target)
    # Pruning deletes a backup once it expired, and nothing before.
    assert backup.prune(tmp_path, now=datetime.now(UTC) + timedelta(days=59)) == []
    assert backup.prune(tmp_path, now=datetime.now(UTC) + timedelta(days=61)) == [taken.backup_id]
    assert not (tmp_path / "b").exists()
