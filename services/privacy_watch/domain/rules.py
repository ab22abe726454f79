"""Which accesses to a household's data the household is told of, and what it remembers.

Pure functions over plain data, so every rule is tested without Kafka: `Household.observe`
takes one entry of the household's access log and returns the notices it gives, updating
the household's viewers, its recent playbacks and its usual viewing hours.

Time is the entry's own `occurred_at`, never the wall clock: a replay after a crash, or a
second worker taking over the partition, reaches the same state and the same notices.
Windows are kept here rather than in Faust's windowed tables because those expire on the
wall clock, never expire keys restored from a changelog and lose windows across a
rebalance (issue #22): a household's state is one record, whole, in one changelog.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

NOTICE_NAMESPACE = uuid.UUID("5b0a3c1e-4f7d-5e2a-9c41-7d1e0b6a2f93")
"""UUID v5 namespace of notice ids: uuid5(namespace, "<tenant>/<access id>/<rule>")."""


class Rule(enum.Enum):
    NEW_VIEWER = "new_viewer"
    OPERATOR_ACCESS = "operator_access"
    BURST = "burst"
    OUTSIDE_USUAL_HOURS = "outside_usual_hours"
    WRONG_PIN_STREAK = "wrong_pin_streak"
    NEW_APP_INSTALL = "new_app_install"
    NEW_GRANT = "new_grant"


class Purpose(enum.Enum):
    """The access purposes the rules tell apart (the log's AccessPurpose, reduced)."""

    LIVE_VIEW = "live_view"
    CLIP_LISTING = "clip_listing"
    CLIP_PLAYBACK = "clip_playback"
    DATA_EXPORT = "data_export"
    TALK_BACK = "talk_back"
    OPERATOR_SUPPORT = "operator_support"
    OTHER = "other"


VIEWING = frozenset(
    {
        Purpose.LIVE_VIEW,
        Purpose.CLIP_LISTING,
        Purpose.CLIP_PLAYBACK,
        Purpose.DATA_EXPORT,
        Purpose.TALK_BACK,
    }
)
"""Accesses that look at (or speak into) the household: what "a viewer" does."""
CONTENT = frozenset({Purpose.CLIP_PLAYBACK, Purpose.DATA_EXPORT})
"""Playbacks and downloads: what a burst counts."""


class Kind(enum.Enum):
    CAMERA = "camera"
    APP = "app"
    SERVICE = "service"
    OPERATOR = "operator"
    OTHER = "other"


@dataclass(frozen=True)
class Principal:
    kind: Kind
    tenant_id: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.kind.value}/{self.tenant_id}/{self.id}"


@dataclass(frozen=True)
class Entry:
    """One entry of a household's access log, as the watch needs it."""

    tenant_id: str
    index: int
    access_id: str
    occurred_at: datetime
    principal: Principal
    purpose: Purpose
    device_id: str = ""


def notice_id(tenant_id: str, source_id: str, rule: Rule) -> str:
    """The same access (or identity event) and rule give the same id: a replay is
    recognised by whoever reads the notices."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, f"{tenant_id}/{source_id}/{rule.value}"))


@dataclass(frozen=True)
class Notice:
    rule: Rule
    entry: Entry
    count: int = 0
    window: timedelta | None = None

    @property
    def notice_id(self) -> str:
        """The same access and rule give the same id, so a replay is recognised."""
        return notice_id(self.entry.tenant_id, self.entry.access_id, self.rule)

    @property
    def summary(self) -> str:
        camera = f"camera {self.entry.device_id}" if self.entry.device_id else "the account"
        what = self.entry.purpose.value.replace("_", " ")
        match self.rule:
            case Rule.NEW_VIEWER:
                text = f"a viewer not seen in {_days(self.window)} days: {what} of {camera}"
            case Rule.OPERATOR_ACCESS:
                text = f"an operator accessed {camera} ({what})"
            case Rule.BURST:
                minutes = _minutes(self.window)
                text = f"{self.count} playbacks or downloads of {camera} within {minutes} min"
            case Rule.OUTSIDE_USUAL_HOURS:
                text = f"{what} of {camera} at an unusual hour"
            case _:
                text = f"{what} of {camera}"
        return text[:256]


def _days(window: timedelta | None) -> int:
    return window.days if window else 0


def _minutes(window: timedelta | None) -> int:
    return int(window.total_seconds() // 60) if window else 0


@dataclass(frozen=True)
class WatchPolicy:
    """The rules' thresholds (settings of the service)."""

    look_back: timedelta = timedelta(days=30)
    """A viewer not seen for this long is new again."""
    burst_count: int = 5
    """Playbacks or downloads by one viewer within `burst_window` that make a burst."""
    burst_window: timedelta = timedelta(minutes=10)
    usual_hours_min_views: int = 20
    """Views a household needs before any hour can be unusual (fewer: nothing is)."""
    unusual_hours_quiet: timedelta = timedelta(hours=1)
    """After an unusual-hours notice, the next comes no sooner than this."""


MAX_INSTALLS = 200
"""App installs remembered per account."""

CAMERA_RULES = frozenset(
    {
        Rule.NEW_VIEWER,
        Rule.OPERATOR_ACCESS,
        Rule.BURST,
        Rule.OUTSIDE_USUAL_HOURS,
        Rule.WRONG_PIN_STREAK,
        Rule.NEW_GRANT,
    }
)
"""The rules that concern one camera, so its owner can mute them there."""


@dataclass(frozen=True)
class CameraTuning:
    """The owner's tuning of the watch for one camera (device_auth's camera settings, as
    its CameraSettingsChanged carries them)."""

    muted: frozenset[Rule] = frozenset()
    burst_count: int = 0
    """Playbacks or downloads of this camera by one viewer that make a burst; 0: the
    policy's (counted over all the household's cameras)."""

    def tells(self, rule: Rule) -> bool:
        return rule not in self.muted

    @property
    def is_default(self) -> bool:
        return not self.muted and not self.burst_count

    def to_json(self) -> dict[str, Any]:
        return {"muted": sorted(r.value for r in self.muted), "burst_count": self.burst_count}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CameraTuning:
        return cls(
            muted=frozenset(Rule(r) for r in data.get("muted", ())),
            burst_count=int(data.get("burst_count", 0)),
        )


Tuning = dict[str, CameraTuning]
"""Camera id -> its tuning; a camera not in it has every rule and the policy's thresholds."""
DEFAULT_TUNING = CameraTuning()


def tells(tuning: Tuning, device_id: str, rule: Rule) -> bool:
    """Whether `rule` tells about `device_id` (an entry of no camera: always)."""
    return not device_id or tuning.get(device_id, DEFAULT_TUNING).tells(rule)


@dataclass
class Account:
    """What the watch remembers of an account's identity events (one changelog record):
    the app installs it has seen, so a new one is told."""

    offset: int = -1
    """Offset of the last identity event applied (in the account's partition)."""
    registered: bool = False
    """The account's registration was seen: its first install is the registering one."""
    installs: list[str] = field(default_factory=list)
    deleted: bool = False
    cameras: Tuning = field(default_factory=dict)
    """The owner's tuning of each camera that has one (from CameraSettingsChanged)."""
    pin_streaks: dict[str, int] = field(default_factory=dict)
    """Camera id -> wrong tries in a row at its last lockout (PinLockedOut), so the fleet's
    count of wrong tries takes each try once (device_auth publishes again, with the whole
    streak's count, at every wrong try after a lockout)."""

    def wrong_pins(self, device_id: str, failed_attempts: int) -> int:
        """Record a camera's lockout; the wrong tries it adds: all of them at a streak's first
        lockout, those since the previous lockout after that. A count not above the last
        one is a new streak (a correct PIN resets device_auth's count and publishes
        nothing)."""
        before = self.pin_streaks.get(device_id, 0)
        if device_id and not self.deleted:
            self.pin_streaks[device_id] = failed_attempts
        return failed_attempts - before if failed_attempts > before else failed_attempts

    def pin_changed(self, device_id: str) -> None:
        """The owner set, changed or cleared the PIN: device_auth's streak starts again."""
        self.pin_streaks.pop(device_id, None)

    def tune(self, device_id: str, tuning: CameraTuning) -> None:
        if tuning.is_default:
            self.cameras.pop(device_id, None)
        else:
            self.cameras[device_id] = tuning

    def app_installed(self, install_id: str) -> bool:
        """Record an install's enrollment; True if it is a new app on the account (not
        one seen before, nor the one that registered the account)."""
        if self.deleted or install_id in self.installs:
            return False
        first = self.registered and not self.installs
        self.installs = [*self.installs, install_id][-MAX_INSTALLS:]
        return not first

    def delete(self) -> None:
        self.installs = []
        self.cameras = {}
        self.pin_streaks = {}
        self.deleted = True

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "registered": self.registered,
            "installs": list(self.installs),
            "deleted": self.deleted,
            "cameras": {device: t.to_json() for device, t in self.cameras.items()},
            "pin_streaks": dict(self.pin_streaks),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Account:
        if not data:
            return cls()
        return cls(
            offset=int(data["offset"]),
            registered=bool(data["registered"]),
            installs=[str(i) for i in data["installs"]],
            deleted=bool(data["deleted"]),
            cameras={
                device: CameraTuning.from_json(t) for device, t in data.get("cameras", {}).items()
            },
            pin_streaks={device: int(n) for device, n in data.get("pin_streaks", {}).items()},
        )


@dataclass
class Viewer:
    last: datetime
    recent: list[tuple[datetime, str]] = field(default_factory=list)
    """Times of its playbacks and downloads within the burst window, with their camera."""
    burst_until: datetime | None = None
    """A burst was told; no new burst is told before this time."""


@dataclass
class Household:
    """What the watch remembers of one household (one record of its changelog)."""

    size: int = 0
    """Entries of the household's log so far: the index of the next one."""
    offset: int = -1
    """Offset of the last access event applied (in the household's partition): an event
    at or below it is a replay and changes nothing."""
    viewers: dict[str, Viewer] = field(default_factory=dict)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    """Views per hour of the day (UTC)."""
    unusual_told_at: datetime | None = None
    deleted: bool = False
    """The household's log was deleted: nothing more is kept or told."""

    def observe(
        self, entry: Entry, policy: WatchPolicy, tuning: Tuning | None = None
    ) -> list[Notice]:
        """Apply one new entry of the log; return the notices it gives, at most one per rule.

        A rule the owner muted on the entry's camera (`tuning`) tells nothing about it, and
        leaves no trace a later entry depends on (no quiet period after a muted burst or
        unusual hour); the entry is still counted (a viewer seen, a playback, an hour)."""
        if self.deleted:
            return []
        tuning = tuning or {}
        at = entry.occurred_at
        notices: list[Notice] = []
        principal = entry.principal
        if principal.kind is Kind.OPERATOR:
            if tells(tuning, entry.device_id, Rule.OPERATOR_ACCESS):
                notices.append(Notice(Rule.OPERATOR_ACCESS, entry))
        elif principal.kind is Kind.APP and entry.purpose in VIEWING:
            notices += self._viewed(entry, policy, tuning)
        self._forget_before(at - policy.look_back)
        return notices

    def _viewed(self, entry: Entry, policy: WatchPolicy, tuning: Tuning) -> list[Notice]:
        at = entry.occurred_at
        camera = entry.device_id
        notices: list[Notice] = []
        viewer = self.viewers.get(entry.principal.key)
        if viewer is None or at - viewer.last > policy.look_back:
            if tells(tuning, camera, Rule.NEW_VIEWER):
                notices.append(Notice(Rule.NEW_VIEWER, entry, window=policy.look_back))
            viewer = Viewer(last=at)
            self.viewers[entry.principal.key] = viewer
        viewer.last = max(viewer.last, at)
        if entry.purpose in CONTENT:
            since = at - policy.burst_window
            viewer.recent = sorted([r for r in viewer.recent if r[0] > since] + [(at, camera)])
            own = tuning.get(camera, DEFAULT_TUNING).burst_count if camera else 0
            if own:  # the camera's own count: its playbacks only
                count, threshold = sum(1 for _, c in viewer.recent if c == camera), own
            else:
                count, threshold = len(viewer.recent), policy.burst_count
            quiet = viewer.burst_until is None or at >= viewer.burst_until
            if count >= threshold and quiet and tells(tuning, camera, Rule.BURST):
                notices.append(Notice(Rule.BURST, entry, count=count, window=policy.burst_window))
                viewer.burst_until = at + policy.burst_window
        if self.unusual_hour(at, policy) and tells(tuning, camera, Rule.OUTSIDE_USUAL_HOURS):
            told = self.unusual_told_at
            if told is None or at - told >= policy.unusual_hours_quiet:
                notices.append(Notice(Rule.OUTSIDE_USUAL_HOURS, entry))
                self.unusual_told_at = at
        self.hours[at.astimezone(UTC).hour] += 1
        return notices

    def unusual_hour(self, at: datetime, policy: WatchPolicy) -> bool:
        """An hour is unusual once the household has enough views and none fell in that
        hour or the hours either side of it."""
        if sum(self.hours) < policy.usual_hours_min_views:
            return False
        hour = at.astimezone(UTC).hour
        return all(self.hours[(hour + step) % 24] == 0 for step in (-1, 0, 1))

    def _forget_before(self, cutoff: datetime) -> None:
        """Viewers unseen for the look-back period are dropped: they would be new anyway,
        and the watch keeps no one longer than it needs."""
        for key in [k for k, v in self.viewers.items() if v.last < cutoff]:
            del self.viewers[key]

    def delete(self) -> None:
        """The household's log was deleted: forget everyone, keep only the mark."""
        self.viewers.clear()
        self.hours = [0] * 24
        self.unusual_told_at = None
        self.deleted = True

    # -- the changelog's record --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "offset": self.offset,
            "viewers": {
                key: {
                    "last": _iso(v.last),
                    "recent": [[_iso(t), c] for t, c in v.recent],
                    "burst_until": _iso(v.burst_until) if v.burst_until else None,
                }
                for key, v in self.viewers.items()
            },
            "hours": list(self.hours),
            "unusual_told_at": _iso(self.unusual_told_at) if self.unusual_told_at else None,
            "deleted": self.deleted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Household:
        if not data:
            return cls()
        return cls(
            size=int(data["size"]),
            offset=int(data["offset"]),
            viewers={
                key: Viewer(
                    last=_time(v["last"]),
                    recent=[_recent(r) for r in v["recent"]],
                    burst_until=_time(v["burst_until"]) if v["burst_until"] else None,
                )
                for key, v in data["viewers"].items()
            },
            hours=[int(h) for h in data["hours"]],
            unusual_told_at=_time(data["unusual_told_at"]) if data["unusual_told_at"] else None,
            deleted=bool(data["deleted"]),
        )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _recent(item: str | list[str]) -> tuple[datetime, str]:
    """A playback in a viewer's recent list: [time, camera] (a bare time, as written before
    per-camera tuning, is of no known camera)."""
    if isinstance(item, str):
        return _time(item), ""
    return _time(item[0]), str(item[1])


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
