"""Throwaway certificates for tests: the dev PKI plus cameras, apps and a foreign CA."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from privacam_core.identity import PrincipalKind, spiffe_uri
from services.common.devpki import ensure_dev_pki, service_id
from services.common.pki import (
    Authority,
    certificate_pem,
    create_intermediate,
    create_root,
    issue_leaf,
    load_authority,
    new_private_key,
    private_key_pem,
    write_private,
)


@dataclass(frozen=True)
class Identity:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def credentials(self) -> tuple[bytes, bytes, bytes]:
        return self.ca_file.read_bytes(), self.cert_file.read_bytes(), self.key_file.read_bytes()


class PkiFactory:
    def __init__(self, directory: Path, trust_domain: str = "privacam.local") -> None:
        self.directory = ensure_dev_pki(directory, trust_domain)
        self.trust_domain = trust_domain
        self.ca_file = directory / "ca.crt"
        self.issuing = self._ca("issuing")  # device_auth's: cameras and apps
        self.service_ca = self._ca("service-ca")
        self.operator_ca = self._ca("operator-ca")

    def _ca(self, folder: str) -> Authority:
        return load_authority(
            self.directory / folder / "ca.crt", self.directory / folder / "ca.key"
        )

    def service(self, name: str) -> Identity:
        folder = self.directory / "services" / name
        return Identity(self.ca_file, folder / "tls.crt", folder / "tls.key")

    def operator(self, name: str = "demo") -> Identity:
        folder = self.directory / "operators" / name
        return Identity(self.ca_file, folder / "tls.crt", folder / "tls.key")

    def leaf(
        self,
        label: str,
        uri: str,
        issuer: Authority | None = None,
        lifetime: timedelta = timedelta(days=1),
    ) -> Identity:
        issuer = issuer or self.issuing
        folder = self.directory / "extra" / label
        key = new_private_key()
        now = datetime.now(UTC)
        certificate = issue_leaf(issuer, key.public_key(), uri, now, lifetime)
        write_private(folder / "tls.key", private_key_pem(key))
        (folder / "tls.crt").write_bytes(certificate_pem(certificate, issuer.certificate))
        return Identity(self.ca_file, folder / "tls.crt", folder / "tls.key")

    def camera(self, tenant: str, device: str) -> Identity:
        uri = spiffe_uri(self.trust_domain, PrincipalKind.CAMERA, device, tenant)
        return self.leaf(f"camera-{tenant}-{device}", uri)

    def app(self, tenant: str, install: str) -> Identity:
        uri = spiffe_uri(self.trust_domain, PrincipalKind.APP, install, tenant)
        return self.leaf(f"app-{tenant}-{install}", uri)

    def foreign_operator(self) -> Identity:
        """An operator certificate from a CA this platform never trusted."""
        now = datetime.now(UTC)
        root = create_root("Foreign Root", now, timedelta(days=30))
        issuer = create_intermediate(
            root, "Foreign Issuing", now, timedelta(days=30), (PrincipalKind.OPERATOR,)
        )
        uri = spiffe_uri(self.trust_domain, PrincipalKind.OPERATOR, "demo")
        return self.leaf("foreign-operator", uri, issuer=issuer)

    def service_certificate(
        self, name: str, lifetime: timedelta = timedelta(days=7)
    ) -> tuple[x509.Certificate, bytes, bytes]:
        """A new key and certificate for service `name`, as the dev PKI issues them: the
        certificate, its chain's PEM and the key's PEM."""
        key = new_private_key()
        uri = spiffe_uri(self.trust_domain, PrincipalKind.SERVICE, service_id(name))
        leaf = issue_leaf(
            self.service_ca,
            key.public_key(),
            uri,
            datetime.now(UTC),
            lifetime,
            server=True,
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
        )
        return leaf, certificate_pem(leaf, self.service_ca.certificate), private_key_pem(key)


def write_secret_volume(folder: Path, files: dict[str, bytes]) -> None:
    """Files laid out as a kubelet lays out a mounted Secret (its AtomicWriter), which is how
    cert-manager's rotations reach a pod: the files live in a timestamped folder, `..data`
    links to it and each name links into `..data`; an update writes a new folder and swaps
    `..data` with one rename, so a reader sees either every old file or every new one."""
    folder.mkdir(parents=True, exist_ok=True)
    version = folder / f"..{time.time_ns()}"
    version.mkdir(mode=0o700)
    for name, content in files.items():
        (version / name).write_bytes(content)
        (version / name).chmod(0o600)
    staged = folder / "..data_tmp"
    staged.unlink(missing_ok=True)
    staged.symlink_to(version.name)
    previous = (folder / "..data").resolve() if (folder / "..data").is_symlink() else None
    os.replace(staged, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    if previous is not None:
        for old in previous.iterdir():
            old.unlink()
        previous.rmdir()
