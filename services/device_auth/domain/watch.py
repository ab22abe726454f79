"""The owner's tuning of the privacy watch for one camera (issue #22): which of the watch's
rules are muted there and its burst count. device_auth only keeps and publishes it, in the
camera's settings (CameraSettingsChanged carries the complete settings); the privacy watch
applies it. Kept apart from service.py, which is long enough."""

from __future__ import annotations

from collections.abc import Iterable

from services.device_auth.domain.errors import InvalidInput
from services.device_auth.domain.records import WATCH_BURST_COUNT_MAX, WATCH_RULES


def tuned(
    muted: Iterable[str],
    mute: Iterable[str] = (),
    unmute: Iterable[str] = (),
) -> tuple[str, ...]:
    """The muted rules after muting `mute` and unmuting `unmute`, in WATCH_RULES order."""
    mute, unmute = set(mute), set(unmute)
    unknown = sorted((mute | unmute) - set(WATCH_RULES))
    if unknown:
        raise InvalidInput(
            f"watch rule {unknown[0]!r} cannot be muted on a camera: one of "
            + ", ".join(WATCH_RULES)
        )
    both = sorted(mute & unmute)
    if both:
        raise InvalidInput(f"watch rule {both[0]!r} is both muted and unmuted")
    after = (set(muted) | mute) - unmute
    return tuple(rule for rule in WATCH_RULES if rule in after)


def burst_count(value: int) -> int:
    """A camera's burst count: 2 to WATCH_BURST_COUNT_MAX, or 0 for the watch's own."""
    if value != 0 and not 2 <= value <= WATCH_BURST_COUNT_MAX:
        raise InvalidInput(
            f"watch_burst_count must be 2 to {WATCH_BURST_COUNT_MAX} (0: the watch's default)"
        )
    return value
