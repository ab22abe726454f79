"""Composition root of access_log: builds adapters, servicers and consumers for the runtime."""

from datetime import timedelta

from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from services.access_log.adapters.metrics import PrometheusLogMetrics
from services.access_log.adapters.segments import SegmentStore
from services.access_log.adapters.signer import (
    Ed25519HeadSigner,
    load_retired_keys,
    load_rotations,
    load_signing_key,
)
from services.access_log.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.access_log.api.servicer import AccessLogServicer
from services.access_log.domain.log import LogBook
from services.access_log.domain.service import AccessLog
from services.access_log.settings import AccessLogSettings
from services.access_log.streams.identity import AccountDeletions
from services.access_log.streams.replica import AccessReplica, KafkaJournal
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventConsumer, EventProducer
from services.common.replicated_map import ReplicatedMap
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import ObjectStore


def build(settings: AccessLogSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    objects = ObjectStore(settings.minio, buckets=(settings.bucket,))
    book = LogBook()
    replica = AccessReplica(
        settings.kafka,
        producer,
        book,
        SegmentStore(objects.client, settings.bucket, settings.kafka.namespace),
        settings.segment_max_entries,
        settings.segment_interval_seconds,
    )
    journal = KafkaJournal(producer, replica, clock, settings.append_timeout_seconds)
    state = ReplicatedMap(settings.kafka, topics.ACCESS_STATE, producer)
    signer = Ed25519HeadSigner(
        load_signing_key(settings.signing_key_file),
        settings.signing_key_id,
        load_retired_keys(settings.retired_keys_file),
        load_rotations(settings.key_rotations_file),
    )
    log = AccessLog(
        book,
        journal,
        signer,
        state,
        clock,
        PrometheusLogMetrics(),
        timedelta(seconds=settings.max_clock_skew_seconds),
    )
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR,
                pb_grpc.add_AccessLogServiceServicer_to_server,
                AccessLogServicer(log),
            )
        ],
        policies=POLICIES,
        topics=[topics.ACCESS, topics.ACCESS_STATE, topics.IDENTITY],
        consumers=[
            # A household's log must go with its account. An AccountDeleted whose handler
            # keeps failing (not a store being away: that is retried for as long as it
            # lasts) is dead-lettered and alerted: the deletion waits in the dead-letter
            # topic, kept as long as the identity topic would have kept it, until it is
            # replayed. Blocking would not keep it longer (the topic's retention drops it)
            # and would hold back every later account's deletion on the partition too.
            EventConsumer(
                settings.kafka,
                topics.IDENTITY,
                "access_log",
                AccountDeletions(journal),
                producer=producer,
            )
        ],
        components=[objects],
        # Replayed once the topics exist and the producer runs, before the API serves.
        late_components=[state, replica],
    )
