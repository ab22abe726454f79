"""What a deletion event on the clips topic deletes, whichever form it takes.

An owner's delete publishes one ClipDeleted; retention publishes one ClipsDeleted per camera
and batch. Every consumer (clip_ingest's index, retention's schedule) reads both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from privacam.clips.v1.events_pb2 import ClipEvent


@dataclass(frozen=True, slots=True)
class ClipDeletion:
    device_id: str
    clip_id: str
    reason: int
    key_version: int


def clip_deletions(event: ClipEvent) -> list[ClipDeletion]:
    """Each clip the event deletes (none for other events, or entries without ids)."""
    kind = event.WhichOneof("event")
    if kind == "clip_deleted":
        one = event.clip_deleted
        deletions = [ClipDeletion(one.device_id, one.clip_id, one.reason, one.key_version)]
    elif kind == "clips_deleted":
        batch = event.clips_deleted
        deletions = [
            ClipDeletion(batch.device_id, clip.clip_id, batch.reason, clip.key_version)
            for clip in batch.clips
        ]
    else:
        return []
    return [d for d in deletions if d.device_id and d.clip_id]
