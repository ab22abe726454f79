"""Composition root of key_manager: builds adapters, servicers and consumers for the runtime."""

from dataclasses import replace
from datetime import timedelta

from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc
from privacam_core.receipts import DEFAULT_CLOCK_SKEW
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import GrpcApi, ServiceParts
from services.key_manager.adapters.events import KafkaKeyEvents
from services.key_manager.adapters.metrics import PrometheusKeyMetrics
from services.key_manager.adapters.receipts import (
    AccessLogNotDeployed,
    SignedLogReceipts,
    load_log_keys,
)
from services.key_manager.adapters.root_key import root_key_from
from services.key_manager.adapters.state_log import KafkaStateLog
from services.key_manager.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.key_manager.api.servicer import KeyManagerServicer
from services.key_manager.domain.keyring import Keyring
from services.key_manager.domain.service import KeyService
from services.key_manager.settings import KeyManagerSettings


def build(settings: KeyManagerSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    keyring = Keyring()
    receipt_max_age = timedelta(seconds=settings.receipt_max_age_seconds)
    state_topic = replace(
        topics.KEY_STATE,
        config={
            **topics.KEY_STATE.config,
            "segment.ms": str(settings.state_segment_ms),
            "max.compaction.lag.ms": str(settings.state_max_compaction_lag_ms),
        },
    )
    state = KafkaStateLog(
        settings.kafka,
        state_topic,
        producer,
        keyring,
        clock,
        # A used receipt is remembered while it could still pass the age checks.
        claim_lifetime=receipt_max_age + DEFAULT_CLOCK_SKEW,
    )
    key_events = KafkaKeyEvents(producer, clock)
    keys = KeyService(
        root=root_key_from(settings),
        keyring=keyring,
        state=state,
        events=key_events,
        receipts=(
            SignedLogReceipts(
                load_log_keys(settings.access_log_keys_file),
                clock,
                receipt_max_age,
                DEFAULT_CLOCK_SKEW,
            )
            if settings.access_log_keys_file is not None
            else AccessLogNotDeployed()
        ),
        clock=clock,
        rotation_period=timedelta(seconds=settings.rotation_period_seconds),
        metrics=PrometheusKeyMetrics(keyring),
    )
    servicer = KeyManagerServicer(keys)
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_KeyManagerServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.KEYS, state_topic],
        # The state log starts after the topics exist and the producer runs.
        late_components=[state, key_events],
    )
