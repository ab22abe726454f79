"""Real servers for tests and benchmarks: the local stack, and services as real processes.

The stack (Kafka, MinIO, Redis, coturn, Prometheus) is started by the project's
own stack/up.sh, or reused if it already runs. Services run from their real
entry points on free ports, with a throwaway PKI and a Kafka namespace of
their own, so a run never sees the events of `make up` or of another run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from minio import Minio
from pydantic import SecretStr

from privacam.clips.v1.events_pb2 import ClipEvent
from privacam_sdk import Profile
from privacam_sdk.enrollment import Enrollment
from services.common import topic_grants
from services.common.healthcheck import serving
from services.common.kafka import client_options
from services.common.settings import KafkaSettings, MinioSettings, read_env_file
from services.common.signed_state import StateSigner, StateSigning, StateVerifier
from services.common.stores import ObjectStore
from services.relay_broker.domain import turn
from services.relay_broker.domain.model import Side
from stack import kafka_users
from tests.pki_helpers import Identity, PkiFactory
from tests.turn_client import TurnClient

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("PRIVACAM_RUN_DIR", ROOT / ".run"))
SERVICES = ("device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log")


@contextmanager
def local_stack() -> Iterator[dict[str, str]]:
    """The stack's settings; stops on exit only the servers this call started."""
    started_file = RUN_DIR / f"started-by-{os.getpid()}-{secrets.token_hex(2)}"
    environment = {**os.environ, "STACK_STARTED_FILE": str(started_file)}
    subprocess.run(["bash", str(ROOT / "stack" / "up.sh")], env=environment, check=True)
    try:
        yield read_env_file(RUN_DIR / "stack.env")
    finally:
        started = started_file.read_text().split() if started_file.exists() else []
        if started:
            subprocess.run(["bash", str(ROOT / "stack" / "down.sh"), *started], check=False)
        started_file.unlink(missing_ok=True)


def redis_setup_url() -> str:
    """The stack's Redis as its setup user (every right), for a test that must see all of
    Redis, e.g. to prove nothing of a tenant is left anywhere. Not in stack.env: services
    and ordinary tests use their own user's URL, PRIVACAM_<SERVICE>_REDIS_URL."""
    password = (RUN_DIR / "secrets" / "redis_setup_password").read_text().strip()
    return f"redis://setup:{password}@127.0.0.1:6379/0"


# --- Kafka: every client logs in as someone -------------------------------------------

ADMIN = "admin"
"""The Kafka super user: the broker's own certificate on its internal listener. Tests use it
to provision a namespace, read raw records and delete topics; services never."""


def kafka_admin_login(stack: dict[str, str]) -> kafka_users.AdminLogin:
    return kafka_users.AdminLogin.parse(stack["PRIVACAM_STACK_KAFKA_ADMIN"])


@functools.cache
def _admin_client(login: kafka_users.AdminLogin) -> Any:
    return kafka_users.admin_client(login)


def kafka_admin(stack: dict[str, str]) -> Any:
    """confluent-kafka's admin client as the super user (one per process), for ACLs."""
    return _admin_client(kafka_admin_login(stack))


def kafka_settings(stack: dict[str, str], principal: str, namespace: str = "") -> KafkaSettings:
    """Kafka settings of one principal: a service's own SCRAM user (its name), `backup`,
    or ADMIN."""
    if principal == ADMIN:
        login = kafka_admin_login(stack)
        return KafkaSettings(
            bootstrap_servers=login.bootstrap,
            security_protocol="SSL",
            ca_file=login.ca_file,
            cert_file=login.cert_file,
            key_file=login.key_file,
            namespace=namespace,
        )
    return KafkaSettings(
        bootstrap_servers=stack["PRIVACAM_KAFKA_BOOTSTRAP_SERVERS"],
        ca_file=stack["PRIVACAM_KAFKA_CA_FILE"],
        username=stack[f"PRIVACAM_STACK_KAFKA_{principal.upper()}_USERNAME"],
        password=SecretStr(stack[f"PRIVACAM_STACK_KAFKA_{principal.upper()}_PASSWORD"]),
        namespace=namespace,
    )


def kafka_options(stack: dict[str, str], principal: str = ADMIN) -> dict[str, Any]:
    """aiokafka client options (producer, consumer, admin) of one principal."""
    return client_options(kafka_settings(stack, principal))


def state_signing(pki: PkiFactory, service: str) -> StateSigning:
    """What a service signs its compacted-topic records with, and verifies them by
    (services.common.signed_state), from the test PKI: a test that writes state as a
    service must sign as it, or every reader skips the record."""
    identity = pki.service(service)
    return StateSigning(
        StateSigner.from_files(identity.cert_file, identity.key_file),
        StateVerifier.from_files(pki.ca_file, pki.trust_domain, topic_grants.state_writers()),
    )


def kafka_user_env(stack: dict[str, str], service: str) -> dict[str, str]:
    """A service process's Kafka login: its own SCRAM user."""
    prefix = f"PRIVACAM_STACK_KAFKA_{service.upper()}"
    return {
        "PRIVACAM_KAFKA_USERNAME": stack[f"{prefix}_USERNAME"],
        "PRIVACAM_KAFKA_PASSWORD": stack[f"{prefix}_PASSWORD"],
    }


def stack_minio_settings(stack: dict[str, str], service: str | None = None) -> MinioSettings:
    """The stack's MinIO as `service`'s own user (stack/minio_users.py), or as root (every
    right) for a test that must see or arrange every bucket. Root's keys are not in
    stack.env: services and ordinary tests use their own user's."""
    if service is None:
        secrets = RUN_DIR / "secrets"
        access = (secrets / "minio_root_user").read_text().strip()
        secret = (secrets / "minio_root_password").read_text().strip()
    else:
        access, secret = minio_user_keys(stack, service)
    return MinioSettings(
        endpoint=stack["PRIVACAM_MINIO_ENDPOINT"],
        access_key=SecretStr(access),
        secret_key=SecretStr(secret),
        secure=stack.get("PRIVACAM_MINIO_SECURE", "true").lower() == "true",
    )


def minio_user_keys(stack: dict[str, str], service: str) -> tuple[str, str]:
    prefix = f"PRIVACAM_STACK_MINIO_{service.upper()}"
    return stack[f"{prefix}_ACCESS_KEY"], stack[f"{prefix}_SECRET_KEY"]


def minio_user_env(stack: dict[str, str], service: str) -> dict[str, str]:
    """A service process's MinIO keys: its own user's, when it has one."""
    if f"PRIVACAM_STACK_MINIO_{service.upper()}_ACCESS_KEY" not in stack:
        return {}
    access, secret = minio_user_keys(stack, service)
    return {"PRIVACAM_MINIO_ACCESS_KEY": access, "PRIVACAM_MINIO_SECRET_KEY": secret}


def stack_minio(stack: dict[str, str], bucket: str | None = None) -> Minio:
    """A client of the stack's MinIO (the bucket created first when one is named)."""
    client = ObjectStore(stack_minio_settings(stack), ()).client
    if bucket is not None and not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    return client


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def mtls_channel(target: str, identity: Identity | Profile) -> grpc.aio.Channel:
    """A bare mTLS channel (no retries), to see each answer as it is."""
    if isinstance(identity, Profile):
        ca, key, cert = (
            identity.ca_file.read_bytes(),
            identity.key_file.read_bytes(),
            identity.cert_file.read_bytes(),
        )
    else:
        ca, cert, key = identity.credentials()
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert))


def process_memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc/<pid>/status (VmRSS now, VmHWM its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")


def _listen_ports() -> range:
    """Ports to hand to test servers: outside the kernel's ephemeral range, where any outgoing
    connection (a Kafka, Redis or MinIO client) could take a port between our pick and the
    server's bind ("Address already in use", seen in CI)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low > 21_000:
        return range(20_000, low)  # above every fixed port of the stack (all below 10,000)
    if high < 64_000:
        return range(high + 1, 65_536)
    return range(0)  # no room outside it: let the kernel choose


_LISTEN_PORTS = _listen_ports()
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now on 127.0.0.1, never handed out before by this process."""
    for _ in range(200):
        if not _LISTEN_PORTS:
            break
        port = random.choice(_LISTEN_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    grpc_port: int
    health_port: int
    metrics_port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    public_port: int | None = None
    """device_auth's enrollment port (server-authenticated TLS only)."""
    _told_to_stop: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        self._told_to_stop = False
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def wait_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not serving(f"127.0.0.1:{self.health_port}"):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_file.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not serving:\n{self.log_file.read_text()[-3000:]}")
            time.sleep(0.2)

    def terminate(self) -> None:
        """SIGTERM, once: the service drains and stops (stop() waits for it)."""
        if self.process is not None and self.process.poll() is None and not self._told_to_stop:
            self.process.send_signal(signal.SIGTERM)
            self._told_to_stop = True

    def stop(self, timeout: float = 20) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def running(*services: ServiceProcess, timeout: float = 120) -> Iterator[None]:
    """The services started (all at once, then each waited for until SERVING), and
    stopped on exit whatever happened."""
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_serving(timeout)
        yield
    finally:
        # All told at once, so they drain side by side rather than one after another.
        for service in services:
            service.terminate()
        for service in services:
            service.stop()


@dataclass
class Platform:
    services: dict[str, ServiceProcess]
    pki: PkiFactory
    namespace: str
    stack_env: dict[str, str]

    def endpoints(self) -> dict[str, str]:
        endpoints = {name: service.endpoint for name, service in self.services.items()}
        endpoints["device_auth_enrollment"] = (
            f"127.0.0.1:{self.services['device_auth'].public_port}"
        )
        return endpoints

    def enrollment(self, home: Path) -> Enrollment:
        """The SDK's enrollment client for this platform (profiles are written under home)."""
        return Enrollment(
            self.pki.ca_file.read_bytes(),
            self.endpoints()["device_auth_enrollment"],
            self.endpoints(),
            home=home,
        )

    def profile(self, name: str, identity: Identity, home: Path) -> Profile:
        return Profile.import_files(
            name,
            identity.ca_file,
            identity.cert_file,
            identity.key_file,
            self.endpoints(),
            self.pki.trust_domain,
            home,
        )


def root_key_file(pki: PkiFactory) -> Path:
    """The key manager's root key for this test run (a secret file, as in production)."""
    path = pki.directory / "root-key.hex"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path


def retention_clock_file(pki: PkiFactory) -> Path:
    """Seconds the retention service's development clock runs ahead of the wall clock."""
    return pki.directory / "retention-clock-offset"


def access_log_key(pki: PkiFactory) -> Ed25519PrivateKey:
    """The signing key of the test run's access log (the log service signs tree heads with
    it; the key manager trusts its public half)."""
    path = pki.directory / "access-log-signing.key"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.write_bytes(key.private_bytes_raw())
        path.chmod(0o600)
        public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        (pki.directory / "access-log-keys.json").write_text(
            json.dumps({"test-log-1": public.decode()})
        )
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


FORGET_WITHIN_SECONDS = 30
"""How soon the test platform's compacted topics forget a deleted record (a day in
production): short enough for a test to watch the brokers' cleaner do it."""


def service_env(
    name: str, pki: PkiFactory, stack: dict[str, str], namespace: str, ports: tuple[int, int, int]
) -> dict[str, str]:
    access_log_key(pki)  # makes the key files on first use
    identity = pki.service(name)
    prefix = f"PRIVACAM_{name.upper()}_"
    return {
        "PRIVACAM_KEY_MANAGER_ROOT_KEY_FILE": str(root_key_file(pki)),
        "PRIVACAM_KEY_MANAGER_ACCESS_LOG_KEYS_FILE": str(pki.directory / "access-log-keys.json"),
        "PRIVACAM_DEVICE_AUTH_ACCESS_LOG_KEYS_FILE": str(pki.directory / "access-log-keys.json"),
        "PRIVACAM_ACCESS_LOG_SIGNING_KEY_FILE": str(pki.directory / "access-log-signing.key"),
        "PRIVACAM_ACCESS_LOG_SIGNING_KEY_ID": "test-log-1",
        "PRIVACAM_ACCESS_LOG_SEGMENT_INTERVAL_SECONDS": "1",
        "PRIVACAM_DEVICE_AUTH_ISSUING_CA_CERT_FILE": str(pki.directory / "issuing" / "ca.crt"),
        "PRIVACAM_DEVICE_AUTH_ISSUING_CA_KEY_FILE": str(pki.directory / "issuing" / "ca.key"),
        # Every test registers and pairs from 127.0.0.1: the per-address limit that guards
        # the enrollment port in production (20/min) would throttle the suite itself.
        "PRIVACAM_DEVICE_AUTH_ENROLLMENT_CALLS_PER_WINDOW": "600",
        "PRIVACAM_CLIP_INGEST_UPLOAD_IDLE_SECONDS": "5",
        "PRIVACAM_KAFKA_FORGET_WITHIN_SECONDS": str(FORGET_WITHIN_SECONDS),
        "PRIVACAM_KEY_MANAGER_STATE_SEGMENT_MS": "2000",
        "PRIVACAM_KEY_MANAGER_STATE_MAX_COMPACTION_LAG_MS": "2000",
        # Live view: cameras that drop are offline within ~1.5 s, abandoned sessions end in 5 s.
        "PRIVACAM_RELAY_BROKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "PRIVACAM_RELAY_BROKER_IDLE_TIMEOUT_SECONDS": "5",
        # Retention on an injected clock (tests let days pass by writing this file).
        "PRIVACAM_RETENTION_DEV_CLOCK_FILE": str(retention_clock_file(pki)),
        "PRIVACAM_RETENTION_SWEEP_INTERVAL_SECONDS": "0.5",
        "PRIVACAM_RETENTION_KEY_PERIOD_GRACE_SECONDS": "0",
        **os.environ,
        **stack,
        **minio_user_env(stack, name),
        **kafka_user_env(stack, name),
        "PRIVACAM_TLS_CA_FILE": str(identity.ca_file),
        "PRIVACAM_TLS_CERT_FILE": str(identity.cert_file),
        "PRIVACAM_TLS_KEY_FILE": str(identity.key_file),
        "PRIVACAM_KAFKA_NAMESPACE": namespace,
        "PRIVACAM_KAFKA_TOPIC_PARTITIONS": "1",
        f"{prefix}GRPC_PORT": str(ports[0]),
        f"{prefix}HEALTH_PORT": str(ports[1]),
        f"{prefix}METRICS_PORT": str(ports[2]),
        f"{prefix}SHUTDOWN_GRACE_SECONDS": "3",
    }


def make_service(
    name: str, pki: PkiFactory, stack: dict[str, str], namespace: str, log_dir: Path
) -> ServiceProcess:
    ports = (free_port(), free_port(), free_port())
    env = service_env(name, pki, stack, namespace, ports)
    public_port = None
    if name == "device_auth":
        public_port = free_port()
        env["PRIVACAM_DEVICE_AUTH_ENROLLMENT_PORT"] = str(public_port)
    return ServiceProcess(
        name,
        *ports,
        log_file=log_dir / f"{name}.log",
        env=env,
        public_port=public_port,
    )


def wire_peers(services: dict[str, ServiceProcess]) -> None:
    """Tell every service where the others listen (services.common.peers, PRIVACAM_PEER_*)."""
    endpoints = {f"PRIVACAM_PEER_{name.upper()}": s.endpoint for name, s in services.items()}
    for service in services.values():
        service.env.update(endpoints)


def make_services(
    names: Iterable[str],
    pki: PkiFactory,
    stack: dict[str, str],
    namespace: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> dict[str, ServiceProcess]:
    """These services of one namespace (not started), each told where the others listen,
    with `env` on top of their settings."""
    services = {name: make_service(name, pki, stack, namespace, log_dir) for name in names}
    wire_peers(services)
    for service in services.values():
        service.env.update(env or {})
    return services


def peer_env(service: ServiceProcess) -> dict[str, str]:
    """Where `service`'s peers listen, for another process that should reach the same ones."""
    return {k: v for k, v in service.env.items() if k.startswith("PRIVACAM_PEER_")}


def new_namespace(stack: dict[str, str], prefix: str = "test") -> str:
    """A fresh Kafka namespace with the ACLs of stack/kafka_users.py, as an operator would
    provision an environment: the services of this namespace may use its topics only."""
    namespace = f"{prefix}-{secrets.token_hex(4)}."
    kafka_users.grant(kafka_admin(stack), namespace)
    return namespace


async def delete_namespace_topics(stack: dict[str, str], namespace: str) -> None:
    """Delete the namespace's topics and ACLs (as the administrator)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_options(stack))
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(namespace)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()
    await asyncio.to_thread(kafka_users.revoke, kafka_admin(stack), namespace)


def cleanup_namespace(stack: dict[str, str], namespace: str) -> None:
    asyncio.run(delete_namespace_topics(stack, namespace))


# --- reading the platform's Kafka topics, as a test's own client ------------------------


async def partitions_of(platform: Platform, names: list[str]) -> list[TopicPartition]:
    producer = AIOKafkaProducer(**kafka_options(platform.stack_env))
    await producer.start()
    try:
        return [TopicPartition(n, p) for n in names for p in await producer.partitions_for(n)]
    finally:
        await producer.stop()


async def read_all(
    platform: Platform, partitions: list[TopicPartition]
) -> list[tuple[TopicPartition, bytes, bytes | None]]:
    """Every record of these partitions so far, in partition order."""
    consumer = AIOKafkaConsumer(**kafka_options(platform.stack_env), enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found += [(tp, r.key or b"", r.value) for r in records if r.offset < ends[tp]]
    finally:
        await consumer.stop()
    return found


async def clip_events_of(platform: Platform, tenant: str) -> list[ClipEvent]:
    """Every event of the tenant on the clips topic so far."""
    topic = platform.namespace + "privacam.clips.v1"
    return [
        ClipEvent.FromString(value or b"")
        for _, key, value in await read_all(platform, await partitions_of(platform, [topic]))
        if key == tenant.encode()
    ]


# --- a coturn of a test's own -----------------------------------------------------------


def _port_free(port: int) -> bool:
    """Free for UDP and TCP on 127.0.0.1 and ::1 (coturn listens on both)."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free for UDP and TCP on 127.0.0.1 and ::1."""
    for _ in range(100):
        first = free_port()
        if first + count < 65_536 and all(_port_free(p) for p in range(first, first + count)):
            _HANDED_OUT.update(range(first, first + count))
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def render_turnserver_conf(
    text: str, overrides: dict[str, str | None], added: list[str], source: str
) -> str:
    """A turnserver.conf with each overridden option's value replaced, or its line removed
    when the value is None (each must occur exactly once, so a renamed option fails here
    rather than silently keeping the shared coturn's port), and the added lines at the end."""
    lines = text.splitlines()
    for option, value in overrides.items():
        found = [i for i, line in enumerate(lines) if line.split("=", 1)[0] == option]
        assert len(found) == 1, f"{option} appears {len(found)} times in {source}"
        lines[found[0]] = f"{option}={value}" if value is not None else f"# {option}: removed"
    return "\n".join([*lines, "", "# --- Added by a test (tests/harness.py)", *added, ""])


@dataclass
class Coturn:
    """A turnserver of a test's own on loopback ports (never the stack's 3478), started
    from a config text: the chart's production file or the stack's development template,
    with its ports, TLS files, secret and files made the test's own (own_coturn)."""

    directory: Path
    port: int
    secret: bytes
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.directory / "coturn.log"

    def uris(self) -> str:
        """PRIVACAM_TURN_URIS for services that hand out this coturn."""
        return f"turn:127.0.0.1:{self.port}?transport=udp,turn:127.0.0.1:{self.port}?transport=tcp"

    def service_env(self) -> dict[str, str]:
        return {
            "PRIVACAM_TURN_URIS": self.uris(),
            "PRIVACAM_TURN_SHARED_SECRET": self.secret.decode(),
        }

    def client(self, host: str = "127.0.0.1") -> TurnClient:
        grant = turn.issue(self.secret, (), secrets.token_hex(8), Side.APP, datetime.now(UTC), 600)
        return TurnClient((host, self.port), grant.username, grant.password)

    def start(self, timeout: float = 20) -> None:
        """Start it and wait until it answers a STUN binding."""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "turnserver",
                    "-c",
                    str(self.directory / "turnserver.conf"),
                    f"--static-auth-secret={self.secret.decode()}",  # production's: a Secret
                    f"--userdb={self.directory / 'turndb'}",  # unused with use-auth-secret
                    f"--pidfile={self.directory / 'turnserver.pid'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited:\n{self.log_file.read_text()[-3000:]}")
            try:
                with self.client() as probe:
                    probe.binding()
                return
            except (TimeoutError, ConnectionError):
                assert time.monotonic() < deadline, self.log_file.read_text()[-3000:]

    def kill(self) -> None:
        """SIGKILL, as a crash: no allocation is released."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def own_coturn(
    directory: Path,
    config: Path,
    *,
    overrides: dict[str, str | None] | None = None,
    added: tuple[str, ...] = (),
    relay_ports: int = 16,
) -> Coturn:
    """A Coturn (not started) from `config` on ports of its own: listening, TLS and relay
    ports, a self-signed TLS certificate and a random secret; `overrides` and `added` change
    the rest (render_turnserver_conf)."""
    # turnserver and openssl, if missing (nothing else of the stack is needed).
    subprocess.run(["bash", str(ROOT / "stack" / "install.sh"), "coturn"], check=True)
    key, certificate = directory / "tls.key", directory / "tls.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-subj", "/CN=turn.test"),
            *("-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
    )
    port, tls_port = free_ports(2), free_ports(2)  # coturn may also open port + 1
    relay = free_ports(relay_ports)
    text = render_turnserver_conf(
        # The stack's template leaves its address to stack/up.sh; tests' peers are on loopback.
        config.read_text().replace("@HOST@", "127.0.0.1"),
        {
            "listening-port": str(port),
            "tls-listening-port": str(tls_port),
            "min-port": str(relay),
            "max-port": str(relay + relay_ports - 1),
            "cert": str(certificate),
            "pkey": str(key),
            **(overrides or {}),
        },
        list(added),
        config.name,
    )
    left = [line for line in text.splitlines() if "@" in line and not line.startswith("#")]
    assert not left, f"placeholders of {config.name} left: {left}"
    (directory / "turnserver.conf").write_text(text)
    return Coturn(directory, port, secrets.token_urlsafe(32).encode())
