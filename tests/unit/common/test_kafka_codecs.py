"""Topics carry one protobuf envelope each; Faust agents read them through the same codec."""

from __future__ import annotations

import pytest
from faust.serializers import codecs

from privacam.identity.v1.events_pb2 import CameraSettingsChanged, IdentityEvent
from services.common import topics
from services.common.kafka import register_faust_codecs

EVENT = IdentityEvent(camera_settings_changed=CameraSettingsChanged())
EVENT.metadata.tenant_id = "tenant-a"
EVENT.metadata.event_id = "e-1"


def test_a_topic_encodes_and_decodes_its_envelope() -> None:
    data = topics.IDENTITY.encode(EVENT)
    assert topics.IDENTITY.decode(data) == EVENT


def test_a_topic_refuses_another_topics_message() -> None:
    from privacam.keys.v1.events_pb2 import KeyEvent

    with pytest.raises(TypeError, match="carries IdentityEvent"):
        topics.IDENTITY.encode(KeyEvent())  # type: ignore[arg-type]


def test_faust_codec_round_trips_protobuf_envelopes() -> None:
    register_faust_codecs(topics.ALL)
    data = codecs.dumps(topics.IDENTITY.name, EVENT)
    assert data == EVENT.SerializeToString(deterministic=True)
    assert codecs.loads(topics.IDENTITY.name, data) == EVENT


def test_topic_names_are_unique_and_versioned() -> None:
    names = [topic.name for topic in topics.ALL]
    assert len(names) == len(set(names))
    assert all(name.startswith("privacam.") and ".v1" in name for name in names)
