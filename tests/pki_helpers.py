"""Throwaway certificates for tests: the dev PKI plus cameras, apps and a foreign CA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.common.devpki import ensure_dev_pki
from services.common.identity import PrincipalKind, spiffe_uri
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
