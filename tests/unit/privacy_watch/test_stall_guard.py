"""The stall guard (issue #22): which partitions have records waiting and no progress."""

from services.privacy_watch.adapters.stall_guard import Reading, StallGuard


def test_waiting_without_progress_is_stalled_after_the_delay() -> None:
    guard: StallGuard[str] = StallGuard(after_seconds=15)
    assert guard.stalled(0, {"a": Reading(41, waiting=True)}) == set()
    assert guard.stalled(14, {"a": Reading(41, waiting=True)}) == set()
    assert guard.stalled(15, {"a": Reading(41, waiting=True)}) == {"a"}


def test_progress_or_nothing_waiting_is_not_a_stall() -> None:
    guard: StallGuard[str] = StallGuard(after_seconds=15)
    guard.stalled(0, {"a": Reading(41, True), "b": Reading(7, True), "c": Reading(None, True)})
    # a progressed, b has caught up, c read its first record since a seek.
    later = {"a": Reading(50, True), "b": Reading(7, False), "c": Reading(0, True)}
    assert guard.stalled(20, later) == set()
    assert guard.stalled(34, later | {"b": Reading(7, True)}) == set()
    assert guard.stalled(35, later | {"b": Reading(7, True)}) == {"a", "c"}


def test_a_partition_given_away_is_forgotten() -> None:
    guard: StallGuard[str] = StallGuard(after_seconds=15)
    guard.stalled(0, {"a": Reading(None, True)})
    guard.stalled(10, {})
    assert guard.stalled(20, {"a": Reading(None, True)}) == set()


def test_after_a_restart_each_partition_gets_the_delay_again() -> None:
    guard: StallGuard[str] = StallGuard(after_seconds=15)
    guard.stalled(0, {"a": Reading(3, True)})
    assert guard.stalled(15, {"a": Reading(3, True)}) == {"a"}
    guard.restarted(15)
    assert guard.stalled(29, {"a": Reading(3, True)}) == set()
    assert guard.stalled(30, {"a": Reading(3, True)}) == {"a"}
