"""Privacy mode: the owner's app signs when a camera is private; the camera decides.

While private a camera serves no live view or talk-back and records no clips, and a
view or talk-back already running when it turns private ends then
(:class:`PrivacyEnforcer`: at once when a statement it applied makes it private, and at
the minute a schedule's window begins). A change of mode is a
:class:`~privacam.identity.v1.privacy_pb2.PrivacyStatement` signed by an owner app's
certificate key. The camera (:class:`CameraPrivacy`) applies a statement only when

1. the signer install is one whose key the camera pinned at pairing (``owner-keys.json``,
   handed over by the owner's app with the claim token) and the signature verifies over
   ``"privacam-privacy-v1" 0x00 statement``;
2. it names this camera and household;
3. it is later than the statement applied last and at most 5 minutes ahead of the
   camera's clock (an old "off" replayed by anyone is refused);
4. its mode is well formed.

Otherwise it raises :class:`PrivacyRefused` and its state stays as it was, so neither a
service, an operator nor whoever writes the broker's state can switch privacy off. The
applied statement is kept in the camera's state file, so a restart keeps it. The contract
for firmware teams is in docs/camera-protocol.md.

The evaluation (:class:`Mode`, :func:`mode_of`) is core/privacam_core/privacy.py's, the same
code the platform uses to refuse early.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.identity.v1 import privacy_pb2 as pb

# Re-exported: apps and cameras name them from here.
from privacam_core.privacy import DAYS as DAYS
from privacam_core.privacy import MAX_FUTURE as MAX_FUTURE
from privacam_core.privacy import MAX_WINDOWS as MAX_WINDOWS
from privacam_core.privacy import MINUTES_PER_DAY, verify_signature
from privacam_core.privacy import SIGNING_CONTEXT as SIGNING_CONTEXT
from privacam_core.privacy import Mode as Mode
from privacam_core.privacy import Window as Window
from privacam_core.privacy import mode_of as mode_of
from privacam_sdk.client import PrivacamClient
from privacam_sdk.enrollment import owner_app_key

_DAY_SETS = {"daily": tuple(range(7)), "weekdays": tuple(range(5)), "weekends": (5, 6)}
_ITEM = re.compile(r"^\s*([a-z]+(?:-[a-z]+)?)\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2}):?(\d{2})$")
WATCH_AT_MOST = timedelta(minutes=1)
"""PrivacyEnforcer looks again at least this often, whatever the clock did meanwhile."""

log = logging.getLogger("privacam_sdk.privacy")


class Feature(enum.Enum):
    """What privacy mode stops."""

    LIVE_VIEW = "live view"
    TALK_BACK = "talk-back"
    CLIP_RECORDING = "clip recording"


class PrivacyRefused(Exception):
    """The camera will not do this (or will not apply this statement); says why."""


# --- the owner's app: say what you want, sign it -------------------------------------------


def parse_schedule(spec: str, utc_offset: str = "+00:00") -> Mode:
    """``"weekdays 22:00-07:00, sat 00:00-24:00"``: comma-separated items ``DAYS
    HH:MM-HH:MM`` (DAYS: mon..sun, a range like mon-fri, daily, weekdays or weekends; an
    end before the start runs past midnight) in local time at ``utc_offset``."""
    offset = _OFFSET.fullmatch(utc_offset.strip())
    if offset is None:
        raise ValueError(f"UTC offset {utc_offset!r} must look like +01:00 or -05:30")
    offset_minutes = (int(offset[2]) * 60 + int(offset[3])) * (-1 if offset[1] == "-" else 1)
    if not -720 <= offset_minutes <= 840:
        raise ValueError(f"UTC offset {utc_offset!r} must be -12:00 to +14:00")
    windows: list[Window] = []
    for item in spec.split(","):
        match = _ITEM.fullmatch(item.lower())
        if match is None:
            raise ValueError(
                f"schedule item {item.strip()!r} must look like 'mon-fri 22:00-07:00' "
                "(days: mon..sun, a range, daily, weekdays or weekends)"
            )
        days = _days(match[1], item.strip())
        start = _minute(int(match[2]), int(match[3]), item.strip(), allow_end=False)
        end = _minute(int(match[4]), int(match[5]), item.strip(), allow_end=True)
        if start == end or (start == 0 and end == 0):
            raise ValueError(f"schedule item {item.strip()!r} is empty: it starts when it ends")
        windows.extend(Window(day, start, end) for day in days)
    if len(windows) > MAX_WINDOWS:
        raise ValueError(f"a schedule holds at most {MAX_WINDOWS} windows, not {len(windows)}")
    return Mode("schedule", utc_offset_minutes=offset_minutes, windows=tuple(windows))


def _days(text: str, item: str) -> tuple[int, ...]:
    if text in _DAY_SETS:
        return _DAY_SETS[text]
    first, _, last = text.partition("-")
    if first not in DAYS or (last and last not in DAYS):
        raise ValueError(f"schedule item {item!r}: {text!r} is not a day, range or daily/weekdays")
    if not last:
        return (DAYS.index(first),)
    start, stop = DAYS.index(first), DAYS.index(last)
    return tuple((start + i) % 7 for i in range((stop - start) % 7 + 1))


def _minute(hour: int, minute: int, item: str, *, allow_end: bool) -> int:
    value = hour * 60 + minute
    if minute > 59 or value > (MINUTES_PER_DAY if allow_end else MINUTES_PER_DAY - 1):
        raise ValueError(f"schedule item {item!r}: {hour:02d}:{minute:02d} is not a time of day")
    return value


def make_statement(
    mode: Mode, *, tenant_id: str, device_id: str, install_id: str, issued_at: datetime
) -> pb.PrivacyStatement:
    stamp = Timestamp()
    stamp.FromDatetime(issued_at.astimezone(UTC))
    statement = pb.PrivacyStatement(
        tenant_id=tenant_id, device_id=device_id, signer_install_id=install_id, issued_at=stamp
    )
    mode.set_on(statement)
    mode_of(statement)  # refuse to sign what no camera would apply
    return statement


def sign_statement(
    statement: pb.PrivacyStatement, key: ec.EllipticCurvePrivateKey
) -> pb.SignedPrivacyStatement:
    """Sign with the owner app's certificate key (the key the camera pinned)."""
    data = statement.SerializeToString(deterministic=True)
    return pb.SignedPrivacyStatement(
        statement=data, signature=key.sign(SIGNING_CONTEXT + data, ec.ECDSA(hashes.SHA256()))
    )


async def set_privacy_mode(
    client: PrivacamClient, device_id: str, mode: Mode, now: datetime | None = None
) -> id_pb.SetPrivacyModeResponse:
    """As the owner's app: sign ``mode`` for the camera with this install's key and send
    it (device_auth logs it, relay_broker carries it to the camera)."""
    profile = client.profile
    tenant_id, install_id, _ = owner_app_key(profile.cert_file.read_bytes())
    key = load_pem_private_key(profile.key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"profile {profile.name!r} holds no P-256 key")
    statement = make_statement(
        mode,
        tenant_id=tenant_id,
        device_id=device_id,
        install_id=install_id,
        issued_at=now or datetime.now(UTC),
    )
    response: id_pb.SetPrivacyModeResponse = await client.device_auth().SetPrivacyMode(
        id_pb.SetPrivacyModeRequest(statement=sign_statement(statement, key))
    )
    return response


def current_mode(settings: identity_pb2.CameraSettings) -> Mode | None:
    """The mode of a camera's settings (None: never set)."""
    if not settings.HasField("privacy"):
        return None
    return mode_of(pb.PrivacyStatement.FromString(settings.privacy.statement))


def statement_digest(signed: pb.SignedPrivacyStatement) -> bytes:
    """SHA-256 of the statement's bytes: what PrivacyAnswer names."""
    return hashlib.sha256(bytes(signed.statement)).digest()


# --- the camera: verify, apply, keep, obey --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    statement: pb.PrivacyStatement
    mode: Mode
    issued_at: datetime


class CameraPrivacy:
    """One camera's privacy state: the last owner statement it verified and applied.

    ``owner_keys`` are the owner app keys pinned at pairing, by install id; ``state_file``
    keeps the applied statement (signed) across restarts. A camera with no pinned owner key
    applies nothing and stays as it is (not private unless a statement said so).
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        device_id: str,
        owner_keys: Mapping[str, ec.EllipticCurvePublicKey],
        state_file: Path,
    ) -> None:
        self._tenant_id = tenant_id
        self._device_id = device_id
        self._keys = dict(owner_keys)
        self._file = state_file
        self._applied: Applied | None = None
        if state_file.exists():
            signed = pb.SignedPrivacyStatement.FromString(
                base64.b64decode(json.loads(state_file.read_text())["statement"])
            )
            # Re-verified: the state file is only as trusted as the keys that signed it.
            self._applied = self._verified(signed)

    @property
    def applied(self) -> Applied | None:
        return self._applied

    def private_reason(self, now: datetime) -> str | None:
        return None if self._applied is None else self._applied.mode.private_reason(now)

    def next_change(self, now: datetime) -> datetime | None:
        """When the applied mode may next switch the camera private or back (None: only a
        new statement will)."""
        return None if self._applied is None else self._applied.mode.next_change(now)

    def check(self, feature: Feature, now: datetime) -> None:
        """PrivacyRefused when privacy mode forbids ``feature`` now: call it before every
        live view, talk-back and clip recording."""
        reason = self.private_reason(now)
        if reason is not None:
            raise PrivacyRefused(f"the camera is in privacy mode ({reason}): no {feature.value}")

    def apply(self, signed: pb.SignedPrivacyStatement, now: datetime) -> bool:
        """Verify and apply; True when it changed the state, False when it was the one
        already applied. PrivacyRefused (state unchanged) otherwise."""
        applied = self._verified(signed)
        if self._applied is not None:
            if applied.statement == self._applied.statement:
                return False
            if applied.issued_at <= self._applied.issued_at:
                raise PrivacyRefused(
                    "the privacy statement is older than the one applied: a replay"
                )
        if applied.issued_at > now + MAX_FUTURE:
            raise PrivacyRefused("the privacy statement is dated in the future")
        temporary = self._file.with_suffix(".tmp")
        document = {"statement": base64.b64encode(signed.SerializeToString()).decode()}
        temporary.write_text(json.dumps(document) + "\n")
        temporary.replace(self._file)  # applied only once it is kept
        self._applied = applied
        return True

    def _verified(self, signed: pb.SignedPrivacyStatement) -> Applied:
        try:
            statement = pb.PrivacyStatement.FromString(signed.statement)
        except DecodeError:
            raise PrivacyRefused("the privacy statement does not parse") from None
        key = self._keys.get(statement.signer_install_id)
        if key is None:
            raise PrivacyRefused(
                "the privacy statement is not signed by an owner app paired with this camera"
            )
        if not verify_signature(signed, key):
            raise PrivacyRefused(
                "the privacy statement's signature does not verify with the owner app's key"
            )
        if statement.tenant_id != self._tenant_id or statement.device_id != self._device_id:
            raise PrivacyRefused("the privacy statement is for another camera")
        try:
            mode = mode_of(statement)
        except ValueError as error:
            raise PrivacyRefused(f"the privacy statement is malformed: {error}") from None
        return Applied(statement, mode, statement.issued_at.ToDatetime(tzinfo=UTC))


class PrivacyEnforcer:
    """Ends what runs when the camera turns private, whatever turned it.

    ``end_running(reason)`` is the camera's own: stop the speaker, close every running
    peer connection (video and talk-back) and end each session with
    ``EndLiveView(reason=PRIVACY_MODE)``, which the platform logs as the end of that live
    view (docs/camera-protocol.md, section 6a). It awaits it whenever it finds the
    camera private: right after ``changed()`` (call it once a statement was applied),
    and at each moment the applied mode can switch by itself
    (``CameraPrivacy.next_change``: a schedule's window beginning), so a view running
    when a window begins ends then, not when the next request comes. It looks at least
    every minute in any case (the wall clock may jump). Called while private and idle,
    ``end_running`` just finds nothing to end.
    """

    def __init__(
        self,
        privacy: CameraPrivacy,
        end_running: Callable[[str], Awaitable[None]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._privacy = privacy
        self._end_running = end_running
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def changed(self) -> None:
        """The camera applied a statement: look now."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a change during the end below wakes the next wait
            now = self._clock()
            reason = self._privacy.private_reason(now)
            if reason is not None:
                try:
                    await self._end_running(reason)
                except Exception:  # it must outlive one failed end
                    log.exception("ending what runs in privacy mode failed")
            wait = WATCH_AT_MOST
            change = self._privacy.next_change(now)
            if change is not None:
                # A hair past the edge, so the state there is the new one.
                wait = min(wait, change - self._clock() + timedelta(milliseconds=20))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait.total_seconds(), 0))
