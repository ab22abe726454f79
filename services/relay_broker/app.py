"""Composition root of relay_broker: builds adapters, servicers and consumers for the runtime."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from redis.asyncio import Redis

from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventConsumer, EventProducer
from services.common.peers import Peers
from services.common.periodic import Periodic
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import redis_options
from services.relay_broker.adapters.bus import Bus
from services.relay_broker.adapters.events import KafkaRelayEvents
from services.relay_broker.adapters.links import BusLinks
from services.relay_broker.adapters.metrics import PrometheusRelayMetrics
from services.relay_broker.adapters.peers import AccessLogClient, DeviceAuthPolicy
from services.relay_broker.adapters.redis_client import BrokerRedis
from services.relay_broker.adapters.redis_state import RedisPresence, RedisSessions, RedisTalks
from services.relay_broker.adapters.turn_stats import TurnStats
from services.relay_broker.adapters.watch_notices import RedisWatchNotices
from services.relay_broker.api.cameras import CameraHub
from services.relay_broker.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.relay_broker.api.servicer import RelayBrokerServicer
from services.relay_broker.domain.live_views import Limits, LiveViews
from services.relay_broker.domain.talk_back import TalkBacks
from services.relay_broker.settings import RelayBrokerSettings
from services.relay_broker.streams.identity import IdentityFollower
from services.relay_broker.streams.watch import WatchNoticeFollower

log = logging.getLogger("privacam.relay_broker")


def lease_keeper(views: LiveViews, talks: TalkBacks, heartbeat: timedelta) -> Periodic:
    """Every heartbeat: renew the leases of the sides signaling here, then end what a
    dead replica left running (sessions, talk-backs), logged like any other end."""

    async def keep() -> int:
        await views.renew_leases()
        return await views.sweep() + await talks.sweep(grace=views.limits.lease)

    return Periodic("the sweep of sessions no replica holds", keep, heartbeat, log=log)


class _Stoppable:
    """Adapts a LiveViews (timers) to the runtime's component lifecycle."""

    def __init__(self, views: LiveViews, talks: TalkBacks) -> None:
        self._views = views
        self._talks = talks

    async def start(self) -> None:
        """Nothing to start: timers begin with sessions."""

    async def stop(self) -> None:
        await self._talks.stop()
        await self._views.stop()


def build(settings: RelayBrokerSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    store = BrokerRedis(settings.redis)
    # Pub/sub blocks on reads for as long as nothing is published: no socket timeout.
    namespace = settings.kafka.namespace  # also keeps environments apart in a shared Redis
    bus = Bus(
        Redis.from_url(
            settings.redis.url.get_secret_value(),
            socket_connect_timeout=5,
            **redis_options(settings.redis),
        ),
        namespace,
    )
    peers = Peers(settings.peers, settings.tls)
    heartbeat = timedelta(seconds=settings.heartbeat_interval_seconds)
    max_duration = timedelta(seconds=settings.max_session_seconds)
    sessions = RedisSessions(store.client, max_duration, namespace)
    presence = RedisPresence(store.client, 3 * heartbeat, namespace)
    links = BusLinks(bus)
    events = KafkaRelayEvents(producer, clock)
    policy = DeviceAuthPolicy(peers)
    access_log = AccessLogClient(peers)
    metrics = PrometheusRelayMetrics()
    views = LiveViews(
        policy=policy,
        access_log=access_log,
        sessions=sessions,
        presence=presence,
        links=links,
        events=events,
        metrics=metrics,
        clock=clock,
        limits=Limits(
            idle_timeout=timedelta(seconds=settings.idle_timeout_seconds),
            max_duration=max_duration,
            turn_ttl_seconds=settings.turn_ttl_seconds,
            per_camera=settings.max_sessions_per_camera,
            per_app=settings.max_sessions_per_app,
            lease=3 * heartbeat,
        ),
        turn_secret=settings.turn.shared_secret.get_secret_value().encode(),
        turn_uris=tuple(u.strip() for u in settings.turn.uris.split(",") if u.strip()),
    )
    talks = TalkBacks(
        views=views,
        policy=policy,
        access_log=access_log,
        store=RedisTalks(store.client, namespace),
        links=links,
        metrics=metrics,
        clock=clock,
        max_talk=timedelta(seconds=settings.max_talk_seconds),
    )
    turn_stats = TurnStats(store.client, bus, sessions, uuid.uuid4().hex, namespace)
    cameras = CameraHub(
        bus,
        presence,
        views,
        links,
        events,
        clock,
        heartbeat,
        on_tick=lambda: turn_stats.renew(3 * heartbeat.total_seconds()),
    )
    watch_notices = RedisWatchNotices(
        store.client,
        namespace,
        settings.watch_notices_kept,
        timedelta(days=settings.watch_notices_keep_days),
        settings.watch_digests_kept,
        timedelta(days=settings.watch_digests_keep_days),
    )
    servicer = RelayBrokerServicer(
        views, cameras, bus, links, presence, policy, talks, watch_notices
    )
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_RelayBrokerServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.RELAY, topics.IDENTITY, topics.WATCH_NOTICES],
        consumers=[
            # Revocations end live views. One whose handler keeps failing (not the bus or
            # Redis being away: that is retried for as long as it lasts) is dead-lettered
            # and alerted: blocking would hold every later revocation of a third of the
            # households behind it. A revoked certificate's open calls are cancelled by the
            # revocations topic all the same (services.common.revocations); the views of a
            # revoked grant end when the dead letter is replayed, once the cause is fixed.
            EventConsumer(
                settings.kafka,
                topics.IDENTITY,
                "relay_broker.identity",
                IdentityFollower(views, links, clock, watch_notices).on_event,
                producer=producer,
            ),
            # The privacy watch's notices, kept and told to the household once per id. A
            # notice that cannot be kept (Redis away) is retried for as long as that lasts;
            # one whose handler keeps failing is dead-lettered so later households' notices
            # are not held behind it.
            EventConsumer(
                settings.kafka,
                topics.WATCH_NOTICES,
                "relay_broker.watch",
                WatchNoticeFollower(watch_notices, access_log).on_event,
                producer=producer,
            ),
        ],
        components=[
            store,
            bus,
            peers,
            turn_stats,
            cameras,
            lease_keeper(views, talks, heartbeat),
            _Stoppable(views, talks),
        ],
    )
