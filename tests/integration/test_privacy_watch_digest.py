"""The privacy watch's digest of a household (issue #22) against its verified access log:
the platform's own services plus a privacy_watch worker in its namespace, with a digest
period of 20 s (a week in production) so periods close within the test."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_sdk import PrivacamClient
from privacam_sdk.access_log import AccessLogReader
from privacam_sdk.watch import VIEWS, WatchReader
from tests.harness import Platform, ServiceProcess
from tests.soak import SoakPlan, enroll, run_load
from tests.watch_events import platform_watch

PERIOD_SECONDS = 10  # the shortest the setting allows
GRACE_SECONDS = 2


@pytest.fixture(scope="module")
def digest_watch(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A privacy_watch worker reading the platform's access topic, with short periods."""
    with platform_watch(
        platform,
        tmp_path_factory.mktemp("digest-watch-logs"),
        digest_period_seconds=str(PERIOD_SECONDS),
        digest_grace_seconds=str(GRACE_SECONDS),
        digest_check_seconds="1",
    ) as worker:
        yield worker


async def test_digest_matches_log(
    platform: Platform, digest_watch: ServiceProcess, tmp_path: Path
) -> None:
    """A household uses its camera (uploads, listings, playbacks, a live view) across a few
    periods: its digests, read back from relay_broker, cover every entry of its verified
    log once, in contiguous ranges, and each agrees with the log by the SDK's own count;
    the same digest with one count changed, or with its log head changed, is flagged."""
    plan = SoakPlan(
        cameras=1,
        apps=1,
        load_seconds=20,
        window_seconds=10,
        clips_per_camera_per_second=0.5,
        live_view_hold_seconds=3,
    )
    (household,) = await enroll(platform, tmp_path, plan)
    await run_load(platform, [household], plan, progress=None)
    async with PrivacamClient(household.app) as client:
        reader = WatchReader(client)
        deadline = time.monotonic() + 90
        while True:
            listing = await AccessLogReader(client).list()
            size = listing.head.tree_size
            digests = await reader.digests()
            covered = sorted((d.digest.first_index, d.digest.end_index) for d in digests)
            if covered and covered[0][0] == 0 and covered[-1][1] == size:
                break
            assert time.monotonic() < deadline, (
                f"digests cover {covered} of the log's {size} entries"
            )
            await asyncio.sleep(1)
        checks = await reader.check(digests)
        # Contiguous, from the log's first entry to its head: every entry in one digest.
        assert all(a[1] == b[0] for a, b in itertools.pairwise(covered)), covered
        assert len(checks) >= 2, "the load spanned at least two periods"
        for check in checks:
            assert check.agrees, check.problems
            assert check.notice.tenant_id == household.tenant
            assert check.notice.rule == watch_pb2.WATCH_RULE_DIGEST
        views = sum(c.notice.digest.views for c in checks)
        assert views > 0
        assert views == sum(1 for e in listing.entries if e.record.purpose in VIEWS)
        by_kind = {k.purpose for c in checks for k in c.notice.digest.by_kind}
        assert len(by_kind) >= 2, "views of several kinds were counted"
        # One count changed: flagged, with the head the count was made against.
        altered = watch_pb2.WatchNotice()
        altered.CopyFrom(max(checks, key=lambda c: c.notice.digest.views).notice)
        altered.digest.by_viewer[0].count += 1
        (flagged,) = await reader.check([altered])
        assert not flagged.agrees
        assert any("viewer" in p and "the digest says" in p for p in flagged.problems)
        assert flagged.head.tree_size >= size
        # Each digest was kept with a signed head of the log covering it, which the
        # verified log extends; a head with its root changed, or none, is flagged.
        for check in checks:
            head = check.notice.digest.tree_head
            assert head.tenant_id == household.tenant
            assert check.notice.digest.end_index <= head.tree_size <= size
        rerooted = watch_pb2.WatchNotice()
        rerooted.CopyFrom(checks[0].notice)
        rerooted.digest.tree_head.root_hash = bytes(32)
        headless = watch_pb2.WatchNotice()
        headless.CopyFrom(checks[0].notice)
        headless.digest.ClearField("tree_head")
        for tampered in await reader.check([rerooted, headless]):
            assert any("signed head" in p for p in tampered.problems), tampered.problems
    print(
        f"\n{len(checks)} digests of {PERIOD_SECONDS} s periods covering {size} log entries "
        f"({views} views) agree with the verified log; one count changed is flagged"
    )
