"""The access log's domain without servers: appends, receipts, pages pinned to a head,
proof bounds, operator grants with an injected clock, segments that refuse to heal."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import Principal, PrincipalKind
from privacam_core.receipts import (
    LogMonitor,
    LogTampered,
    verify_log_deletion,
    verify_receipt,
)
from privacam_core.timestamps import to_timestamp
from services.access_log.adapters.segments import (
    SegmentError,
    SegmentStore,
    decode_segment,
    encode_segment,
)
from services.access_log.adapters.signer import Ed25519HeadSigner
from services.access_log.api.servicer import validate_record
from services.access_log.domain.log import LogBook
from services.access_log.domain.service import AccessLog
from services.access_log.streams.replica import access_of
from services.common.clock import FakeClock
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
)

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def principal(kind: PrincipalKind, name: str, tenant: str | None = None) -> Principal:
    return Principal(kind, name, tenant, "privacam.local", 1, START + timedelta(days=7))


INGEST = principal(PrincipalKind.SERVICE, "clip-ingest")
OPERATOR = principal(PrincipalKind.OPERATOR, "alice")


class MemoryJournal:
    """The access topic as a list, applied at once (what the replica does in order)."""

    def __init__(self, book: LogBook) -> None:
        self.book = book
        self.events: list[tuple[str, events_pb2.AccessEvent]] = []

    async def record(self, record: log_pb2.AccessRecord) -> None:
        data = record.SerializeToString(deterministic=True)
        self.book.apply(data, access_of(data))

    async def notify(self, tenant_id: str, event: events_pb2.AccessEvent) -> None:
        self.events.append((tenant_id, event))


class MemoryState:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    def items(self, prefix: str) -> Iterable[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.values.items() if k.startswith(prefix))

    async def create(self, key: str, value: bytes, group: str) -> bool:
        if key in self.values:
            return False
        self.values[key] = value
        return True

    async def update(self, key: str, value: bytes, group: str) -> bool:
        if key not in self.values:
            return False
        self.values[key] = value
        return True


class NoMetrics:
    def appended(self, service: str, purpose: str, seconds: float) -> None:
        pass

    def head_signed(self) -> None:
        pass

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)

    def __init__(self) -> None:
        self.refusals: list[str] = []


KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def log(clock: FakeClock) -> AccessLog:
    book = LogBook()
    return AccessLog(
        book,
        MemoryJournal(book),
        Ed25519HeadSigner(KEY, "k1"),
        MemoryState(),
        clock,
        NoMetrics(),
        timedelta(minutes=5),
    )


def record(tenant: str, device: str = "cam-1", **overrides: Any) -> log_pb2.AccessRecord:
    fields: dict[str, Any] = {
        "access_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "principal": types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id="phone-1"
        ),
        "resource": log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id=device, clip_id="clip-1"
        ),
        "purpose": types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        "service": "clip_ingest",
        "occurred_at": to_timestamp(START),
    }
    fields.update(overrides)
    return log_pb2.AccessRecord(**fields)


async def test_receipts_verify_and_retries_do_not_add_leaves(log: AccessLog) -> None:
    access = record("t-1")
    receipt = await log.append(access, INGEST)
    verified = verify_receipt(
        receipt, {"k1": KEY.public_key()}, tenant_id="t-1", now=START, max_age=timedelta(1)
    )
    assert (verified.leaf_index, verified.tree_size) == (0, 1)
    assert (await log.append(access, INGEST)).leaf_index == 0
    assert (await log.append(record("t-1"), INGEST)).tree_head.tree_size == 2
    changed = log_pb2.AccessRecord()
    changed.CopyFrom(access)
    changed.purpose = types_pb2.ACCESS_PURPOSE_LIVE_VIEW
    with pytest.raises(AlreadyExists):
        await log.append(changed, INGEST)


async def test_append_checks_service_time_and_operator_fields(
    log: AccessLog, clock: FakeClock
) -> None:
    with pytest.raises(PermissionDenied):
        await log.append(record("t-1", service="retention"), INGEST)
    with pytest.raises(InvalidArgument, match="occurred_at"):
        await log.append(
            record("t-1", occurred_at=to_timestamp(START - timedelta(hours=1))), INGEST
        )
    with pytest.raises(InvalidArgument, match="operator_access_id"):
        await log.append(record("t-1", operator_access_id=str(uuid.uuid4())), INGEST)


async def test_pages_stay_on_their_head_and_proofs_stop_at_the_end(log: AccessLog) -> None:
    for device in ("cam-1", "cam-2", "cam-1", "cam-1"):
        await log.append(record("t-1", device), INGEST)
    first = log.list_entries("t-1", "cam-1", None, None, 2, "", 0)
    # A page covers page_size leaves: matching ones as entries, the others beside them.
    assert [e.index for e in first.entries] == [0]
    assert ([e.index for e in first.others], first.covered_until) == ([1], 2)
    await log.append(record("t-1", "cam-1"), INGEST)  # lands after the pinned head
    second = log.list_entries("t-1", "cam-1", None, None, 2, first.next_token, 0)
    assert [e.index for e in second.entries] == [2, 3]
    assert (second.others, second.covered_until) == ([], 4)
    assert second.head.tree_size == first.head.tree_size == 4
    assert second.next_token == ""
    monitor = LogMonitor({"k1": KEY.public_key()})
    monitor.observe(first.head)
    assert [v.index for v in monitor.verify_entries(second.entries, second.head)] == [2, 3]
    fresh = log.list_entries("t-1", "", None, None, 100, "", 4)
    monitor.observe(fresh.head, fresh.consistency)
    assert fresh.head.tree_size == 5
    with pytest.raises(OutOfRange):
        log.inclusion("t-1", 5, 0)
    with pytest.raises(OutOfRange):
        log.consistency("t-1", 2, 6)
    with pytest.raises(OutOfRange):
        log.list_entries("t-1", "", None, None, 10, "", 6)
    with pytest.raises(InvalidArgument):
        log.list_entries("t-1", "", None, None, 10, "bm90IGEgdG9rZW4=", 0)
    assert log.tree_head("t-unknown").tree_size == 0


def test_apps_see_only_their_own_log() -> None:
    app = principal(PrincipalKind.APP, "phone-1", "t-1")
    assert AccessLog.tenant_for(app, "") == "t-1"
    with pytest.raises(NotFound):
        AccessLog.tenant_for(app, "t-2")
    with pytest.raises(InvalidArgument):
        AccessLog.tenant_for(INGEST, "")


async def test_operator_grants_are_scoped_timed_and_expire(
    log: AccessLog, clock: FakeClock
) -> None:
    owner = principal(PrincipalKind.APP, "phone-1", "t-1")
    as_operator = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id="alice")
    access = await log.request_operator_access(
        OPERATOR, "t-1", "help", "", [pb.OPERATOR_SCOPE_CLIPS], ["cam-1"], timedelta(hours=1)
    )
    grant = access.operator_access_id

    def play(device: str = "cam-1") -> log_pb2.AccessRecord:
        return record(
            "t-1",
            device,
            principal=as_operator,
            operator_access_id=grant,
            occurred_at=to_timestamp(clock.now()),
        )

    with pytest.raises(PermissionDenied):
        await log.append(play(), INGEST)  # pending
    with pytest.raises(NotFound):
        await log.decide_operator_access(grant, True, principal(PrincipalKind.APP, "x", "t-2"))
    await log.decide_operator_access(grant, True, owner)
    await log.append(play(), INGEST)
    with pytest.raises(PermissionDenied):
        await log.append(play("cam-2"), INGEST)  # another camera
    live = play()
    live.purpose = types_pb2.ACCESS_PURPOSE_LIVE_VIEW
    with pytest.raises(PermissionDenied):
        await log.append(live, INGEST)  # another scope
    clock.advance(timedelta(hours=1))
    with pytest.raises(PermissionDenied):
        await log.append(play(), INGEST)
    assert log.get_operator_access(grant, OPERATOR).state == pb.OPERATOR_ACCESS_STATE_EXPIRED
    with pytest.raises(NotFound):
        log.get_operator_access(grant, principal(PrincipalKind.OPERATOR, "bob"))
    listed, _ = log.list_operator_access(owner, [pb.OPERATOR_ACCESS_STATE_EXPIRED], 10, "")
    assert [a.operator_access_id for a in listed] == [grant]
    # Request, decision and the one play are in the household's log.
    entries = log.list_entries("t-1", "", None, None, 10, "", 0).entries
    assert len(entries) == 3
    # A request nobody decides expires after a day.
    other = await log.request_operator_access(
        OPERATOR, "t-1", "again", "", [pb.OPERATOR_SCOPE_METADATA], [], timedelta(hours=1)
    )
    clock.advance(timedelta(days=1))
    assert (
        log.get_operator_access(other.operator_access_id, owner).state
        == pb.OPERATOR_ACCESS_STATE_EXPIRED
    )


async def test_incidents_touch_only_logs_with_the_compromised_principal(log: AccessLog) -> None:
    leaked = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id="t-1", id="lost")
    await log.append(record("t-1"), INGEST)
    await log.append(record("t-1", principal=leaked), INGEST)
    await log.append(record("t-2"), INGEST)
    incident = await log.declare_incident(
        OPERATOR,
        "lost phone",
        START,
        (START - timedelta(hours=1), START + timedelta(hours=1)),
        [leaked],
        [pb.DATA_CATEGORY_CLIPS],
        True,
    )
    assert list(incident.affected_tenant_ids) == ["t-1"]
    notices, _ = log.list_incident_notices("t-1", 10, "")
    assert list(notices[0].touched_entry_indices) == [1]
    assert notices[0].data_encrypted_unreadable
    assert log.list_incident_notices("t-2", 10, "")[0] == []


async def test_a_deleted_log_stays_deleted(log: AccessLog) -> None:
    book: LogBook = log._book
    await log.append(record("t-1"), INGEST)
    root = log.tree_head("t-1").root_hash
    book.delete("t-1", START)
    book.delete("t-1", START + timedelta(hours=1))  # a replay does not move the end
    with pytest.raises(NotFound):
        await log.append(record("t-1"), INGEST)
    data = record("t-1").SerializeToString()
    assert book.apply(data, access_of(data)) is None
    # The log's end is a signed statement, the same whichever replica or time signs it.
    ending = log.deletion("t-1")
    assert ending is not None
    assert (ending.tenant_id, ending.final_size, ending.final_root) == ("t-1", 1, root)
    assert ending.deleted_at == to_timestamp(START)
    assert log.deletion("t-1") == ending
    verify_log_deletion(ending, {"k1": KEY.public_key()})
    assert log.deletion("t-2") is None
    book.delete("t-never", START)  # a household that never had an entry
    assert log.deletion("t-never").final_size == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: setattr(r, "access_id", "x"), "access_id"),
        (lambda r: r.resource.ClearField("device_id"), "device_id"),
        (lambda r: setattr(r.resource, "grant_id", str(uuid.uuid4())), "grant_id"),
        (lambda r: setattr(r, "service", "Clip-Ingest"), "service"),
        (lambda r: r.ClearField("occurred_at"), "occurred_at"),
        (lambda r: setattr(r.principal, "tenant_id", ""), "principal.tenant_id"),
    ],
)
def test_records_are_validated_field_by_field(change: Any, field: str) -> None:
    access = record("t-1")
    access.access_id = str(uuid.uuid4())
    validate_record(access)
    change(access)
    with pytest.raises(InvalidArgument, match=field):
        validate_record(access)


class FakeObject:
    def __init__(self, name: str) -> None:
        self.object_name = name


class FakeResponse:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class FakeMinio:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def list_objects(self, bucket: str, prefix: str, recursive: bool) -> list[FakeObject]:
        return [FakeObject(n) for n in sorted(self.objects) if n.startswith(prefix)]

    def get_object(self, bucket: str, name: str) -> FakeResponse:
        return FakeResponse(self.objects[name])


def test_segments_round_trip_and_refuse_truncation() -> None:
    records = [b"a", b"", b"ccc"]
    assert decode_segment(encode_segment(records)) == records
    with pytest.raises(SegmentError):
        decode_segment(encode_segment(records)[:-1])
    with pytest.raises(SegmentError):
        decode_segment(b"junk")


async def test_loading_stops_at_a_gap_and_accepts_agreeing_overlaps() -> None:
    client = FakeMinio()
    store = SegmentStore(client, "bucket", "ns.")  # type: ignore[arg-type]
    client.objects[store.segment_name("t-1", 0, 1)] = encode_segment([b"0", b"1"])
    client.objects[store.segment_name("t-1", 1, 2)] = encode_segment([b"1", b"2"])
    client.objects[store.segment_name("t-1", 5, 5)] = encode_segment([b"5"])  # after a gap
    client.objects[store.segment_name("t-2", 0, 0)] = encode_segment([b"x"])
    client.objects[store.segment_name("t-3", 0, 1)] = encode_segment([b"0", b"1"])
    client.objects[store.segment_name("t-3", 1, 1)] = encode_segment([b"other"])
    client.objects["other-ns.t/t-9/segments/x"] = b"not ours"
    logs = await store.load_all()
    assert logs == {"t-1": [b"0", b"1", b"2"], "t-2": [b"x"], "t-3": [b"0", b"1"]}


def test_a_tampered_restore_fails_the_owners_consistency_check() -> None:
    monitor = LogMonitor({"k1": KEY.public_key()})
    signer = Ed25519HeadSigner(KEY, "k1")
    datas = [record("t-1").SerializeToString() for _ in range(3)]
    honest, tampered = LogBook(), LogBook()
    honest.restore("t-1", [(d, access_of(d)) for d in datas])
    swapped = [datas[1], datas[0], datas[2]]
    tampered.restore("t-1", [(d, access_of(d)) for d in swapped])
    first = honest.get("t-1")
    assert first is not None
    monitor.observe(signer.sign("t-1", 3, first.tree.root(), START))
    again = tampered.get("t-1")
    assert again is not None
    with pytest.raises(LogTampered):
        monitor.observe(signer.sign("t-1", 3, again.tree.root(), START + timedelta(seconds=1)))


async def test_a_size_keeps_the_time_it_was_first_signed_and_old_sizes_are_not_redated(
    log: AccessLog, clock: FakeClock
) -> None:
    first = await log.append(record("t-1", occurred_at=to_timestamp(clock.now())), INGEST)
    clock.advance(timedelta(minutes=10))
    # The same size, later: the same head, dated when the log had that size.
    assert log.tree_head("t-1") == first.tree_head
    await log.append(record("t-1", occurred_at=to_timestamp(clock.now())), INGEST)
    clock.advance(timedelta(minutes=10))
    _, head = log.inclusion("t-1", 0, 1)
    assert head == first.tree_head  # signed while it was the current size
    _, current = log.inclusion("t-1", 0, 0)
    assert current is not None
    assert current.timestamp == to_timestamp(START + timedelta(minutes=10))
    # A past size this replica never signed (entries published without a receipt) gets a
    # proof but no head: it cannot say when the log had that size.
    journal: Any = log._journal
    await journal.record(record("t-1", occurred_at=to_timestamp(clock.now())))
    await journal.record(record("t-1", occurred_at=to_timestamp(clock.now())))
    _, unsigned = log.inclusion("t-1", 0, 3)
    assert unsigned is None


async def test_later_pages_carry_the_first_pages_head_and_forged_tokens_are_refused(
    log: AccessLog, clock: FakeClock
) -> None:
    for _ in range(3):
        await log.append(record("t-1", occurred_at=to_timestamp(clock.now())), INGEST)
    first = log.list_entries("t-1", "", None, None, 1, "", 0)
    clock.advance(timedelta(hours=1))
    await log.append(record("t-1", occurred_at=to_timestamp(clock.now())), INGEST)
    second = log.list_entries("t-1", "", None, None, 1, first.next_token, 0)
    assert second.head == first.head  # not signed again with a new time
    metrics: Any = log._metrics
    token = json.loads(base64.urlsafe_b64decode(first.next_token))
    for change in ({"at": token["at"] + 1}, {"sig": "00" * 64}, {"size": 4}, {"next": "x"}):
        forged = base64.urlsafe_b64encode(json.dumps({**token, **change}).encode()).decode()
        with pytest.raises(InvalidArgument, match="page_token"):
            log.list_entries("t-1", "", None, None, 1, forged, 0)
    assert metrics.refusals == ["page_token"] * 4
