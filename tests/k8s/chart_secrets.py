"""The Secrets a platform team creates before `helm install` (the chart's NOTES list them),
made here for the one-node cluster from the backing stack's users (stack/k8s/backing.sh)
and a PKI kept beside it.

Every Secret is made with `kubectl create secret generic --from-file`, as the NOTES show,
from files in a private temporary directory, so no secret passes through a command line.
The key material (PKI, the key manager's root key, the access log's signing key) lives
under the backing stack's run dir and is reused by every install: the backing Kafka keeps
the tenants' sealed keys and the log's heads across installs, as a real cluster's would.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privacam_core.identity import PrincipalKind, spiffe_uri
from services.common.catalog import SERVICES
from services.common.devpki import ensure_dev_pki, service_id
from services.common.pki import (
    certificate_pem,
    issue_leaf,
    load_authority,
    new_private_key,
    private_key_pem,
    write_private,
)

TRUST_DOMAIN = "privacam.local"
TEST_IDENTITY = f"spiffe://{TRUST_DOMAIN}/test/helm"
"""`helm test`'s identity: a kind no service admits, so it reaches health and nothing else."""
SIGNING_KEY_ID = "log-1"  # the chart's default accessLog.signingKeyId
KAFKA_CA_SECRET = "privacam-kafka-ca"
LEAF_LIFETIME = timedelta(days=2)
REDIS_SERVICES = ("device_auth", "clip_ingest", "relay_broker", "retention")
MINIO_SERVICES = ("clip_ingest", "retention", "access_log")


@dataclass(frozen=True)
class Material:
    """Where the install's key material lives (made once, then reused)."""

    directory: Path

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def ca_file(self) -> Path:
        """The root every service, camera and app trusts."""
        return self.pki / "ca.crt"

    def root_key(self) -> Path:
        path = self.directory / "root.key"
        if not path.exists():
            write_private(path, secrets.token_hex(32).encode())
        return path

    def signing_key(self) -> Path:
        path = self.directory / "access-log-signing.key"
        if not path.exists():
            write_private(path, Ed25519PrivateKey.generate().private_bytes_raw())
        return path

    def public_keys(self) -> str:
        key = Ed25519PrivateKey.from_private_bytes(self.signing_key().read_bytes())
        pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return json.dumps({SIGNING_KEY_ID: pem.decode()})


def _leaf(material: Material, uri: str, dns_names: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A certificate of the service CA (chain included) and its key, as PEM."""
    ca = load_authority(material.pki / "service-ca/ca.crt", material.pki / "service-ca/ca.key")
    key = new_private_key()
    leaf = issue_leaf(
        ca,
        key.public_key(),
        uri,
        datetime.now(UTC),
        LEAF_LIFETIME,
        server=True,
        dns_names=dns_names,
    )
    return certificate_pem(leaf, ca.certificate), private_key_pem(key)


def service_dns_names(fullname: str, namespace: str) -> tuple[str, ...]:
    """The names peers and clients call a service by (as the chart's cert-manager
    Certificate lists them): its Service and the headless `-peers` Service."""
    return tuple(
        name
        for service in (fullname, f"{fullname}-peers")
        for name in (
            service,
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
        )
    )


def secret_files(
    release: str, namespace: str, stack: dict[str, str], material: Material
) -> dict[str, dict[str, bytes]]:
    """Secret name -> key -> value, for a release whose fullname is `release`."""
    ensure_dev_pki(material.pki, TRUST_DOMAIN)
    ca = material.ca_file.read_bytes()
    out: dict[str, dict[str, bytes]] = {}
    for service in SERVICES:
        dashed = service_id(service)
        fullname = f"{release}-{dashed}"
        uri = spiffe_uri(TRUST_DOMAIN, PrincipalKind.SERVICE, dashed)
        cert, key = _leaf(material, uri, service_dns_names(fullname, namespace))
        out[f"{fullname}-tls"] = {"ca.crt": ca, "tls.crt": cert, "tls.key": key}
        prefix = f"PRIVACAM_STACK_KAFKA_{service.upper()}"
        out[f"{release}-kafka-{dashed}"] = {
            "username": stack[f"{prefix}_USERNAME"].encode(),
            "password": stack[f"{prefix}_PASSWORD"].encode(),
        }
    cert, key = _leaf(material, TEST_IDENTITY, ())
    out[f"{release}-test-tls"] = {"ca.crt": ca, "tls.crt": cert, "tls.key": key}
    out[KAFKA_CA_SECRET] = {"ca.crt": Path(stack["PRIVACAM_KAFKA_CA_FILE"]).read_bytes()}
    for service in REDIS_SERVICES:
        url = stack[f"PRIVACAM_{service.upper()}_REDIS_URL"]
        out[f"{release}-redis-{service_id(service)}"] = {"url": url.encode()}
    out[f"{release}-minio"] = {
        f"{service_id(service)}-{part}-key": stack[
            f"PRIVACAM_STACK_MINIO_{service.upper()}_{part.upper()}_KEY"
        ].encode()
        for service in MINIO_SERVICES
        for part in ("access", "secret")
    }
    out[f"{release}-turn"] = {"shared-secret": stack["PRIVACAM_TURN_SHARED_SECRET"].encode()}
    out[f"{release}-root-key"] = {"root.key": material.root_key().read_bytes()}
    issuing = material.pki / "issuing"
    out[f"{release}-issuing-ca"] = {
        "tls.crt": (issuing / "ca.crt").read_bytes(),
        "tls.key": (issuing / "ca.key").read_bytes(),
    }
    out[f"{release}-access-log-signing-key"] = {"signing.key": material.signing_key().read_bytes()}
    out[f"{release}-access-log-keys"] = {"keys.json": material.public_keys().encode()}
    return out


def kubectl_create_args(name: str, namespace: str, files: dict[str, Path]) -> list[str]:
    """`kubectl create secret generic` with one --from-file per key, as the NOTES show."""
    return [
        *("-n", namespace, "create", "secret", "generic", name),
        *(f"--from-file={key}={path}" for key, path in files.items()),
    ]


def create_secrets(
    kubectl: list[str], release: str, namespace: str, stack: dict[str, str], material: Material
) -> list[str]:
    """Creates every Secret of the release in `namespace`; returns their names."""
    made = []
    with tempfile.TemporaryDirectory(prefix="privacam-secrets-") as scratch:
        for name, values in secret_files(release, namespace, stack, material).items():
            files = {}
            for key, value in values.items():
                path = Path(scratch) / f"{name}.{key}"
                write_private(path, value)
                files[key] = path
            out = subprocess.run(
                [*kubectl, *kubectl_create_args(name, namespace, files)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.returncode != 0:
                raise AssertionError(f"kubectl create secret {name}: {out.stderr.strip()}")
            made.append(name)
    return made
