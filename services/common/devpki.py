"""Development PKI: a root CA, one issuing CA per kind of principal, and a certificate per
service and operator.

Run by `make up` and the integration tests on first start. Each issuing CA names the kinds
it may issue (identity.CA_KINDS_PREFIX): `issuing/` is device_auth's, for cameras and
apps; `service-ca/` issues services (cert-manager's CA in a cluster); `operator-ca/`
operators. Production keeps the root offline and device_auth's issuing key in an HSM; here
all are files under the run directory (git-ignored, mode 0600). Existing material is reused
until it is within a day of expiry (or was made by an older layout), so restarts keep their
identities.

    python -m services.common.devpki --dir .run/pki
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from privacam_core.identity import PrincipalKind, ca_kinds, spiffe_uri
from services.common.catalog import SERVICES
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

OPERATORS = ("demo",)
LEAF_LIFETIME = timedelta(days=7)
ISSUING_CAS: dict[str, tuple[str, tuple[PrincipalKind, ...]]] = {
    # folder: (common name, kinds it issues)
    "issuing": ("Privacam Dev Device CA", (PrincipalKind.CAMERA, PrincipalKind.APP)),
    "service-ca": ("Privacam Dev Service CA", (PrincipalKind.SERVICE,)),
    "operator-ca": ("Privacam Dev Operator CA", (PrincipalKind.OPERATOR,)),
}


def service_id(service: str) -> str:
    """Service names use '_' in Python and '-' in identities (ids allow no '_')."""
    return service.replace("_", "-")


def _fresh(path: Path, now: datetime, issuer: Authority | None = None) -> bool:
    """The certificate exists, is not within a day of expiry and, given its issuer, was
    signed by it (not by a CA an older layout made)."""
    if not path.exists():
        return False
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    if issuer is not None:
        try:
            certificate.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return certificate.not_valid_after_utc - now > timedelta(days=1)


def _authority(
    directory: Path,
    make: Callable[[], Authority],
    now: datetime,
    issuer: Authority | None = None,
    kinds: tuple[PrincipalKind, ...] = (),
) -> Authority:
    cert, key = directory / "ca.crt", directory / "ca.key"
    if _fresh(cert, now, issuer) and key.exists():
        existing = load_authority(cert, key)
        if ca_kinds(existing.certificate.subject) == {kind.value for kind in kinds}:
            return existing
    authority: Authority = make()
    write_private(key, private_key_pem(authority.key))
    cert.write_bytes(certificate_pem(authority.certificate))
    return authority


def _leaf(directory: Path, issuer: Authority, uri: str, now: datetime, server: bool) -> None:
    cert = directory / "tls.crt"
    if _fresh(cert, now, issuer):
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
    cas = {}
    for folder, (name, kinds) in ISSUING_CAS.items():
        make = partial(create_intermediate, root, name, now, timedelta(days=365), kinds)
        cas[folder] = _authority(directory / folder, make, now, root, kinds)
    (directory / "ca.crt").write_bytes(certificate_pem(root.certificate))
    for service in SERVICES:
        uri = spiffe_uri(trust_domain, PrincipalKind.SERVICE, service_id(service))
        _leaf(directory / "services" / service, cas["service-ca"], uri, now, server=True)
    for operator in OPERATORS:
        uri = spiffe_uri(trust_domain, PrincipalKind.OPERATOR, operator)
        _leaf(directory / "operators" / operator, cas["operator-ca"], uri, now, server=False)
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
