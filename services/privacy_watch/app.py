"""Composition root of privacy_watch: the Faust worker as a component of the runtime."""

from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import ServiceParts
from services.privacy_watch.adapters.worker import FaustWorker
from services.privacy_watch.settings import PrivacyWatchSettings


def build(settings: PrivacyWatchSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    worker = FaustWorker(settings, clock)
    return ServiceParts(
        apis=[],
        policies={},
        topics=[topics.ACCESS, topics.IDENTITY, topics.WATCH_NOTICES],
        # Started once the topics exist; the runtime serves only after its tables are
        # recovered.
        late_components=[worker],
    )
