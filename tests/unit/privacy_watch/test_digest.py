"""The household's digest: periods counted from its log's entries, closed by a later entry
or by the worker's timer on the platform's clock, and checked by the SDK against the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.receipts import VerifiedEntry
from privacam_core.timestamps import to_timestamp
from privacam_sdk.watch import check_digest
from services.common import topics
from services.common.clock import FakeClock
from services.privacy_watch.domain.digest import DigestState, period_start
from services.privacy_watch.domain.rules import Entry, Kind, Principal, Purpose, WatchPolicy
from services.privacy_watch.streams.access import AccessWatch
from services.privacy_watch.streams.digest import DigestSender
from tests.unit.privacy_watch.fakes import TENANT, Sink

WEEK = timedelta(days=7)
MONDAY = datetime(2026, 11, 30, tzinfo=UTC)
ALICE = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=TENANT, id="alice")
BOB = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=TENANT, id="bob")
OPERATOR = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id="op.jane")
CAMERA = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_CAMERA, tenant_id=TENANT, id="cam-1")
LIVE = types_pb2.ACCESS_PURPOSE_LIVE_VIEW
PLAY = types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK
SUPPORT = types_pb2.ACCESS_PURPOSE_OPERATOR_SUPPORT
UPLOAD = types_pb2.ACCESS_PURPOSE_UNSPECIFIED


def record(
    n: int, at: datetime, who: types_pb2.Principal, purpose: int, camera: str = "cam-1"
) -> log_pb2.AccessRecord:
    message = log_pb2.AccessRecord(
        access_id=f"a{n}",
        tenant_id=TENANT,
        principal=who,
        purpose=purpose,  # type: ignore[arg-type]
        occurred_at=to_timestamp(at),
    )
    message.resource.device_id = camera
    return message


def encoded(rec: log_pb2.AccessRecord) -> bytes:
    event = events_pb2.AccessEvent(access_recorded=events_pb2.AccessRecorded(record=rec))
    return topics.ACCESS.encode(event)


def week_of_records() -> list[log_pb2.AccessRecord]:
    """Two weeks of a household's log: views of two cameras by two apps and an operator, a
    camera's own entries (not views), and an entry arriving late from the week before."""
    day = timedelta(days=1)
    return [
        record(0, MONDAY + day, ALICE, LIVE),
        record(1, MONDAY + day, CAMERA, UPLOAD),
        record(2, MONDAY + 2 * day, BOB, PLAY, "cam-2"),
        record(3, MONDAY + 2 * day, BOB, PLAY, "cam-2"),
        record(4, MONDAY + 3 * day, OPERATOR, SUPPORT, ""),
        record(5, MONDAY + 6 * day, ALICE, PLAY),
        record(6, MONDAY + WEEK + day, ALICE, LIVE),  # next week: closes the first
        record(7, MONDAY + 6 * day, BOB, LIVE),  # late, counted where the log put it
        record(8, MONDAY + WEEK + 2 * day, BOB, LIVE),
    ]


def entries(records: list[log_pb2.AccessRecord]) -> list[VerifiedEntry]:
    return [VerifiedEntry(i, r) for i, r in enumerate(records)]


async def watched(records: list[log_pb2.AccessRecord]) -> tuple[AccessWatch, dict[str, object]]:
    digests: dict[str, object] = {}
    watch = AccessWatch({}, {}, Sink(), WatchPolicy(), digests, WEEK)
    for offset, rec in enumerate(records):
        await watch.on_event(TENANT.encode(), encoded(rec), offset)
    return watch, digests


def test_an_entry_appended_once_the_digest_was_due_goes_to_the_next_period() -> None:
    state = DigestState()
    alice = Principal(Kind.APP, TENANT, "alice")
    grace = timedelta(hours=1)

    def add(index: int, at: datetime, appended: datetime) -> None:
        entry = Entry(TENANT, index, f"a{index}", at, alice, Purpose.LIVE_VIEW)
        state.observe(entry, WEEK, appended, grace)

    add(0, MONDAY, MONDAY)
    add(1, MONDAY + WEEK - timedelta(minutes=1), MONDAY + WEEK + timedelta(minutes=30))
    assert state.open is not None
    assert state.open.views == 2
    (sent,) = state.due(MONDAY + WEEK + grace, grace)  # the timer sends the open period
    add(2, MONDAY + WEEK - timedelta(minutes=1), MONDAY + WEEK + 2 * grace)  # too late
    (closed,) = state.closed
    assert (closed.start, closed.first_index, closed.end_index) == (MONDAY, 0, 2)
    assert closed.to_json() == {**sent.to_json(), "end_index": 2}
    assert state.open is not None
    assert (state.open.start, state.open.first_index) == (MONDAY + WEEK, 2)


def test_periods_are_weeks_from_monday() -> None:
    assert period_start(MONDAY + timedelta(days=3, hours=5), WEEK) == MONDAY
    assert period_start(MONDAY - timedelta(seconds=1), WEEK) == MONDAY - WEEK
    assert period_start(MONDAY, timedelta(seconds=20)) == MONDAY


def test_a_later_entry_closes_the_period_at_its_index() -> None:
    state = DigestState()
    alice = Principal(Kind.APP, TENANT, "alice")
    for index, at in enumerate([MONDAY, MONDAY + timedelta(days=2), MONDAY + WEEK]):
        state.observe(Entry(TENANT, index, f"a{index}", at, alice, Purpose.LIVE_VIEW), WEEK)
    (closed,) = state.closed
    assert (closed.start, closed.first_index, closed.end_index, closed.views) == (MONDAY, 0, 2, 2)
    assert state.open is not None
    assert state.open.first_index == 2
    assert DigestState.from_json(state.to_json()) == state


async def test_the_timer_sends_closed_periods_and_an_open_one_after_its_grace() -> None:
    _, digests = await watched(week_of_records())
    clock = FakeClock(MONDAY + WEEK + timedelta(days=3))
    sink = Sink()
    sender = DigestSender(digests, sink, clock, timedelta(hours=1))
    assert await sender.send_due() == 1
    (first,) = sink.digests()
    digest = first.digest
    assert (digest.first_index, digest.end_index, digest.views) == (0, 6, 5)
    assert {(c.principal.id, c.count) for c in digest.by_viewer} == {
        ("alice", 2),
        ("bob", 2),
        ("op.jane", 1),
    }
    assert {(c.purpose, c.count) for c in digest.by_kind} == {(LIVE, 1), (PLAY, 3), (SUPPORT, 1)}
    assert {(c.device_id, c.count) for c in digest.by_camera} == {
        ("cam-1", 2),
        ("cam-2", 2),
        ("", 1),
    }
    assert first.digest.period_start == to_timestamp(MONDAY)
    assert await sender.send_due() == 0  # sent once per worker run
    clock.advance(WEEK)  # the second week is over and its grace too: the timer closes it
    assert await sender.send_due() == 1
    second = sink.digests()[1].digest
    assert (second.first_index, second.end_index, second.views) == (6, 9, 3)
    # Another worker (a takeover, a restart) sends the same periods with the same ids.
    again = Sink()
    await DigestSender(digests, again, clock, timedelta(hours=1)).send_due()
    assert [n.notice_id for n in again.digests()] == [n.notice_id for n in sink.digests()]


async def test_a_replayed_event_is_not_counted_twice_and_a_deleted_log_has_no_digest() -> None:
    records = week_of_records()
    watch, digests = await watched(records)
    before = dict(digests)
    await watch.on_event(TENANT.encode(), encoded(records[3]), 3)  # replay after a crash
    assert digests == before
    deleted = events_pb2.AccessEvent(log_deleted=events_pb2.LogDeleted(cancellation_id="c"))
    deleted.metadata.tenant_id = TENANT
    await watch.on_event(TENANT.encode(), topics.ACCESS.encode(deleted), len(records))
    assert digests == {}


async def test_the_sdk_agrees_with_a_true_digest_and_flags_one_count_changed() -> None:
    records = week_of_records()
    _, digests = await watched(records)
    sink = Sink()
    await DigestSender(digests, sink, FakeClock(MONDAY + 3 * WEEK), timedelta(0)).send_due()
    assert len(sink.digests()) == 2
    for notice in sink.digests():
        assert check_digest(notice.digest, entries(records), len(records)) == []
    for field in ("by_viewer", "by_kind", "by_camera"):
        altered = watch_pb2.WatchDigest()
        altered.CopyFrom(sink.digests()[0].digest)
        getattr(altered, field)[0].count += 1
        problems = check_digest(altered, entries(records), len(records))
        assert len(problems) == 1, problems
        assert "the digest says" in problems[0]
    fewer = watch_pb2.WatchDigest()
    fewer.CopyFrom(sink.digests()[0].digest)
    fewer.views -= 1
    assert check_digest(fewer, entries(records), len(records))
    dropped = watch_pb2.WatchDigest()
    dropped.CopyFrom(sink.digests()[0].digest)
    del dropped.by_viewer[0]
    assert check_digest(dropped, entries(records), len(records))
    beyond = watch_pb2.WatchDigest()
    beyond.CopyFrom(sink.digests()[1].digest)
    assert check_digest(beyond, entries(records), len(records) - 1)  # past the verified head
    assert check_digest(beyond, entries(records)[:-2], len(records))  # not all verified
