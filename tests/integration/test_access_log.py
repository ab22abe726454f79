"""The access log over real mTLS, Kafka and MinIO: receipts, proofs the SDK verifies,
tamper evidence after a restart, operator access, incidents and account deletion."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from minio import Minio

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import events_pb2 as identity_events
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as keys_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.receipts import verify_receipt
from privacam_core.timestamps import to_timestamp
from privacam_sdk import PrivacamClient
from privacam_sdk.access_log import AccessLogReader, LogTampered
from services.access_log.adapters.segments import decode_segment, encode_segment
from services.common import topics
from services.common.kafka import EventProducer
from tests.harness import ROOT, Platform, access_log_key, kafka_settings, stack_minio
from tests.integration.test_log_completeness import pin_log_keys

if TYPE_CHECKING:
    Stub = pb_grpc.AccessLogServiceAsyncStub
else:
    Stub = Any

BUCKET = "privacam-access-log"


class Clients:
    """Open clients by identity, closed at the end of a test."""

    def __init__(self, platform: Platform, home: Path) -> None:
        self._platform = platform
        self._home = home
        self._open: list[PrivacamClient] = []

    def client(self, name: str, identity: Any) -> PrivacamClient:
        profile = self._platform.profile(name, identity, self._home)
        pin_log_keys(profile, self._platform)
        client = PrivacamClient(profile, timeout=15)
        self._open.append(client)
        return client

    def log(self, name: str, identity: Any) -> Stub:
        return pb_grpc.AccessLogServiceStub(self.client(name, identity).channel("access_log"))

    def service(self, service: str) -> Stub:
        return self.log(f"svc-{service}", self._platform.pki.service(service))

    def app(self, tenant: str) -> tuple[PrivacamClient, Stub]:
        install = f"phone-{uuid.uuid4().hex[:8]}"
        client = self.client(f"app-{install}", self._platform.pki.app(tenant, install))
        return client, pb_grpc.AccessLogServiceStub(client.channel("access_log"))

    async def close(self) -> None:
        for client in self._open:
            await client.close()


@pytest.fixture
async def clients(platform: Platform, profiles_home: Path) -> AsyncIterator[Clients]:
    opened = Clients(platform, profiles_home)
    yield opened
    await opened.close()


def record(
    tenant: str,
    device: str,
    *,
    clip: str = "clip-1",
    service: str = "clip_ingest",
    purpose: int = types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
    principal: types_pb2.Principal | None = None,
    operator_access_id: str = "",
    occurred_at: datetime | None = None,
) -> log_pb2.AccessRecord:
    return log_pb2.AccessRecord(
        access_id=str(uuid.uuid4()),
        tenant_id=tenant,
        principal=principal
        or types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id="phone-1"),
        resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CLIP, device_id=device, clip_id=clip),
        purpose=purpose,  # type: ignore[arg-type]
        service=service,
        occurred_at=to_timestamp(occurred_at or datetime.now(UTC)),
        operator_access_id=operator_access_id,
    )


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def public_keys(platform: Platform) -> dict[str, Any]:
    return {"test-log-1": access_log_key(platform.pki).public_key()}


async def test_append_returns_a_receipt_the_key_manager_model_accepts(
    platform: Platform, clients: Clients
) -> None:
    tenant, device = str(uuid.uuid4()), str(uuid.uuid4())
    ingest = clients.service("clip_ingest")
    access = record(tenant, device)
    started = time.perf_counter()
    receipt = (await ingest.Append(pb.AppendRequest(record=access), timeout=15)).receipt
    assert time.perf_counter() - started < 2
    verified = verify_receipt(
        receipt,
        public_keys(platform),
        tenant_id=tenant,
        now=datetime.now(UTC),
        max_age=timedelta(minutes=5),
    )
    assert (verified.access_id, verified.clip_id, verified.leaf_index) == (
        access.access_id,
        "clip-1",
        0,
    )
    assert receipt.record == access.SerializeToString(deterministic=True)
    # A retried append is the same leaf, not a second one.
    again = (await ingest.Append(pb.AppendRequest(record=access), timeout=15)).receipt
    assert (again.leaf_index, again.tree_head.tree_size) == (0, 1)
    second = await ingest.Append(pb.AppendRequest(record=record(tenant, device)), timeout=15)
    assert (second.receipt.leaf_index, second.receipt.tree_head.tree_size) == (1, 2)
    # Same access id, another access: refused, never a second leaf.
    changed = log_pb2.AccessRecord()
    changed.CopyFrom(access)
    changed.resource.clip_id = "clip-2"
    assert await code_of(ingest.Append(pb.AppendRequest(record=changed), timeout=15)) is (
        grpc.StatusCode.ALREADY_EXISTS
    )
    # Only the recording service itself may append in its name; apps may not append.
    relay = clients.service("relay_broker")
    assert await code_of(relay.Append(pb.AppendRequest(record=record(tenant, device)))) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    _, app = clients.app(tenant)
    assert await code_of(app.Append(pb.AppendRequest(record=record(tenant, device)))) is (
        grpc.StatusCode.PERMISSION_DENIED
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: setattr(r, "access_id", "not-a-uuid"), "access_id"),
        (lambda r: setattr(r, "tenant_id", "Bad Tenant"), "tenant_id"),
        (lambda r: r.resource.ClearField("clip_id"), "clip_id"),
        (lambda r: setattr(r.resource, "export_id", str(uuid.uuid4())), "export_id"),
        (lambda r: setattr(r, "purpose", 0), "purpose"),
        (lambda r: r.principal.ClearField("kind"), "principal.kind"),
        (
            lambda r: r.occurred_at.CopyFrom(to_timestamp(datetime.now(UTC) - timedelta(hours=1))),
            "occurred_at",
        ),
        (lambda r: setattr(r, "operator_access_id", str(uuid.uuid4())), "operator_access_id"),
    ],
)
async def test_append_validates_every_field(clients: Clients, change: Any, words: str) -> None:
    access = record(str(uuid.uuid4()), str(uuid.uuid4()))
    change(access)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.service("clip_ingest").Append(pb.AppendRequest(record=access), timeout=15)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in (refused.value.details() or "")


async def test_owner_lists_verified_entries_and_nobody_else_can(
    platform: Platform, clients: Clients
) -> None:
    tenant, camera, other_camera = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    ingest = clients.service("clip_ingest")
    for device in (camera, other_camera, camera):
        await ingest.Append(pb.AppendRequest(record=record(tenant, device)), timeout=15)
    client, app = clients.app(tenant)
    reader = AccessLogReader(client)
    listing = await reader.list(device_id=camera, page_size=1)  # two pages, one head
    assert [e.index for e in listing.entries] == [0, 2]
    assert all(e.record.resource.device_id == camera for e in listing.entries)
    assert (listing.head.tree_size, listing.previous_size) == (3, 0)
    await ingest.Append(pb.AppendRequest(record=record(tenant, camera)), timeout=15)
    later = await reader.list()
    assert (later.previous_size, later.head.tree_size, len(later.entries)) == (3, 4, 4)
    since = datetime.now(UTC) + timedelta(minutes=1)
    assert (await reader.list(since=since)).entries == []
    # Another household's log is NOT_FOUND, proofs past the end are OUT_OF_RANGE.
    _, stranger = clients.app(str(uuid.uuid4()))
    assert await code_of(stranger.ListEntries(pb.ListEntriesRequest(tenant_id=tenant))) is (
        grpc.StatusCode.NOT_FOUND
    )
    assert await code_of(stranger.GetTreeHead(pb.GetTreeHeadRequest(tenant_id=tenant))) is (
        grpc.StatusCode.NOT_FOUND
    )
    assert (
        await code_of(app.GetInclusionProof(pb.GetInclusionProofRequest(leaf_index=4)))
        is grpc.StatusCode.OUT_OF_RANGE
    )
    assert (
        await code_of(
            app.GetConsistencyProof(pb.GetConsistencyProofRequest(first_size=2, second_size=9))
        )
        is grpc.StatusCode.OUT_OF_RANGE
    )
    proof = await app.GetConsistencyProof(pb.GetConsistencyProofRequest(first_size=3))
    assert proof.consistency_proof.second_size == 4
    # Services read any tenant's log (retention's data export), operators none.
    exported = await clients.service("retention").ListEntries(
        pb.ListEntriesRequest(tenant_id=tenant), timeout=15
    )
    assert len(exported.entries) == 4
    operator = clients.log("operator-reader", platform.pki.operator())
    assert await code_of(operator.ListEntries(pb.ListEntriesRequest(tenant_id=tenant))) is (
        grpc.StatusCode.PERMISSION_DENIED
    )


async def test_key_manager_takes_a_real_receipt_once_and_only_for_its_household(
    platform: Platform, clients: Clients
) -> None:
    tenant, device = str(uuid.uuid4()), str(uuid.uuid4())
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id=device, clip_id="clip-9")
    keys = keys_grpc.KeyManagerServiceStub(
        clients.client("svc-km", platform.pki.service("clip_ingest")).channel("key_manager")
    )
    generated = await keys.GenerateDataKey(keys_pb.GenerateDataKeyRequest(context=context))
    ingest = clients.service("clip_ingest")

    async def unwrap(receipt: log_pb2.Receipt, key_context: keys_pb2.KeyContext) -> Any:
        return await keys.Unwrap(
            keys_pb.UnwrapRequest(
                wrapped_key=generated.wrapped_key,
                context=key_context,
                purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
                receipt=receipt,
            ),
            timeout=15,
        )

    mine = (
        await ingest.Append(pb.AppendRequest(record=record(tenant, device, clip="clip-9")))
    ).receipt
    assert (await unwrap(mine, context)).plaintext_key == generated.plaintext_key
    assert await code_of(unwrap(mine, context)) is grpc.StatusCode.PERMISSION_DENIED  # replay
    other = str(uuid.uuid4())
    theirs = (
        await ingest.Append(pb.AppendRequest(record=record(other, device, clip="clip-9")))
    ).receipt
    assert await code_of(unwrap(theirs, context)) is grpc.StatusCode.PERMISSION_DENIED


async def test_an_operator_gets_nothing_without_an_approved_grant(
    platform: Platform, clients: Clients
) -> None:
    tenant, device = str(uuid.uuid4()), str(uuid.uuid4())
    operator = clients.log("operator-support", platform.pki.operator())
    ingest = clients.service("clip_ingest")
    as_operator = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id="demo")

    async def operator_play(grant: str) -> grpc.StatusCode:
        access = record(
            tenant, device, principal=as_operator, operator_access_id=grant, clip="c-op"
        )
        return await code_of(ingest.Append(pb.AppendRequest(record=access), timeout=15))

    assert await operator_play(str(uuid.uuid4())) is grpc.StatusCode.PERMISSION_DENIED
    requested = (
        await operator.RequestOperatorAccess(
            pb.RequestOperatorAccessRequest(
                tenant_id=tenant,
                reason="Camera drops off Wi-Fi; ticket from the owner",
                ticket_ref="T-1",
                scopes=[pb.OPERATOR_SCOPE_CLIPS],
                device_ids=[device],
                duration=Duration(seconds=3600),
            ),
            timeout=15,
        )
    ).operator_access
    grant = requested.operator_access_id
    assert requested.state == pb.OPERATOR_ACCESS_STATE_PENDING
    assert await operator_play(grant) is grpc.StatusCode.PERMISSION_DENIED  # not approved
    _, stranger = clients.app(str(uuid.uuid4()))
    assert (
        await code_of(
            stranger.DecideOperatorAccess(
                pb.DecideOperatorAccessRequest(operator_access_id=grant, approve=True)
            )
        )
        is grpc.StatusCode.NOT_FOUND
    )
    client, owner = clients.app(tenant)
    pending = await owner.ListOperatorAccess(pb.ListOperatorAccessRequest(), timeout=15)
    assert [a.operator_access_id for a in pending.operator_accesses] == [grant]
    approved = await owner.DecideOperatorAccess(
        pb.DecideOperatorAccessRequest(operator_access_id=grant, approve=True), timeout=15
    )
    assert approved.operator_access.state == pb.OPERATOR_ACCESS_STATE_APPROVED
    assert await operator_play(grant) is grpc.StatusCode.OK
    other_camera = record(
        tenant, str(uuid.uuid4()), principal=as_operator, operator_access_id=grant
    )
    assert await code_of(ingest.Append(pb.AppendRequest(record=other_camera))) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    ended = await owner.EndOperatorAccess(
        pb.EndOperatorAccessRequest(operator_access_id=grant), timeout=15
    )
    assert ended.operator_access.state == pb.OPERATOR_ACCESS_STATE_ENDED
    assert await operator_play(grant) is grpc.StatusCode.PERMISSION_DENIED
    # Request, approval, the one play and the end are all in the household's log.
    listing = await AccessLogReader(client).list()
    assert [
        (types_pb2.PrincipalKind.Name(e.record.principal.kind), e.record.service)
        for e in listing.entries
    ] == [
        ("PRINCIPAL_KIND_OPERATOR", "access_log"),
        ("PRINCIPAL_KIND_APP", "access_log"),
        ("PRINCIPAL_KIND_OPERATOR", "clip_ingest"),
        ("PRINCIPAL_KIND_APP", "access_log"),
    ]
    assert all(e.record.operator_access_id == grant for e in listing.entries)


async def test_an_incident_tells_exactly_the_touched_households(
    platform: Platform, clients: Clients
) -> None:
    touched, untouched = str(uuid.uuid4()), str(uuid.uuid4())
    relay = clients.service("relay_broker")
    leaked = types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=touched, id=f"leaky-{uuid.uuid4().hex[:6]}"
    )
    live = types_pb2.ACCESS_PURPOSE_LIVE_VIEW
    await relay.Append(
        pb.AppendRequest(
            record=record(touched, str(uuid.uuid4()), service="relay_broker", purpose=live)
        )
    )
    await relay.Append(
        pb.AppendRequest(
            record=record(
                touched, str(uuid.uuid4()), service="relay_broker", purpose=live, principal=leaked
            )
        )
    )
    await relay.Append(
        pb.AppendRequest(record=record(untouched, str(uuid.uuid4()), service="relay_broker"))
    )
    operator = clients.log("operator-incident", platform.pki.operator())
    now = datetime.now(UTC)
    incident = (
        await operator.DeclareIncident(
            pb.DeclareIncidentRequest(
                description="An app certificate was copied off a lost phone",
                detected_at=to_timestamp(now),
                window=types_pb2.TimeRange(
                    start=to_timestamp(now - timedelta(hours=1)),
                    end=to_timestamp(now + timedelta(minutes=1)),
                ),
                compromised_principals=[leaked],
                categories=[pb.DATA_CATEGORY_LIVE_VIEW],
                data_encrypted_unreadable=False,
            ),
            timeout=15,
        )
    ).incident
    assert list(incident.affected_tenant_ids) == [touched]
    assert incident.regulator_deadline.ToDatetime() - incident.detected_at.ToDatetime() == (
        timedelta(hours=72)
    )
    _, touched_app = clients.app(touched)
    notices = (await touched_app.ListIncidentNotices(pb.ListIncidentNoticesRequest())).notices
    assert [(n.incident_id, list(n.touched_entry_indices)) for n in notices] == [
        (incident.incident_id, [1])
    ]
    _, untouched_app = clients.app(untouched)
    assert not (await untouched_app.ListIncidentNotices(pb.ListIncidentNoticesRequest())).notices
    fetched = await operator.GetIncident(pb.GetIncidentRequest(incident_id=incident.incident_id))
    assert fetched.incident == incident


def _minio(platform: Platform) -> Minio:
    return stack_minio(platform.stack_env)


def _segments(platform: Platform, tenant: str) -> list[str]:
    prefix = f"{platform.namespace}t/{tenant}/"
    return sorted(
        str(o.object_name) for o in _minio(platform).list_objects(BUCKET, prefix, recursive=True)
    )


def _stored(platform: Platform, tenant: str) -> int:
    """Entries of a tenant's log stored in MinIO, however the flushes split them."""
    return sum(len(decode_segment(_get(platform, name))) for name in _segments(platform, tenant))


def _put(platform: Platform, name: str, data: bytes) -> None:
    _minio(platform).put_object(BUCKET, name, io.BytesIO(data), len(data))


def _get(platform: Platform, name: str) -> bytes:
    response = _minio(platform).get_object(BUCKET, name)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


async def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_restart_keeps_heads_and_tampering_with_segments_is_detected(
    platform: Platform, clients: Clients, profiles_home: Path
) -> None:
    ingest = clients.service("clip_ingest")
    intact, altered, deleted, reordered, erased = (str(uuid.uuid4()) for _ in range(5))
    readers: dict[str, AccessLogReader] = {}
    for tenant in (intact, altered, deleted, reordered, erased):
        for _ in range(3):
            await ingest.Append(
                pb.AppendRequest(record=record(tenant, str(uuid.uuid4()))), timeout=15
            )
        client, _ = clients.app(tenant)
        readers[tenant] = AccessLogReader(client)
        assert (await readers[tenant].list()).head.tree_size == 3
    # Segments reach MinIO within the interval (1 s in tests); more entries, more segments
    # (a flush may fall between two appends, so count entries, not segments).
    await _wait_for(lambda: all(_stored(platform, t) == 3 for t in readers), "segments")
    for tenant in (deleted, reordered):
        await ingest.Append(pb.AppendRequest(record=record(tenant, str(uuid.uuid4()))))
        await readers[tenant].list()
    await _wait_for(lambda: _stored(platform, deleted) == 4, "a later segment")
    await _wait_for(lambda: _stored(platform, reordered) == 4, "a later segment")

    # Account deletion: the log leaves memory and MinIO, and stays gone after a restart.
    producer = EventProducer(
        kafka_settings(platform.stack_env, "device_auth", platform.namespace),
        "test-access-log",
    )
    await producer.start()
    try:
        await producer.publish(
            topics.IDENTITY,
            erased,
            identity_events.IdentityEvent(
                metadata=types_pb2.EventMetadata(event_id=str(uuid.uuid4()), tenant_id=erased),
                account_deleted=identity_events.AccountDeleted(cancellation_id=str(uuid.uuid4())),
            ),
        )
    finally:
        await producer.stop()
    await _wait_for(lambda: not _segments(platform, erased), "the deleted log's segments")
    # Heads are read by the households' own apps (the only callers of GetTreeHead).
    _, erased_app = clients.app(erased)
    _, intact_app = clients.app(intact)
    ended = await erased_app.GetTreeHead(pb.GetTreeHeadRequest())
    assert not ended.HasField("tree_head")
    assert ended.deletion.final_size == 3  # the signed end of the log, not an empty head
    assert (
        await code_of(ingest.Append(pb.AppendRequest(record=record(erased, str(uuid.uuid4())))))
        is grpc.StatusCode.NOT_FOUND
    )

    before = (await intact_app.GetTreeHead(pb.GetTreeHeadRequest())).tree_head
    service = platform.services["access_log"]
    assert service.stop() == 0  # flushes what is pending, then the segments are tampered with
    first = _segments(platform, altered)[0]
    entries = decode_segment(_get(platform, first))
    entries[-1] = entries[-1].replace(b"clip-1", b"clip-X")
    _put(platform, first, encode_segment(entries))
    _minio(platform).remove_object(BUCKET, _segments(platform, deleted)[0])
    # Reorder: two entries swapped within a segment, or two whole segments swapped.
    names = _segments(platform, reordered)
    stored = {name: decode_segment(_get(platform, name)) for name in names}
    longer = next((name for name in names if len(stored[name]) >= 2), None)
    if longer is not None:
        entries = stored[longer]
        _put(platform, longer, encode_segment([entries[1], entries[0], *entries[2:]]))
    else:
        _put(platform, names[0], encode_segment(stored[names[1]]))
        _put(platform, names[1], encode_segment(stored[names[0]]))
    service.start()
    service.wait_serving()

    after = (await intact_app.GetTreeHead(pb.GetTreeHeadRequest())).tree_head
    assert (after.tree_size, after.root_hash) == (before.tree_size, before.root_hash)
    assert (await readers[intact].list()).previous_size == 3  # consistent across the restart
    for tenant in (altered, deleted, reordered):
        with pytest.raises(LogTampered):
            await readers[tenant].list()
    gone = await erased_app.GetTreeHead(pb.GetTreeHeadRequest())
    assert gone.deletion == ended.deletion  # the same statement after the restart


async def test_cli_shows_who_accessed_my_camera_and_approves_an_operator(
    platform: Platform, clients: Clients, profiles_home: Path
) -> None:
    tenant, camera = str(uuid.uuid4()), str(uuid.uuid4())
    ingest = clients.service("clip_ingest")
    await ingest.Append(pb.AppendRequest(record=record(tenant, camera, clip="front-door")))
    await ingest.Append(pb.AppendRequest(record=record(tenant, str(uuid.uuid4()))))
    name = f"cli-{uuid.uuid4().hex[:6]}"
    pin_log_keys(platform.profile(name, platform.pki.app(tenant, name), profiles_home), platform)

    async def cli(*arguments: str) -> list[str]:
        command = [
            sys.executable, "-m", "privacam_sdk.cli", "--home", str(profiles_home),
            "--profile", name, "access-log", *arguments,
        ]  # fmt: skip
        result = await asyncio.to_thread(
            subprocess.run,
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
            env={**os.environ},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    lines = await cli("list", "--camera", camera)
    assert len(lines) == 2
    assert "front-door" in lines[0]
    assert "app phone-1" in lines[0]
    assert "clip_playback" in lines[0]
    assert lines[1].startswith("verified 1 entries against head size 2")
    operator = clients.log("operator-cli", platform.pki.operator())
    asked = await operator.RequestOperatorAccess(
        pb.RequestOperatorAccessRequest(
            tenant_id=tenant,
            reason="Check the camera's connection",
            scopes=[pb.OPERATOR_SCOPE_DIAGNOSTICS],
            duration=Duration(seconds=600),
        ),
        timeout=15,
    )
    grant = asked.operator_access.operator_access_id
    (line,) = await cli("approve", grant)
    assert line.startswith(f"{grant}  approved operator demo")
    state = await operator.GetOperatorAccess(pb.GetOperatorAccessRequest(operator_access_id=grant))
    assert state.operator_access.state == pb.OPERATOR_ACCESS_STATE_APPROVED


async def test_a_killed_log_recovers_from_segments_and_kafka(
    platform: Platform, clients: Clients
) -> None:
    tenant = str(uuid.uuid4())
    ingest = clients.service("clip_ingest")
    receipts = [
        (await ingest.Append(pb.AppendRequest(record=record(tenant, str(uuid.uuid4()))))).receipt
        for _ in range(3)
    ]
    client, _ = clients.app(tenant)
    reader = AccessLogReader(client)
    assert (await reader.list()).head.tree_size == 3
    service = platform.services["access_log"]
    assert service.process is not None
    # No flush at exit: whatever the last 1 s interval did not write is replayed from Kafka.
    service.process.kill()
    service.process.wait()
    service.start()
    service.wait_serving()
    listing = await reader.list()
    assert (listing.previous_size, listing.head.tree_size) == (3, 3)
    assert listing.head.root_hash == receipts[-1].tree_head.root_hash
    assert [e.record.access_id for e in listing.entries] == [
        log_pb2.AccessRecord.FromString(r.record).access_id for r in receipts
    ]
