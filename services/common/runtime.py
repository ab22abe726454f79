"""The service runtime: one composition of servers, consumers and lifecycle for every service.

A service's composition root builds its adapters and servicers and hands them
to ServiceRuntime, which serves:
  - the gRPC API on `grpc_port`, mutual TLS only, with reflection and health;
  - grpc.health.v1 alone on plaintext `health_port` (Kubernetes probes cannot speak TLS);
  - Prometheus /metrics on `metrics_port`;
and runs the Kafka consumers, then stops it all gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer as AsyncHealthServicer
from grpc_reflection.v1alpha import reflection

from privacam.diagnostics.v1 import diagnostics_service_pb2_grpc
from services.common import diagnostics, metrics, telemetry, topic_grants, topics
from services.common.auth import Authorizer, MethodPolicies, Policy
from services.common.certificates import RELOADER
from services.common.clock import Clock, SystemClock
from services.common.interceptors import (
    AnonymousMethods,
    LoadShedder,
    OpenCalls,
    ServerInterceptor,
)
from services.common.kafka import EventConsumer, EventProducer, Topic, ensure_topics
from services.common.periodic import Periodic
from services.common.revocations import RevocationList
from services.common.settings import ServiceSettings, SettingsError, describe, load_settings
from services.common.signed_state import StateSigning
from services.common.tls import public_server_credentials, server_credentials

log = logging.getLogger("privacam.runtime")
VERSION = "0.1.0"


class Component(Protocol):
    """Anything with a lifecycle the runtime starts before serving and stops after."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass
class GrpcApi:
    """One gRPC service: its full name and how to add its servicer to a server."""

    full_name: str
    register: Callable[[grpc.aio.Server], None]

    @classmethod
    def of(
        cls,
        descriptor: ServiceDescriptor,
        add: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
    ) -> GrpcApi:
        """From the generated descriptor and `add_<Name>Servicer_to_server` function."""
        return cls(descriptor.full_name, lambda server: add(servicer, server))


def method_policies(
    descriptor: ServiceDescriptor, policies: Mapping[str, Policy]
) -> dict[str, Policy]:
    """Full method names from short ones; a name the service lacks is a bug caught at import."""
    known = {method.name for method in descriptor.methods}
    unknown = set(policies) - known
    if unknown:
        raise ValueError(f"{descriptor.full_name} has no methods {sorted(unknown)}")
    return {f"/{descriptor.full_name}/{name}": kinds for name, kinds in policies.items()}


@dataclass
class PublicPort:
    """A server-authenticated TLS port without client certificates, serving only the calls
    by which a camera or app obtains its first identity (each rate-limited per address)."""

    port: int
    apis: list[GrpcApi]
    anonymous: AnonymousMethods


@dataclass
class ServiceParts:
    """What a service's composition root hands to the runtime."""

    apis: list[GrpcApi]
    policies: MethodPolicies
    topics: list[Topic[Any]] = field(default_factory=list)
    """Every topic the service produces or consumes; created if missing."""
    consumers: list[EventConsumer[Any]] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    """Adapters (Redis, MinIO, ...) started first and stopped last."""
    late_components: list[Component] = field(default_factory=list)
    """Started once topics exist and the producer runs, before consumers and the API
    (e.g. state replayed from Kafka); stopped right after the API."""
    public: PublicPort | None = None
    prunes_revocations: bool = False
    """The service that writes revocations also tombstones those whose certificates have
    all expired (hourly), so the list every replica holds does not grow forever."""


REVOCATION_PRUNING_INTERVAL = timedelta(hours=1)


SERVER_KEEPALIVE_TIME_MS = 60_000
MIN_CLIENT_PING_INTERVAL_MS = 20_000


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    """Options of every gRPC server a service runs: the one place its limits are set.
    A request larger than MAX_MESSAGE_BYTES is refused by gRPC itself with
    RESOURCE_EXHAUSTED before it is parsed or reaches any interceptor or handler.

    Connections: a ping every 60 s to an idle-looking client (dropped unanswered after
    20 s) finds dead peers; clients may ping every 20 s, below peers.KEEPALIVE_TIME_MS
    (30 s), so no peer channel is sent GOAWAY too_many_pings. A connection is aged out after
    max_connection_age_seconds (jittered by gRPC) so clients re-resolve and rebalance."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", SERVER_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
        (
            "grpc.max_connection_age_grace_ms",
            int(settings.max_connection_age_grace_seconds * 1000),
        ),
    ]


def undeclared_methods(apis: Sequence[GrpcApi], policies: MethodPolicies) -> list[str]:
    """RPCs served without an authorization policy: must be empty to start."""
    pool = descriptor_pool.Default()
    missing = []
    for api in apis:
        for method in pool.FindServiceByName(api.full_name).methods:
            name = f"/{api.full_name}/{method.name}"
            if name not in policies:
                missing.append(name)
    return missing


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        producer: EventProducer,
        parts: ServiceParts,
        clock: Clock,
    ) -> None:
        self.name = name
        self.settings = settings
        self.producer = producer
        self.clock = clock
        self.diagnostics = diagnostics.Diagnostics(name, producer, clock)
        self.parts = parts
        self.parts.apis.append(
            GrpcApi(
                diagnostics.DIAGNOSTICS_TOPIC.message_type.DESCRIPTOR.file.package
                + ".DiagnosticsService",
                lambda server: (
                    diagnostics_service_pb2_grpc.add_DiagnosticsServiceServicer_to_server(
                        self.diagnostics, server
                    )
                ),
            )
        )
        self.policies = {**parts.policies, **diagnostics.POLICIES}
        self.parts.topics += [diagnostics.DIAGNOSTICS_TOPIC, topics.REVOCATIONS]
        # Every service enforces revocations: replayed before serving, open calls of a
        # revoked identity cancelled as the record arrives.
        self.calls = OpenCalls()
        self.shedder = LoadShedder(settings.max_calls_in_progress)
        # The writer (device_auth, which prunes) also re-asserts revocations over forged
        # tombstones (services.common.revocations).
        self.revocations = RevocationList(settings.kafka, producer, writer=parts.prunes_revocations)
        self.revocations.add_listener(self.calls.close)
        self.parts.late_components.insert(0, self.revocations)
        # Rotated certificate files (cert-manager) are read again while serving.
        interval = timedelta(seconds=settings.tls.reload_interval_seconds)
        self.parts.components.append(
            Periodic(
                "certificate reload",
                RELOADER.check_all,
                interval,
                log=logging.getLogger("privacam.certificates"),
                first_delay=interval,
            )
        )
        if parts.prunes_revocations:
            self.parts.late_components.append(
                Periodic(
                    "revocation pruning",
                    self.revocations.prune,
                    REVOCATION_PRUNING_INTERVAL,
                    log=logging.getLogger("privacam.revocations"),
                )
            )
        self.parts.consumers.append(
            # Probes are only looked at: a dead letter costs one probe's answer. Every
            # replica reads every probe, so whichever replica GetProbe reaches can answer.
            EventConsumer(
                settings.kafka,
                diagnostics.DIAGNOSTICS_TOPIC,
                f"{name}.diagnostics",
                self.diagnostics.on_event,
                producer=producer,
                every_replica=True,
            )
        )
        missing = undeclared_methods(parts.apis, self.policies)
        if missing:
            raise RuntimeError(f"{name} serves RPCs without an authorization policy: {missing}")
        self.health = AsyncHealthServicer()
        self._api_server: grpc.aio.Server | None = None
        self._public_server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._metrics: Any = None
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        settings = self.settings
        metrics.SERVICE_INFO.labels(self.name, VERSION).set(1)
        for component in self.parts.components:
            await component.start()
        # Settings of the topics it writes are set again at start (ACL: alter_configs).
        owned = topic_grants.writes(self.name) if self.name in topic_grants.GRANTS else set()
        await ensure_topics(settings.kafka, self.parts.topics, owned)
        await self.producer.start()
        for component in self.parts.late_components:
            await component.start()
        for consumer in self.parts.consumers:
            await consumer.start()

        interceptors = [
            ServerInterceptor(
                Authorizer(self.policies, self.revocations),
                settings.tls.trust_domain,
                self.calls,
                shedder=self.shedder,
            ),
        ]
        api = grpc.aio.server(interceptors=interceptors, options=server_options(settings))
        for grpc_api in self.parts.apis:
            grpc_api.register(api)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, api)
        names = [a.full_name for a in self.parts.apis]
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], api
        )
        self.ports["grpc"] = api.add_secure_port(
            f"{settings.bind_host}:{settings.grpc_port}", server_credentials(settings.tls)
        )

        health_only = grpc.aio.server(options=server_options(settings))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, health_only)
        self.ports["health"] = health_only.add_insecure_port(
            f"{settings.bind_host}:{settings.health_port}"
        )

        if self.parts.public is not None:
            self._public_server = self._start_public(self.parts.public)
            await self._public_server.start()
        await api.start()
        await health_only.start()
        self._api_server, self._health_server = api, health_only
        self._metrics = telemetry.start_metrics_server(settings.bind_host, settings.metrics_port)
        self.ports["metrics"] = self._metrics[0].server_port
        for service_name in ["", *names]:
            await self.health.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"ports": self.ports})

    def _start_public(self, public: PublicPort) -> grpc.aio.Server:
        server = grpc.aio.server(
            interceptors=[
                ServerInterceptor(
                    Authorizer(self.policies, self.revocations),
                    self.settings.tls.trust_domain,
                    self.calls,
                    public.anonymous,
                    shedder=self.shedder,
                ),
            ],
            options=server_options(self.settings),
        )
        for grpc_api in public.apis:
            grpc_api.register(server)
        self.ports["public"] = server.add_secure_port(
            f"{self.settings.bind_host}:{public.port}", public_server_credentials(self.settings.tls)
        )
        return server

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones finish, then stop consumers and adapters."""
        await self.health.enter_graceful_shutdown()
        if self._public_server is not None:
            await self._public_server.stop(self.settings.shutdown_grace_seconds)
        if self._api_server is not None:
            await self._api_server.stop(self.settings.shutdown_grace_seconds)
        # All at once: each may need its whole timeout to leave its group (a rebalance in
        # progress, after a replica died, holds the leave), and one after another they outlast
        # a pod's termination grace period and get killed.
        await stop_together(self.parts.consumers)
        for component in reversed(self.parts.late_components):
            await component.stop()
        await self.producer.stop()
        for component in reversed(self.parts.components):
            await component.stop()
        if self._health_server is not None:
            await self._health_server.stop(0)
        if self._metrics is not None:
            self._metrics[0].shutdown()
        log.info("stopped")


async def stop_together(parts: Sequence[Component]) -> None:
    """Stop every part at the same time; one that fails is logged and the others still stop."""
    outcomes = await asyncio.gather(*(part.stop() for part in parts), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            log.warning("a part failed to stop cleanly", exc_info=outcome)


S = TypeVar("S", bound=ServiceSettings)
Build = Callable[[S, EventProducer, Clock], ServiceParts]


def build_runtime(
    name: str, settings: S, build: Build[S], clock: Clock | None = None
) -> ServiceRuntime:
    clock = clock or SystemClock()
    # Records this service writes to its compacted topics are signed with its TLS key; those
    # it replays must carry their topic's writer's signature (services.common.signed_state).
    signing = StateSigning.from_tls(settings.tls, topic_grants.state_writers())
    producer = EventProducer(settings.kafka, client_id=name, signing=signing)
    return ServiceRuntime(name, settings, producer, build(settings, producer, clock), clock)


async def _serve(name: str, settings: S, build: Build[S]) -> None:
    # Built inside the loop: Kafka clients bind to the running loop when created.
    runtime = build_runtime(name, settings, build)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await runtime.start()
    await stopping.wait()
    log.info("signal received; shutting down")
    await runtime.stop()
    telemetry.shutdown_tracing()


def main(name: str, settings_class: type[S], build: Build[S]) -> None:
    """Entry point of every service: settings, logging, tracing, serve until SIGTERM."""
    if "--help-settings" in sys.argv[1:]:
        print(describe(settings_class))
        return
    try:
        settings = load_settings(settings_class)
    except SettingsError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    telemetry.setup_logging(name, settings.log_level)
    telemetry.setup_tracing(name)
    try:
        asyncio.run(_serve(name, settings, build))
    except OSError as error:
        log.error("cannot start: %s", error)
        raise SystemExit(1) from None
