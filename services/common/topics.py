"""Every Kafka topic of the platform, in one place, with the envelope it carries.

Events are keyed by tenant id so one household's events stay in order.
Compacted topics (current state) are added by the issues that need them.

Not listed here: each consumer group's dead-letter topic, `privacam.deadletter.<group>.v1`
(services.common.kafka.EventConsumer makes it at start; services.common.topic_grants says
which service writes which), holding the events its handler could not apply.
"""

from __future__ import annotations

from typing import Any

from privacam.accesslog.v1.events_pb2 import AccessEvent, AccessStateRecord
from privacam.clips.v1.events_pb2 import ClipEvent
from privacam.identity.v1.events_pb2 import IdentityEvent
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam.identity.v1.state_pb2 import IdentityStateDocument
from privacam.keys.v1.events_pb2 import KeyEvent
from privacam.keys.v1.state_pb2 import KeyStateRecord
from privacam.relay.v1.events_pb2 import RelayEvent
from privacam.retention.v1.events_pb2 import RetentionEvent
from privacam.retention.v1.retention_pb2 import ShredRecord
from privacam.watch.v1.events_pb2 import WatchNotice
from services.common.diagnostics import DIAGNOSTICS_TOPIC
from services.common.kafka import Topic

IDENTITY: Topic[IdentityEvent] = Topic("privacam.identity.v1", IdentityEvent)
"""Accounts, enrollments, revocations, grants, PINs, camera settings (device_auth)."""
KEYS: Topic[KeyEvent] = Topic("privacam.keys.v1", KeyEvent)
"""Key lifecycle and key use, never key bytes (key_manager)."""
CLIPS: Topic[ClipEvent] = Topic(
    "privacam.clips.v1",
    ClipEvent,
    # retention rebuilds its schedule by replaying this topic: keep events past the longest
    # clip retention (30 days by default) plus a week.
    config={"retention.ms": str(37 * 86_400 * 1000)},
)
"""Clips ingested, deleted and accessed (clip_ingest, retention)."""
RELAY: Topic[RelayEvent] = Topic("privacam.relay.v1", RelayEvent)
"""Live-view sessions and camera presence (relay_broker)."""
RETENTION: Topic[RetentionEvent] = Topic("privacam.retention.v1", RetentionEvent)
"""Exports, account cancellations, retention sweeps (retention)."""
ACCESS: Topic[AccessEvent] = Topic("privacam.access.v1", AccessEvent)
"""Every access to a household's data, feeding its tamper-evident log."""
KEY_STATE: Topic[KeyStateRecord] = Topic(
    "privacam.keys.state.v1",
    KeyStateRecord,
    compacted=True,
    config={"min.cleanable.dirty.ratio": "0.01"},
)
"""Sealed KEKs and destruction markers: the key manager's durable state (compacted)."""
IDENTITY_STATE: Topic[IdentityStateDocument] = Topic(
    "privacam.identity.state.v1",
    IdentityStateDocument,
    compacted=True,
    config={"min.cleanable.dirty.ratio": "0.1"},
)
"""device_auth's durable state (compacted): accounts, logins, installs, cameras, grants."""
REVOCATIONS: Topic[RevocationRecord] = Topic(
    "privacam.revocations.v1",
    RevocationRecord,
    compacted=True,
    config={"min.cleanable.dirty.ratio": "0.1"},
)
"""Revoked certificates and identities (device_auth writes; every service replays it)."""
RETENTION_STATE: Topic[ShredRecord] = Topic(
    "privacam.retention.state.v1",
    ShredRecord,
    compacted=True,
    config={"min.cleanable.dirty.ratio": "0.1"},
)
"""Crypto-shred records, the user's durable proof of deletion (retention; compacted)."""
ACCESS_STATE: Topic[AccessStateRecord] = Topic(
    "privacam.access.state.v1",
    AccessStateRecord,
    compacted=True,
    config={"min.cleanable.dirty.ratio": "0.1"},
)
"""Operator access requests, incidents and incident notices (access_log; compacted)."""
WATCH_NOTICES: Topic[WatchNotice] = Topic("privacam.watch.notices.v1", WatchNotice)
"""Notices of unusual access to a household's data, for its apps (privacy_watch)."""
DIAGNOSTICS = DIAGNOSTICS_TOPIC
"""Synthetic probes that SREs use to check the event path end to end."""

ALL: tuple[Topic[Any], ...] = (
    IDENTITY,
    IDENTITY_STATE,
    REVOCATIONS,
    KEYS,
    KEY_STATE,
    CLIPS,
    RELAY,
    RETENTION,
    RETENTION_STATE,
    ACCESS,
    ACCESS_STATE,
    WATCH_NOTICES,
    DIAGNOSTICS,
)
