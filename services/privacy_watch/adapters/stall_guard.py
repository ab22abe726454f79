"""Tells when the worker has stopped reading partitions that have records waiting (#22).

faust-streaming 0.15.3 (with aiokafka 0.14) was seen, after a kill -9 of the other worker,
to take over the partitions and then read no more of some of them (78-94 of 120 notices in
about 1 kill run in 6). Caught once with Faust's state logged: recovery ended, partitions
resumed, flow on, fetch loop alive, and one input partition's consumer position at its end
offset while Faust had read none of its records. Faust's Recovery.on_recovery_completed
resumes the input partitions, awaits a seek to the committed offsets, then calls
flow_control.resume(), which empties the agents' queues: records fetched during that await
are dropped, and Faust relies on the seek to read them again, but aiokafka's
seek_to_committed only seeks partitions whose committed offset is above 0. That is fixed
where it happens (FaustWorker._seek_uncommitted_too); this guard is the backstop for what
was not explained: another stalled run got no changelog record during its recovery. Faust
logs nothing of either and no later rebalance or timer gets the partition read again.

The guard is pure: the worker samples, for each partition it should be reading, its
progress (the recovery's position for a changelog, the committed offset for an input: a
dropped record is never acked, so the commit stays before it) and whether records are
waiting past that, and the guard says which ones
have made no progress with records waiting for `after_seconds`. The worker then seeks them
again and restarts Faust's fetch loop (FaustWorker._restart_fetching).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
"""A partition, as the caller names it."""


@dataclass(frozen=True)
class Reading:
    """One partition's progress (an offset; None: none yet) and whether the brokers hold
    records past it."""

    position: int | None
    waiting: bool


class StallGuard(Generic[K]):
    def __init__(self, after_seconds: float) -> None:
        self._after = after_seconds
        self._since: dict[K, tuple[int | None, float]] = {}

    def stalled(self, now: float, readings: Mapping[K, Reading]) -> set[K]:
        """The partitions with records waiting and no progress for `after_seconds`."""
        stalled: set[K] = set()
        for key in list(self._since):
            if key not in readings:
                del self._since[key]  # no longer ours, or no longer watched
        for key, reading in readings.items():
            if not reading.waiting:
                self._since.pop(key, None)
                continue
            seen = self._since.get(key)
            if seen is None or seen[0] != reading.position:
                self._since[key] = (reading.position, now)
                continue
            if now - seen[1] >= self._after:
                stalled.add(key)
        return stalled

    def restarted(self, now: float) -> None:
        """After a restart of the fetch loop: each partition gets `after_seconds` again."""
        self._since = {key: (position, now) for key, (position, _) in self._since.items()}
