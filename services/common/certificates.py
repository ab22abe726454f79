"""Certificates replaced while the process runs: read again when their files change.

cert-manager (or a kubelet updating a Secret volume) replaces a pod's certificate, key and
CA bundle in place well before the certificate expires; a process that read them once at
start serves the old certificate until it is restarted, and past its expiry every new
connection fails. Each `WatchedFiles` is one such set of files: its `current` material is
what servers hand out in new handshakes (services.common.tls), what peer channels present
(services.common.peers), what Kafka's TLS context holds and what state records are signed
with (services.common.signed_state).

Checking is a stat of each file every `PRIVACAM_TLS_RELOAD_INTERVAL_SECONDS`, by one
periodic task per process (`RELOADER`, run by services.common.runtime); the files are read
only when a stat changed (size, modification time or inode, so a Secret volume's atomic
symlink swap counts). New files are used only once they are whole and fit together: each
PEM parses, the key is the certificate's, and the CA bundle holds a certificate; anything
else (a half-written file, a key written before its certificate) keeps the material in use,
logs a warning once per state of the files and counts
`privacam_certificate_reloads_total{result=<reason>}`; the next change is tried again.

`privacam_certificate_expiry_timestamp_seconds{certificate}` tells when each watched
certificate stops being valid, from the material in use: an alert before that moment means
rotation has stalled. Labels name the role of the file, never a subject.

Written by hand because grpc's dynamic server credentials only ask for a configuration
(they do not watch files), and neither aiokafka nor grpc's channel credentials reload.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from services.common import metrics

log = logging.getLogger("privacam.certificates")

Reason = Literal[
    "unreadable", "malformed_ca", "malformed_certificate", "malformed_key", "key_mismatch"
]


class RejectedFiles(ValueError):
    """Files that are not (yet) a usable set; `reason` is a short metric label."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason


@dataclass(frozen=True, eq=False)
class TlsMaterial:
    """One consistent set of files as read: the PEM bytes and what they hold."""

    ca_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None
    roots: tuple[x509.Certificate, ...]
    chain: tuple[x509.Certificate, ...]
    """The certificate first, then the intermediates that came with it."""
    key: PrivateKeyTypes | None

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def same_files(self, other: TlsMaterial) -> bool:
        return (self.ca_pem, self.cert_pem, self.key_pem) == (
            other.ca_pem,
            other.cert_pem,
            other.key_pem,
        )


def load_material(
    ca_pem: bytes | None, cert_pem: bytes | None, key_pem: bytes | None
) -> TlsMaterial:
    """The material of these PEM bytes, or RejectedFiles if they do not make a usable set."""
    roots: tuple[x509.Certificate, ...] = ()
    chain: tuple[x509.Certificate, ...] = ()
    key: PrivateKeyTypes | None = None
    if ca_pem is not None:
        try:
            roots = tuple(x509.load_pem_x509_certificates(ca_pem))
        except ValueError as error:
            raise RejectedFiles("malformed_ca", str(error)) from None
    if cert_pem is not None:
        try:
            chain = tuple(x509.load_pem_x509_certificates(cert_pem))
        except ValueError as error:
            raise RejectedFiles("malformed_certificate", str(error)) from None
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as error:
            raise RejectedFiles("malformed_key", str(error)) from None
    if chain and key is not None and chain[0].public_key() != key.public_key():
        raise RejectedFiles("key_mismatch", "the key does not belong to the certificate")
    return TlsMaterial(ca_pem, cert_pem, key_pem, roots, chain, key)


Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: tuple[Path | None, ...]) -> Stamp:
    """What changes when a file is rewritten or swapped (stat follows symlinks)."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        if path is None:
            stamps.append(None)
            continue
        st = os.stat(path)
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def _not_after(certificates: tuple[x509.Certificate, ...]) -> float:
    """When the first of these certificates expires (a chain is valid until then)."""
    return min(c.not_valid_after_utc for c in certificates).timestamp()


Listener = Callable[[TlsMaterial], None]


class WatchedFiles:
    """A CA bundle, a certificate chain and its key (each optional), read again on change."""

    def __init__(
        self,
        role: str,
        ca_file: Path | None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        """`role` names the files in metrics and logs ("service", "kafka"): the certificate
        is labelled `<role>`, the CA bundle `<role>_ca`. Unusable files stop start-up."""
        if (cert_file is None) != (key_file is None):
            raise ValueError("a certificate needs its key, and a key its certificate")
        self.role = role
        self._paths = (ca_file, cert_file, key_file)
        self._stamp = _stamp(self._paths)
        self.current = self._load()
        """The material in use; replaced whole, so readers on any thread see one set."""
        self._rejected: tuple[Stamp | None] | None = None
        """The state of the files last refused ((None,): a file was missing)."""
        self._listeners: list[Listener] = []
        self._publish()

    def _load(self) -> TlsMaterial:
        try:
            contents = tuple(_read(path) for path in self._paths)
        except OSError as error:
            raise RejectedFiles("unreadable", str(error)) from None
        return load_material(*contents)

    def on_change(self, listener: Listener) -> None:
        """Call `listener` with the new material each time it replaces the old."""
        self._listeners.append(listener)

    def check(self) -> bool:
        """Read the files again if they changed; True if new material is now in use."""
        try:
            stamp = _stamp(self._paths)
            if stamp == self._stamp:
                return False
            material = self._load()
        except (OSError, RejectedFiles) as error:
            # Mid-rotation (a file missing, half written, a key before its certificate):
            # keep what works, say so once per state of the files, look again next time.
            reason = error.reason if isinstance(error, RejectedFiles) else "unreadable"
            seen = (_stamp_or_none(self._paths),)
            if seen != self._rejected:
                self._rejected = seen
                metrics.CERTIFICATE_RELOADS.labels(self.role, reason).inc()
                log.warning(
                    "new certificate files not usable; keeping the current ones",
                    extra={"certificate": self.role, "reason": reason},
                )
            return False
        self._stamp, self._rejected = stamp, None
        if material.same_files(self.current):
            return False
        self.current = material
        self._publish()
        metrics.CERTIFICATE_RELOADS.labels(self.role, "reloaded").inc()
        log.info(
            "certificate files reloaded",
            extra={
                "certificate": self.role,
                "serial": f"{material.leaf.serial_number:x}" if material.chain else None,
                "not_after": material.leaf.not_valid_after_utc.isoformat()
                if material.chain
                else None,
            },
        )
        for listener in self._listeners:
            try:
                listener(material)
            except Exception:
                log.exception("a listener failed to take new certificates")
        return True

    def _publish(self) -> None:
        material = self.current
        if material.chain:
            metrics.CERTIFICATE_EXPIRY.labels(self.role).set(_not_after(material.chain))
        if material.roots:
            metrics.CERTIFICATE_EXPIRY.labels(f"{self.role}_ca").set(_not_after(material.roots))


def _stamp_or_none(paths: tuple[Path | None, ...]) -> Stamp | None:
    try:
        return _stamp(paths)
    except OSError:
        return None


class CertificateReloader:
    """Every set of files this process watches, checked together (one periodic task)."""

    def __init__(self) -> None:
        self._watched: dict[tuple[str, Path | None, Path | None, Path | None], WatchedFiles] = {}

    def watch(
        self,
        role: str,
        ca_file: Path | None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> WatchedFiles:
        """The one WatchedFiles of these files in this process (made on first use)."""
        key = (role, ca_file, cert_file, key_file)
        watched = self._watched.get(key)
        if watched is None:
            watched = self._watched[key] = WatchedFiles(role, ca_file, cert_file, key_file)
        return watched

    def check(self) -> int:
        """Check every watched set; how many took new material."""
        return sum(watched.check() for watched in list(self._watched.values()))

    async def check_all(self) -> int:
        """check(), for services.common.periodic.Periodic."""
        return self.check()


RELOADER = CertificateReloader()
"""The process's watched files; services.common.runtime checks them periodically."""

_CONTEXTS: dict[tuple[str, Path | None, Path | None, Path | None], ssl.SSLContext] = {}


def client_context(
    role: str, ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """The process's one client SSLContext for these files: the server verified against
    `ca_file` (or the system's store), `cert_file` presented if given. It follows changes
    of the files: a new certificate is loaded into the same context, so every connection
    made after the change presents it; a new CA bundle's certificates are added (OpenSSL
    cannot remove trusted certificates from a context: a CA dropped from the bundle stays
    trusted until the process restarts)."""
    if ca_file is None and cert_file is None:
        return ssl.create_default_context()
    key = (role, ca_file, cert_file, key_file)
    watched = RELOADER.watch(role, ca_file, cert_file, key_file)
    context = _CONTEXTS.get(key)
    if context is not None:
        watched.check()  # a client made now gets what the files hold now
    else:
        material = watched.current
        ca = material.ca_pem.decode() if material.ca_pem is not None else None
        made = _CONTEXTS[key] = ssl.create_default_context(cadata=ca)
        _load_identity(made, material)
        watched.on_change(lambda new: _reload(made, new))
        return made
    return context


def _reload(context: ssl.SSLContext, material: TlsMaterial) -> None:
    if material.ca_pem is not None:
        context.load_verify_locations(cadata=material.ca_pem.decode())
    _load_identity(context, material)


def _load_identity(context: ssl.SSLContext, material: TlsMaterial) -> None:
    """The material's certificate and key into `context`. load_cert_chain reads only
    files, and the watched paths may already hold a newer (perhaps half-written) set, so
    the checked bytes go through an anonymous in-memory file that never touches a disk."""
    if material.cert_pem is None or material.key_pem is None:
        return
    fd = os.memfd_create("privacam-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, material.cert_pem + b"\n" + material.key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
