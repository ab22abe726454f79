"""A local profile: one identity (key and certificate) and where the platform's services are.

Profiles live in `$PRIVACAM_HOME/profiles/<name>/` (default ~/.privacam):
`ca.crt`, `tls.crt`, `tls.key` (mode 0600, never leaves the device),
`profile.json` with the service endpoints and trust domain, and `log-keys.json`, the
access log's signing keys pinned at enrollment (key id to PEM Ed25519 public key).
A camera's profile also holds `owner-keys.json`, the owner app keys pinned at pairing
(install id to PEM public key; only these sign privacy statements it applies), and
`privacy-state.json`, the privacy statement it applied last.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

SERVICES = ("device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log")
DEFAULT_ENDPOINTS = {
    "device_auth": "127.0.0.1:7001",
    "key_manager": "127.0.0.1:7002",
    "clip_ingest": "127.0.0.1:7003",
    "relay_broker": "127.0.0.1:7004",
    "retention": "127.0.0.1:7005",
    "access_log": "127.0.0.1:7006",
    # device_auth's server-TLS port for registering, signing in and pairing cameras.
    "device_auth_enrollment": "127.0.0.1:7301",
}


def home() -> Path:
    return Path(os.environ.get("PRIVACAM_HOME", Path.home() / ".privacam"))


@dataclass(frozen=True)
class Profile:
    name: str
    directory: Path
    endpoints: dict[str, str]
    trust_domain: str

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "tls.key"

    @property
    def log_keys_file(self) -> Path:
        return self.directory / "log-keys.json"

    def log_keys(self) -> dict[str, Ed25519PublicKey]:
        """The access log keys this profile trusts: pinned at enrollment (empty when the
        profile was made without them, and then no log receipt verifies)."""
        if not self.log_keys_file.exists():
            return {}
        keys: dict[str, Ed25519PublicKey] = {}
        for key_id, pem in json.loads(self.log_keys_file.read_text()).items():
            key = load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{self.log_keys_file}: key {key_id!r} is not an Ed25519 key")
            keys[key_id] = key
        return keys

    def pin_log_keys(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        """Replace the trusted log keys (enrollment, or a verified rotation statement)."""
        document = {
            key_id: key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
            for key_id, key in sorted(keys.items())
        }
        temporary = self.log_keys_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        temporary.replace(self.log_keys_file)

    def store_certificate(self, chain_pem: bytes) -> None:
        """Replace the certificate (a renewal: same key), whole or not at all: written
        beside and renamed into place, so a client reading the profile never sees half of
        it (PrivacamClient picks it up for its next channels)."""
        temporary = self.cert_file.with_suffix(".tmp")
        temporary.write_bytes(chain_pem)
        temporary.replace(self.cert_file)

    @property
    def owner_keys_file(self) -> Path:
        return self.directory / "owner-keys.json"

    @property
    def privacy_state_file(self) -> Path:
        return self.directory / "privacy-state.json"

    def owner_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """A camera's owner app keys pinned at pairing, by install id (empty if none)."""
        if not self.owner_keys_file.exists():
            return {}
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for install_id, pem in json.loads(self.owner_keys_file.read_text()).items():
            key = load_pem_public_key(pem.encode())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError(f"{self.owner_keys_file}: key {install_id!r} is not a P-256 key")
            keys[install_id] = key
        return keys

    def pin_owner_keys(self, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        """Replace the pinned owner app keys (pairing only)."""
        document = {
            install_id: key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
            for install_id, key in sorted(keys.items())
        }
        temporary = self.owner_keys_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        temporary.replace(self.owner_keys_file)

    def endpoint(self, service: str) -> str:
        try:
            return self.endpoints[service]
        except KeyError:
            raise ValueError(
                f"profile {self.name!r} has no endpoint for {service!r}; "
                f"known services: {', '.join(sorted(self.endpoints))}"
            ) from None

    @classmethod
    def load(cls, name: str, base: Path | None = None) -> Profile:
        directory = (base or home()) / "profiles" / name
        config_file = directory / "profile.json"
        if not config_file.exists():
            raise FileNotFoundError(
                f"no profile {name!r} in {directory.parent}; create one with "
                f"`privacam profile import` (or `make up`, which creates the demo profiles)"
            )
        config = json.loads(config_file.read_text())
        return cls(name, directory, dict(config["endpoints"]), config["trust_domain"])

    @classmethod
    def create(
        cls,
        name: str,
        ca_pem: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        endpoints: dict[str, str] | None = None,
        trust_domain: str = "privacam.local",
        base: Path | None = None,
    ) -> Profile:
        directory = (base or home()) / "profiles" / name
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        (directory / "ca.crt").write_bytes(ca_pem)
        (directory / "tls.crt").write_bytes(cert_pem)
        key_path = directory / "tls.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        chosen = dict(endpoints or DEFAULT_ENDPOINTS)
        config = {"endpoints": chosen, "trust_domain": trust_domain}
        (directory / "profile.json").write_text(json.dumps(config, indent=2) + "\n")
        return cls(name, directory, chosen, trust_domain)

    @classmethod
    def import_files(
        cls,
        name: str,
        ca: Path,
        cert: Path,
        key: Path,
        endpoints: dict[str, str] | None = None,
        trust_domain: str = "privacam.local",
        base: Path | None = None,
    ) -> Profile:
        return cls.create(
            name,
            ca.read_bytes(),
            cert.read_bytes(),
            key.read_bytes(),
            endpoints,
            trust_domain,
            base,
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory)
