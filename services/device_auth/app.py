"""Composition root of device_auth: builds adapters, servicers and consumers for the runtime."""

from datetime import timedelta

from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.interceptors import AnonymousMethods
from services.common.kafka import EventProducer
from services.common.pki import load_authority
from services.common.ratelimit import Limit, RateLimiter
from services.common.runtime import GrpcApi, PublicPort, ServiceParts
from services.common.stores import RedisStore
from services.device_auth.adapters.ephemeral import RedisClaimTokens, RedisPinAttempts
from services.device_auth.adapters.events import KafkaIdentityEvents
from services.device_auth.adapters.state import IdentityState
from services.device_auth.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.device_auth.api.servicer import DeviceAuthServicer
from services.device_auth.domain.certificates import CertificateIssuer
from services.device_auth.domain.passwords import PRODUCTION, SecretHasher
from services.device_auth.domain.service import DeviceAuth, DeviceAuthConfig
from services.device_auth.settings import DeviceAuthSettings

# The calls by which an app or camera gets its first certificate: no client
# certificate exists yet, so they are served only on the enrollment port.
ENROLLMENT_METHODS = ("RegisterAccount", "SignIn", "EnrollCamera")


def build(settings: DeviceAuthSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    redis = RedisStore(settings.redis)
    state = IdentityState(settings.kafka, topics.IDENTITY_STATE, producer)
    issuer = CertificateIssuer(
        load_authority(settings.issuing_ca_cert_file, settings.issuing_ca_key_file),
        settings.tls.trust_domain,
        clock,
        camera_lifetime=timedelta(days=settings.camera_certificate_days),
        app_lifetime=timedelta(days=settings.app_certificate_days),
    )
    auth = DeviceAuth(
        accounts=state.accounts,
        installs=state.installs,
        cameras=state.cameras,
        grants=state.grants,
        claim_tokens=RedisClaimTokens(redis.client, clock),
        pin_attempts=RedisPinAttempts(redis.client, clock),
        events=KafkaIdentityEvents(producer, settings.tls.trust_domain),
        issuer=issuer,
        clock=clock,
        password_hasher=SecretHasher(PRODUCTION),
        config=DeviceAuthConfig(
            claim_token_ttl=timedelta(minutes=settings.claim_token_minutes),
            default_retention_days=settings.retention_days_default,
            min_retention_days=settings.retention_days_min,
            max_retention_days=settings.retention_days_max,
        ),
    )
    api = GrpcApi.of(
        SERVICE_DESCRIPTOR,
        pb_grpc.add_DeviceAuthServiceServicer_to_server,
        DeviceAuthServicer(auth),
    )
    per_address = Limit(settings.enrollment_calls_per_minute, 60)
    return ServiceParts(
        apis=[api],
        policies=POLICIES,
        topics=[topics.IDENTITY, topics.IDENTITY_STATE, topics.REVOCATIONS],
        components=[redis],
        late_components=[state],
        public=PublicPort(
            port=settings.enrollment_port,
            apis=[api],
            anonymous=AnonymousMethods(
                limits={
                    f"/{SERVICE_DESCRIPTOR.full_name}/{m}": per_address for m in ENROLLMENT_METHODS
                },
                limiter=RateLimiter(
                    redis.client, f"{settings.kafka.namespace}privacam:device_auth:ratelimit"
                ),
            ),
        ),
    )
