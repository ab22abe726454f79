"""Development PKI: a root CA, an issuing CA, and a certificate per service and operator.

Run by `make up` and the integration tests on first start. Production keeps the
root offline and the issuing key in an HSM; here both are files under the run
directory (git-ignored, mode 0600). Existing material is reused until it is
within a day of expiry, so restarts keep their identities.

    python -m services.common.devpki --dir .run/pki
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

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

SERVICES = ("device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log")
OPERATORS = ("demo",)
LEAF_LIFETIME = timedelta(days=7)


def service_id(service: str) -> str:
    """Service names use '_' in Python and '-' in identities (ids allow no '_')."""
    return service.replace("_", "-")


def _fresh(path: Path, now: datetime) -> bool:
    if not path.exists():
        return False
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.not_valid_after_utc - now > timedelta(days=1)


def _authority(directory: Path, make: Callable[[], Authority], now: datetime) -> Authority:
    cert, key = directory / "ca.crt", directory / "ca.key"
    if _fresh(cert, now) and key.exists():
        return load_authority(cert, key)
    authority: Authority = make()
    write_private(key, private_key_pem(authority.key))
    cert.write_bytes(certificate_pem(authority.certificate))
    return authority


def _leaf(directory: Path, issuer: Authority, uri: str, now: datetime, server: bool) -> None:
    cert = directory / "tls.crt"
    if _fresh(cert, now):
        return
    key = new_private_key()
    leaf = issue_leaf(
        issuer,
        key.public_key(),
        uri,
        now,
        LEAF_LIFETIME,
        server=server,
        dns_names=("localhost",) if server else (),
        ip_addresses=("127.0.0.1",) if server else (),
    )
    write_private(directory / "tls.key", private_key_pem(key))
    # The chain lets peers that trust only the root verify the leaf.
    cert.write_bytes(certificate_pem(leaf, issuer.certificate))


def ensure_dev_pki(
    directory: Path, trust_domain: str = "privacam.local", now: datetime | None = None
) -> Path:
    """Create or refresh the development PKI under `directory`; returns it."""
    now = now or datetime.now(UTC)
    root = _authority(
        directory / "root",
        lambda: create_root("Privacam Dev Root CA", now, timedelta(days=3650)),
        now,
    )
    issuing = _authority(
        directory / "issuing",
        lambda: create_intermediate(root, "Privacam Dev Issuing CA", now, timedelta(days=365)),
        now,
    )
    (directory / "ca.crt").write_bytes(certificate_pem(root.certificate))
    for service in SERVICES:
        uri = spiffe_uri(trust_domain, PrincipalKind.SERVICE, service_id(service))
        _leaf(directory / "services" / service, issuing, uri, now, server=True)
    for operator in OPERATORS:
        uri = spiffe_uri(trust_domain, PrincipalKind.OPERATOR, operator)
        _leaf(directory / "operators" / operator, issuing, uri, now, server=False)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the PKI lives")
    parser.add_argument("--trust-domain", default="privacam.local")
    args = parser.parse_args()
    ensure_dev_pki(args.dir, args.trust_domain)
    print(f"dev PKI ready in {args.dir}")


if __name__ == "__main__":
    main()
