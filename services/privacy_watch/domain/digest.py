"""The household's digest: its views per period (a week by default), counted as its log's
entries arrive, closed when the period is over.

Periods are tumbling windows aligned on `PERIOD_EPOCH` (a Monday, 00:00 UTC), so a week's
digest runs Monday to Monday. An entry belongs to the open period while its `occurred_at`
is before that period's end; the first entry at or after the end closes the period, and
the digest covers the log's entries from the period's first to the one before that entry:
a contiguous index range, which the household can count itself in its verified log
whatever order the entries' times came in. A period nobody accessed after is closed by the
worker's timer (`due`, on the platform's clock) once its end and a grace have passed; an
entry appended to the log after that, whenever it happened, goes to the next period.

Pure: the worker keeps a household's `DigestState` as one record of a changelog-backed
table (Faust's windowed tables expire on the wall clock, never expire keys restored from a
changelog and lose windows across a rebalance; issue #22) and sends what `due` returns.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.privacy_watch.domain.rules import NOTICE_NAMESPACE, Entry, Kind, Purpose

PERIOD_EPOCH = datetime(1970, 1, 5, tzinfo=UTC)
"""A Monday: periods of a whole number of weeks start on Mondays at 00:00 UTC."""
KEPT_CLOSED = 4
"""Closed periods a household's state keeps (the timer sends them; readers keep one per id)."""

VIEWS = frozenset(
    {
        Purpose.LIVE_VIEW,
        Purpose.CLIP_LISTING,
        Purpose.CLIP_PLAYBACK,
        Purpose.DATA_EXPORT,
        Purpose.TALK_BACK,
        Purpose.OPERATOR_SUPPORT,
    }
)
"""The entries a digest counts: what looks at the household, or (operators) may."""


def period_start(at: datetime, period: timedelta) -> datetime:
    """Start of the tumbling period holding `at`."""
    steps = (at - PERIOD_EPOCH) // period
    return PERIOD_EPOCH + steps * period


def digest_id(tenant_id: str, start: datetime) -> str:
    """One id per household and period, whoever sends it and however often."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, f"{tenant_id}/digest/{start.isoformat()}"))


@dataclass
class Period:
    """One period's counts and the log's entries [first_index, end_index) they cover."""

    start: datetime
    end: datetime
    first_index: int
    end_index: int
    by_viewer: Counter[str] = field(default_factory=Counter)
    """Principal key ("<kind>/<tenant>/<id>", Principal.key) -> views."""
    by_kind: Counter[str] = field(default_factory=Counter)
    """Purpose value -> views."""
    by_camera: Counter[str] = field(default_factory=Counter)
    """Device id ("" account-wide) -> views."""

    @property
    def views(self) -> int:
        return sum(self.by_kind.values())

    def count(self, entry: Entry) -> None:
        self.end_index = entry.index + 1
        if entry.purpose not in VIEWS:
            return
        self.by_viewer[entry.principal.key] += 1
        self.by_kind[entry.purpose.value] += 1
        self.by_camera[entry.device_id] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "first_index": self.first_index,
            "end_index": self.end_index,
            "by_viewer": dict(self.by_viewer),
            "by_kind": dict(self.by_kind),
            "by_camera": dict(self.by_camera),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Period:
        return cls(
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            first_index=int(data["first_index"]),
            end_index=int(data["end_index"]),
            by_viewer=Counter({str(k): int(v) for k, v in data["by_viewer"].items()}),
            by_kind=Counter({str(k): int(v) for k, v in data["by_kind"].items()}),
            by_camera=Counter({str(k): int(v) for k, v in data["by_camera"].items()}),
        )


@dataclass
class DigestState:
    """A household's open period and its last closed ones (one changelog record)."""

    open: Period | None = None
    closed: list[Period] = field(default_factory=list)

    def observe(
        self,
        entry: Entry,
        period: timedelta,
        appended_at: datetime | None = None,
        grace: timedelta = timedelta(0),
    ) -> None:
        """Count one new entry of the log (entries come in log order, index by index).

        The open period closes before the entry if the entry happened after its end, or
        if it was appended to the log (`appended_at`, the access event's record time)
        once the period's digest was due (`due`: the timer may have sent it), so a digest
        once sent never grows; such a late entry goes to the next period."""
        current = self.open
        if current is not None and (
            entry.occurred_at >= current.end
            or (appended_at is not None and appended_at >= current.end + grace)
        ):
            current.end_index = entry.index
            self.closed = [*self.closed, current][-KEPT_CLOSED:]
            start = max(period_start(entry.occurred_at, period), current.end)
            current = Period(start, start + period, entry.index, entry.index)
            self.open = current
        elif current is None:
            start = period_start(entry.occurred_at, period)
            current = Period(start, start + period, entry.index, entry.index)
            self.open = current
        current.count(entry)

    def due(self, now: datetime, grace: timedelta) -> list[Period]:
        """The periods whose digest can be sent at `now`: every closed one kept, and the
        open one once its end and `grace` (for entries still on their way) have passed."""
        periods = list(self.closed)
        if self.open is not None and now >= self.open.end + grace:
            periods.append(self.open)
        return periods

    def to_json(self) -> dict[str, Any]:
        return {
            "open": self.open.to_json() if self.open else None,
            "closed": [p.to_json() for p in self.closed],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DigestState:
        if not data:
            return cls()
        return cls(
            open=Period.from_json(data["open"]) if data["open"] else None,
            closed=[Period.from_json(p) for p in data["closed"]],
        )


def principal_parts(key: str) -> tuple[Kind, str, str]:
    """Principal.key back into its kind, tenant id and id."""
    kind, tenant, ident = key.split("/", 2)
    return Kind(kind), tenant, ident
