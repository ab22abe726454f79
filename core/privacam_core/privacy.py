"""Privacy mode on the platform's side: the shape of an owner's signed statement and
whether it makes a camera private at a given moment.

The platform refuses live view and clip uploads early with this, but it is not what
protects the household: the camera applies only statements signed by an owner key it
pinned at pairing (sdk/privacam_sdk/privacy.py, docs/camera-protocol.md). The camera-side
SDK evaluates statements with this same code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from privacam.identity.v1 import privacy_pb2

SIGNING_CONTEXT = b"privacam-privacy-v1\x00"
MAX_FUTURE = timedelta(minutes=5)
"""How far ahead of the verifier's clock a statement may be dated: a statement dated far
ahead would outrank every later one (statements are ordered by issued_at)."""
MAX_UNTIL = timedelta(days=366)
MAX_WINDOWS = 28
MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Feature(enum.Enum):
    """What privacy mode stops; each refusal names one."""

    LIVE_VIEW = "live view"
    TALK_BACK = "talk-back"  # issue #27 part 1: its RPC refuses with refusal(..., TALK_BACK)
    CLIP_UPLOAD = "clip uploads"


class StatementError(ValueError):
    """A malformed statement; the message says which field and what is allowed."""


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly window in local time: starts on ``day`` (0 Monday) at ``start`` minutes
    after midnight and ends at ``end`` (before ``start``: the next day)."""

    day: int
    start: int
    end: int

    @property
    def minutes(self) -> int:
        return self.end - self.start if self.end > self.start else self.end + 1440 - self.start

    def covers(self, minute_of_week: int) -> bool:
        return (minute_of_week - self.day * MINUTES_PER_DAY - self.start) % MINUTES_PER_WEEK < (
            self.minutes
        )

    def describe(self) -> str:
        return f"{DAYS[self.day]} {_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True, slots=True)
class Mode:
    """One statement's mode: "off", "on", "until" or "schedule"."""

    kind: str
    until: datetime | None = None
    utc_offset_minutes: int = 0
    windows: tuple[Window, ...] = ()

    def private_reason(self, now: datetime) -> str | None:
        """Why the camera is private at ``now`` (for people), or None when it is not."""
        if self.kind == "on":
            return "private until the owner turns it off"
        if self.kind == "until" and self.until is not None and now < self.until:
            return f"private until {self.until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if self.kind == "schedule":
            local = now.astimezone(UTC) + timedelta(minutes=self.utc_offset_minutes)
            minute = local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute
            for window in self.windows:
                if window.covers(minute):
                    return f"private on schedule, {window.describe()} UTC{self._offset()}"
        return None

    def next_change(self, now: datetime) -> datetime | None:
        """The first moment after ``now`` at which :meth:`private_reason` may change (an
        "until" ending, a schedule window beginning or ending), or None if none will."""
        if self.kind == "until" and self.until is not None:
            return self.until if now < self.until else None
        if self.kind != "schedule" or not self.windows:
            return None
        local = now.astimezone(UTC) + timedelta(minutes=self.utc_offset_minutes)
        monday = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        into_week, week = local - monday, timedelta(weeks=1)
        soonest = week
        for window in self.windows:
            begins = window.day * MINUTES_PER_DAY + window.start
            for edge in (begins, begins + window.minutes):
                ahead = (timedelta(minutes=edge) - into_week) % week
                soonest = min(soonest, ahead or week)
        return now + soonest

    def describe(self) -> str:
        if self.kind == "until" and self.until is not None:
            return f"private until {self.until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if self.kind == "schedule":
            days = ", ".join(w.describe() for w in self.windows)
            return f"private on schedule: {days} (UTC{self._offset()})"
        return "private" if self.kind == "on" else "off"

    def _offset(self) -> str:
        sign = "-" if self.utc_offset_minutes < 0 else "+"
        return f"{sign}{_hhmm(abs(self.utc_offset_minutes))}"

    def set_on(self, statement: privacy_pb2.PrivacyStatement) -> None:
        """Write this mode into a statement."""
        if self.kind == "off":
            statement.off.SetInParent()
        elif self.kind == "on":
            statement.on.SetInParent()
        elif self.kind == "until" and self.until is not None:
            statement.until.until.FromDatetime(self.until.astimezone(UTC))
        elif self.kind == "schedule":
            statement.schedule.utc_offset_minutes = self.utc_offset_minutes
            for w in self.windows:
                statement.schedule.windows.add(
                    day=w.day + 1, start_minute=w.start, end_minute=w.end
                )
        else:
            raise ValueError(f"unknown privacy mode {self.kind!r}")


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse(data: bytes) -> privacy_pb2.PrivacyStatement:
    try:
        return privacy_pb2.PrivacyStatement.FromString(data)
    except DecodeError:
        raise StatementError("statement.statement is not a serialized PrivacyStatement") from None


def mode_of(statement: privacy_pb2.PrivacyStatement) -> Mode:
    """The statement's mode, checked; StatementError names what is wrong."""
    which = statement.WhichOneof("mode")
    if which is None:
        raise StatementError("the statement must set a mode: off, on, until or schedule")
    if not statement.HasField("issued_at"):
        raise StatementError("the statement must carry issued_at")
    issued = statement.issued_at.ToDatetime(tzinfo=UTC)
    if which == "until":
        if not statement.until.HasField("until"):
            raise StatementError("until.until must be set")
        until = statement.until.until.ToDatetime(tzinfo=UTC)
        if not issued < until <= issued + MAX_UNTIL:
            raise StatementError("until.until must be after issued_at and within 366 days of it")
        return Mode("until", until=until)
    if which == "schedule":
        schedule = statement.schedule
        if not -720 <= schedule.utc_offset_minutes <= 840:
            raise StatementError("schedule.utc_offset_minutes must be -720 to 840")
        if not 1 <= len(schedule.windows) <= MAX_WINDOWS:
            raise StatementError(f"schedule.windows must hold 1 to {MAX_WINDOWS} windows")
        windows = []
        for number, window in enumerate(schedule.windows):
            where = f"schedule.windows[{number}]"
            if not privacy_pb2.DAY_OF_WEEK_MONDAY <= window.day <= privacy_pb2.DAY_OF_WEEK_SUNDAY:
                raise StatementError(f"{where}.day must be a day of the week, MONDAY to SUNDAY")
            if window.start_minute >= MINUTES_PER_DAY:
                raise StatementError(f"{where}.start_minute must be 0 to 1439")
            if not 1 <= window.end_minute <= MINUTES_PER_DAY:
                raise StatementError(f"{where}.end_minute must be 1 to 1440")
            if window.end_minute == window.start_minute:
                raise StatementError(f"{where} is empty: end_minute equals start_minute")
            windows.append(Window(window.day - 1, window.start_minute, window.end_minute))
        return Mode(
            "schedule", utc_offset_minutes=schedule.utc_offset_minutes, windows=tuple(windows)
        )
    return Mode(str(which))


def verify_signature(
    signed: privacy_pb2.SignedPrivacyStatement, key: ec.EllipticCurvePublicKey
) -> bool:
    """Whether ``key`` signed the statement's exact bytes."""
    try:
        key.verify(
            bytes(signed.signature),
            SIGNING_CONTEXT + bytes(signed.statement),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def refusal(device_id: str, mode: Mode | None, now: datetime, feature: Feature) -> str | None:
    """The FAILED_PRECONDITION message refusing ``feature`` now, or None when allowed."""
    reason = None if mode is None else mode.private_reason(now)
    if reason is None:
        return None
    return f"camera {device_id} is in privacy mode ({reason}): {feature.value} refused"
