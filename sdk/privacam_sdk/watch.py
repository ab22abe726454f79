"""The privacy watch's notices and digests, and the household's own check of a digest.

A digest (`WatchNotice.digest`, rule DIGEST) says how many views the household's log holds
among its entries `first_index` to `end_index - 1`: by whom, by kind and per camera. The
watch is not trusted for that: `check_digest` counts the same entries in the household's
verified log (AccessLogReader: every entry proved against a signed head) and lists every
way the digest disagrees, so an altered, padded or trimmed digest is flagged, with the
signed head the count was made against. The digest also carries the log's signed head
from when it was kept; `WatchReader.check` proves the verified log extends it, so the
digest stays bound to the log the household reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from privacam.accesslog.v1 import log_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as relay_pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as relay_grpc
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.receipts import ReceiptError, VerifiedEntry
from privacam_sdk.access_log import AccessLogReader
from privacam_sdk.client import PrivacamClient

VIEWS = frozenset(
    {
        types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
        types_pb2.ACCESS_PURPOSE_CLIP_LISTING,
        types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
        types_pb2.ACCESS_PURPOSE_TALK_BACK,
        types_pb2.ACCESS_PURPOSE_OPERATOR_SUPPORT,
    }
)
"""The entries a digest counts as views (the proto's WatchDigest says so)."""

Who = tuple[int, str, str]
"""A principal as (kind, tenant id, id)."""


def _who(principal: types_pb2.Principal) -> Who:
    return (principal.kind, principal.tenant_id, principal.id)


def _counted(
    pairs: Iterable[tuple[object, int]], what: str, problems: list[str]
) -> Counter[object]:
    counts: Counter[object] = Counter()
    for key, count in pairs:
        if key in counts:
            problems.append(f"the digest lists {what} {key!r} twice")
        counts[key] += count
    return counts


def _compare(what: str, said: Counter[object], found: Counter[object], problems: list[str]) -> None:
    for key in sorted(set(said) | set(found), key=repr):
        if said[key] != found[key]:
            problems.append(
                f"{what} {key!r}: the digest says {said[key]}, the verified log holds {found[key]}"
            )


def check_digest(
    digest: watch_pb2.WatchDigest, entries: Sequence[VerifiedEntry], tree_size: int
) -> list[str]:
    """Every way `digest` disagrees with the verified log (`entries`, all proved against a
    head of `tree_size` entries); empty when it agrees."""
    problems: list[str] = []
    first, end = digest.first_index, digest.end_index
    if end <= first:
        return [f"the digest covers no entries ({first} to {end})"]
    if end > tree_size:
        return [f"the digest covers entries up to {end - 1}; the verified log has {tree_size}"]
    by_index = {e.index: e.record for e in entries}
    missing = [i for i in range(first, end) if i not in by_index]
    if missing:
        return [f"entries {missing[0]} to {missing[-1]} were not verified: cannot check"]
    records: list[log_pb2.AccessRecord] = [by_index[i] for i in range(first, end)]
    views = [r for r in records if r.purpose in VIEWS]
    period_end = digest.period_end.ToDatetime()
    late = [
        i
        for i, r in zip(range(first, end), records, strict=True)
        if r.occurred_at.ToDatetime() >= period_end
    ]
    if late:
        problems.append(f"entry {late[0]} happened after the digest's period")
    if digest.views != len(views):
        problems.append(
            f"views: the digest says {digest.views}, the verified log holds {len(views)}"
        )
    said_viewers = _counted(
        ((_who(c.principal), c.count) for c in digest.by_viewer), "viewer", problems
    )
    said_kinds = _counted(((c.purpose, c.count) for c in digest.by_kind), "kind", problems)
    said_cameras = _counted(((c.device_id, c.count) for c in digest.by_camera), "camera", problems)
    _compare("viewer", said_viewers, Counter(_who(r.principal) for r in views), problems)
    _compare("kind", said_kinds, Counter(r.purpose for r in views), problems)
    _compare("camera", said_cameras, Counter(r.resource.device_id for r in views), problems)
    return problems


@dataclass(frozen=True)
class DigestCheck:
    notice: watch_pb2.WatchNotice
    """The digest as the watch sent it."""
    head: log_pb2.SignedTreeHead
    """The signed head of the household's log the digest was counted against."""
    problems: list[str]
    """How the digest disagrees with the verified log; empty when it agrees."""

    @property
    def agrees(self) -> bool:
        return not self.problems


class WatchReader:
    """The household's kept watch notices and digests, and the digests' check."""

    def __init__(self, client: PrivacamClient, log: AccessLogReader | None = None) -> None:
        self._client = client
        self._stub = relay_grpc.RelayBrokerServiceStub(client.channel("relay_broker"))
        self._log = log or AccessLogReader(client)

    async def notices(self, limit: int = 500) -> list[relay_pb.HouseholdNotice]:
        """The household's kept watch notices (digests among them), newest first."""
        response = await self._stub.ListWatchNotices(
            relay_pb.ListWatchNoticesRequest(limit=limit), timeout=self._client.timeout
        )
        return list(response.notices)

    async def digests(self, limit: int = 500) -> list[watch_pb2.WatchNotice]:
        """The household's kept digests (kept apart from the notices), newest first."""
        response = await self._stub.ListWatchNotices(
            relay_pb.ListWatchNoticesRequest(limit=limit, digests_only=True),
            timeout=self._client.timeout,
        )
        return [
            n.privacy_watch
            for n in response.notices
            if n.privacy_watch.rule == watch_pb2.WATCH_RULE_DIGEST
        ]

    async def _head_problems(
        self, digest: watch_pb2.WatchDigest, verified: log_pb2.SignedTreeHead
    ) -> list[str]:
        if not digest.HasField("tree_head"):
            return ["the digest carries no signed head of the log"]
        head = digest.tree_head
        if head.tree_size < digest.end_index:
            return [
                f"the digest's signed head covers {head.tree_size} entries, "
                f"fewer than its range (to {digest.end_index - 1})"
            ]
        try:
            await self._log.check_extends(head, verified)
        except ReceiptError as error:  # LogTampered among them
            return [f"the digest's signed head: {error}"]
        return []

    async def check(
        self, digests: Sequence[watch_pb2.WatchNotice] | None = None
    ) -> list[DigestCheck]:
        """Each digest (by default the kept ones) checked against the verified log."""
        if digests is None:
            digests = await self.digests()
        listing = await self._log.list()
        size = listing.head.tree_size
        checks = []
        for notice in digests:
            if notice.tenant_id != self._log.tenant_id:
                problems = ["the digest is another household's"]
            else:
                problems = check_digest(notice.digest, listing.entries, size)
                problems += await self._head_problems(notice.digest, listing.head)
            checks.append(DigestCheck(notice, listing.head, problems))
        return checks


__all__ = ["VIEWS", "DigestCheck", "WatchReader", "check_digest"]
