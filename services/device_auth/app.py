"""Composition root of device_auth: builds adapters, servicers and consumers for the runtime.

Two limits guard the enrollment port: RegisterAccount, SignIn and EnrollCamera are
rate-limited per source address (the shared interceptor, before the handler), and
every password check, SignIn's included, counts toward a per-account limit in the
domain (RedisPasswordAttempts), which holds however many addresses an attacker uses.
"""

from datetime import timedelta
from pathlib import Path

from cryptography import x509

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from privacam_core.identity import CA_KINDS_PREFIX, PrincipalKind, ca_kinds
from services.common import topics
from services.common.clock import Clock
from services.common.hsm import HsmAuthority, Pkcs11EcSigner, Pkcs11Token
from services.common.interceptors import AnonymousMethods
from services.common.kafka import EventProducer
from services.common.log_keys import load_log_keys
from services.common.peers import Peers
from services.common.pki import Issuer, load_authority
from services.common.ratelimit import Limit, RateLimiter
from services.common.runtime import GrpcApi, PublicPort, ServiceParts
from services.common.settings import SettingsError
from services.common.stores import RedisStore
from services.device_auth.adapters.access_log import PeerAccountReads
from services.device_auth.adapters.ephemeral import (
    KEY_PREFIX,
    RedisClaimTokens,
    RedisPasswordAttempts,
    RedisPinAttempts,
)
from services.device_auth.adapters.events import KafkaIdentityEvents
from services.device_auth.adapters.state import IdentityState
from services.device_auth.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.device_auth.api.servicer import DeviceAuthServicer
from services.device_auth.domain.certificates import CertificateIssuer
from services.device_auth.domain.exports import TenantExporter
from services.device_auth.domain.grant_expiry import GrantExpirySweeper
from services.device_auth.domain.password_attempts import PasswordPolicy
from services.device_auth.domain.passwords import PRODUCTION, SecretHasher
from services.device_auth.domain.privacy import PrivacyModes
from services.device_auth.domain.service import DeviceAuth, DeviceAuthConfig
from services.device_auth.settings import DeviceAuthSettings

# The calls by which an app or camera gets its first certificate: no client
# certificate exists yet, so they are served only on the enrollment port.
ENROLLMENT_METHODS = ("RegisterAccount", "SignIn", "EnrollCamera")


DEVICE_KINDS = frozenset({PrincipalKind.CAMERA.value, PrincipalKind.APP.value})


def issuing_authority(settings: DeviceAuthSettings) -> Issuer:
    """The issuing CA: its key in a file (development) or in an HSM (production). It must be
    a CA for cameras and apps only: every service refuses any other kind from it, so a
    broader one is a misconfiguration that stops start-up here, not a silent failure later."""
    issuer = _issuing_authority(settings)
    kinds = ca_kinds(issuer.certificate.subject)
    if kinds != DEVICE_KINDS:
        raise SettingsError(
            "PRIVACAM_DEVICE_AUTH_ISSUING_CA_CERT_FILE: the issuing CA must be for cameras and "
            f"apps only (subject OU {CA_KINDS_PREFIX}app,camera); it names "
            f"{', '.join(sorted(kinds)) or 'no kind'}"
        )
    return issuer


def _issuing_authority(settings: DeviceAuthSettings) -> Issuer:
    if settings.issuing_ca_pkcs11_module is not None and settings.issuing_ca_pkcs11_pin_file:
        token = Pkcs11Token.from_pin_file(
            str(settings.issuing_ca_pkcs11_module),
            settings.issuing_ca_pkcs11_token,
            settings.issuing_ca_pkcs11_pin_file,
        )
        certificate = x509.load_pem_x509_certificate(settings.issuing_ca_cert_file.read_bytes())
        return HsmAuthority(certificate, Pkcs11EcSigner(token, settings.issuing_ca_pkcs11_label))
    assert settings.issuing_ca_key_file is not None  # the settings validator guarantees one
    return load_authority(settings.issuing_ca_cert_file, settings.issuing_ca_key_file)


def build(settings: DeviceAuthSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    redis = RedisStore(settings.redis)
    peers = Peers(settings.peers, settings.tls)
    keys = f"{settings.kafka.namespace}{KEY_PREFIX}"
    state = IdentityState(settings.kafka, topics.IDENTITY_STATE, producer)
    issuer = CertificateIssuer(
        issuing_authority(settings),
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
        # Every key is `<namespace>device_auth:...`: environments (or test runs) sharing
        # one Redis never meet, and the service's Redis user may touch nothing else.
        claim_tokens=RedisClaimTokens(redis.client, clock, prefix=keys),
        pin_attempts=RedisPinAttempts(redis.client, clock, prefix=keys),
        password_attempts=RedisPasswordAttempts(redis.client, prefix=keys),
        events=KafkaIdentityEvents(producer, settings.tls.trust_domain),
        issuer=issuer,
        clock=clock,
        password_hasher=SecretHasher(PRODUCTION),
        config=DeviceAuthConfig(
            claim_token_ttl=timedelta(minutes=settings.claim_token_minutes),
            default_retention_days=settings.retention_days_default,
            min_retention_days=settings.retention_days_min,
            max_retention_days=settings.retention_days_max,
            password_policy=PasswordPolicy(
                max_failures=settings.password_max_failures,
                window=timedelta(minutes=settings.password_window_minutes),
            ),
        ),
    )
    api = GrpcApi.of(
        SERVICE_DESCRIPTOR,
        pb_grpc.add_DeviceAuthServiceServicer_to_server,
        DeviceAuthServicer(
            auth,
            access_log_keys(settings.access_log_keys_file),
            TenantExporter(auth, PeerAccountReads(peers, clock)),
            PrivacyModes(auth, PeerAccountReads(peers, clock), clock),
        ),
    )
    per_address = Limit(settings.enrollment_calls_per_window, settings.enrollment_window_seconds)
    return ServiceParts(
        apis=[api],
        policies=POLICIES,
        topics=[topics.IDENTITY, topics.IDENTITY_STATE, topics.REVOCATIONS, topics.ACCESS],
        components=[redis, peers],
        # The sweep reads the replayed state, so it starts after it (and stops first).
        late_components=[
            state,
            GrantExpirySweeper(auth, timedelta(seconds=settings.grant_sweep_seconds)),
        ],
        prunes_revocations=True,
        public=PublicPort(
            port=settings.enrollment_port,
            apis=[api],
            anonymous=AnonymousMethods(
                limits={
                    f"/{SERVICE_DESCRIPTOR.full_name}/{m}": per_address for m in ENROLLMENT_METHODS
                },
                limiter=RateLimiter(redis.client, f"{keys}ratelimit"),
            ),
        ),
    )


def access_log_keys(path: Path | None) -> list[pb.AccessLogKey]:
    """What every issued certificate carries for its holder to pin (none when unset)."""
    keys = load_log_keys(path) if path is not None else {}
    return [
        pb.AccessLogKey(key_id=key_id, public_key=key.public_bytes_raw())
        for key_id, key in sorted(keys.items())
    ]
