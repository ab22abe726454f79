"""Backup and restore of platform state (services/common/backup.py) against the real stack:
a backup taken from the running platform, restored into an empty namespace, served again
by fresh device_auth and key_manager processes, with the recovery time and point measured.
"""

from __future__ import annotations

import asyncio
import json
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
from privacam_sdk.access_log import AccessLogReader, Listing
from services.common import backup
from services.common.settings import KafkaSettings
from tests.harness import (
    ADMIN,
    Platform,
    delete_namespace_topics,
    kafka_settings,
    make_service,
    new_namespace,
    stack_minio,
    stack_minio_settings,
)
from tests.integration.test_key_manager import _receipt

PASSWORD = "a long enough passphrase"
LOG_BUCKET = "privacam-access-log"


def _kafka(platform: Platform, namespace: str) -> KafkaSettings:
    return kafka_settings(platform.stack_env, ADMIN, namespace).model_copy(
        update={"topic_partitions": 1}
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

    target = new_namespace(platform.stack_env, "restore")
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
    target = new_namespace(platform.stack_env, "restore")
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
                _kafka(platform, new_namespace(platform.stack_env, "x")),
                None,
                tmp_path / "b",
                backup_key,
            )
    finally:
        await delete_namespace_topics(platform.stack_env, target)
    # Pruning deletes a backup once it expired, and nothing before.
    assert backup.prune(tmp_path, now=datetime.now(UTC) + timedelta(days=59)) == []
    assert backup.prune(tmp_path, now=datetime.now(UTC) + timedelta(days=61)) == [taken.backup_id]
    assert not (tmp_path / "b").exists()


async def _log_of(client: PrivacamClient, at_least: int, state_file: Path | None = None) -> Listing:
    """The household's log, verified, once it holds at least `at_least` entries."""
    reader = AccessLogReader(client, state_file)
    deadline = time.monotonic() + 20
    while len((listing := await reader.list()).entries) < at_least:
        assert time.monotonic() < deadline, f"{len(listing.entries)} entries, not {at_least}"
        await asyncio.sleep(0.2)
    return listing


async def test_backup_restore_includes_log_segments(platform: Platform, tmp_path: Path) -> None:
    """A backup holds the access log's MinIO segments (its environment's, sealed) and a
    restore into an empty namespace puts them back: a fresh access_log serves the household's
    log from them, and the owner's app, which remembered the log's signed head before the
    backup, verifies the restored log against it (same size and root, every entry proved).
    An entry logged after the backup is past the recovery point and is not there."""
    enrollment = platform.enrollment(tmp_path / "home")
    login = f"log-backup-{secrets.token_hex(4)}"
    owner, tenant = await enrollment.register_account("log-backup-owner", login, PASSWORD)
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
    _, device = await enrollment.enroll_camera(
        "log-backup-cam", token.claim_token, f"SN-{secrets.token_hex(3)}"
    )
    async with PrivacamClient(owner) as app:
        # Each PIN change is an entry of the household's log.
        await app.device_auth().SetPin(
            identity_pb.SetPinRequest(device_id=device, pin="2468"), timeout=10
        )
        await app.device_auth().ChangePin(
            identity_pb.ChangePinRequest(device_id=device, current_pin="2468", new_pin="1357"),
            timeout=10,
        )
        # The head the app remembers (in its profile) from before the backup.
        before = await _log_of(app, 2)
    size = before.head.tree_size
    root = stack_minio(platform.stack_env)
    segments = f"{platform.namespace}t/{tenant}/segments/"

    def persisted() -> int:
        """Entries of the tenant in segments (names are <first>-<last>, zero-padded)."""
        names = [o.object_name for o in root.list_objects(LOG_BUCKET, prefix=segments)]
        return max((int(n.rsplit("-", 1)[1]) + 1 for n in names), default=0)

    deadline = time.monotonic() + 20
    while persisted() < size:
        assert time.monotonic() < deadline, "the log's segments were not written"
        await asyncio.sleep(0.2)

    backup_key = secrets.token_bytes(32)
    minio_root = stack_minio_settings(platform.stack_env)
    taken = await backup.create(
        _kafka(platform, platform.namespace),
        minio_root,
        [LOG_BUCKET],
        tmp_path / "backup",
        backup_key,
    )
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    names = [entry["name"] for entry in manifest["objects"].values()]
    assert all(name.startswith(platform.namespace) for name in names)  # its environment's only
    assert f"{platform.namespace}checkpoint.json" in names
    assert any(name.startswith(segments) for name in names)
    for path in (tmp_path / "backup").glob("object-*.bin"):
        assert tenant.encode() not in path.read_bytes(), path.name  # sealed

    # After the backup: one more entry, past the recovery point.
    async with PrivacamClient(owner) as app:
        await app.device_auth().ChangePin(
            identity_pb.ChangePinRequest(device_id=device, current_pin="1357", new_pin="9753"),
            timeout=10,
        )
        live = await _log_of(app, size + 1, state_file=tmp_path / "live-heads.json")

    target = new_namespace(platform.stack_env, "restore")
    process = make_service("access_log", platform.pki, platform.stack_env, target, tmp_path)
    try:
        restored = await backup.restore(
            _kafka(platform, target), minio_root, tmp_path / "backup", backup_key
        )
        assert restored.objects == taken.objects == len(names)
        started = time.monotonic()
        process.start()
        process.wait_serving()
        moved = Profile(
            owner.name,
            owner.directory,
            {**owner.endpoints, "access_log": process.endpoint},
            owner.trust_domain,
        )
        async with PrivacamClient(moved, timeout=15) as app:
            # Raises LogTampered or EntryMissing unless the restored log extends (here:
            # equals) the head remembered before the backup.
            after = await AccessLogReader(app).list()
        serving_seconds = time.monotonic() - started
    finally:
        process.stop()
        await delete_namespace_topics(platform.stack_env, target)
        for leftover in root.list_objects(LOG_BUCKET, prefix=target, recursive=True):
            root.remove_object(LOG_BUCKET, leftover.object_name)
    assert after.previous_size == size
    assert (after.head.tree_size, after.head.root_hash) == (size, before.head.root_hash)
    assert [(e.index, e.record) for e in after.entries] == [
        (e.index, e.record) for e in before.entries
    ]
    assert live.head.tree_size == size + 1  # the live log went on; the backup stops before
    print(
        f"\nbackup of {taken.objects} log objects (segments and checkpoint); the restored log "
        f"of {tenant[:8]}… verified against the head of {size} entries remembered before the "
        f"backup, served {serving_seconds:.1f} s after the access_log process started"
    )
