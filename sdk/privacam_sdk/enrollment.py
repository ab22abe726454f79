"""Getting a first identity: the private key is made here and never leaves the device.

An app registers an account (or signs in) and a camera enrolls with its owner's claim
token; each sends only a CSR over server-authenticated TLS (there is no client
certificate yet) and stores the returned certificate chain with its key as a profile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from privacam_sdk.client import CHANNEL_OPTIONS, PrivacamClient
from privacam_sdk.profile import DEFAULT_ENDPOINTS, Profile

ENROLLMENT_SERVICE = "device_auth_enrollment"
DEFAULT_ENROLLMENT_ENDPOINT = "127.0.0.1:7301"
_APP_URI = re.compile(r"^spiffe://[^/]+/tenant/([^/]+)/app/([^/]+)$")


def owner_app_key(certificate_pem: bytes) -> tuple[str, str, ec.EllipticCurvePublicKey]:
    """(tenant id, install id, public key) of an owner app's certificate, as the owner's
    app hands it to a camera with the claim token."""
    certificate = x509.load_pem_x509_certificates(certificate_pem)[0]
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("an app certificate carries a P-256 key")
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    for uri in names.value.get_values_for_type(x509.UniformResourceIdentifier):
        match = _APP_URI.fullmatch(uri)
        if match is not None:
            return match[1], match[2], key
    raise ValueError("the certificate does not name an app install (URI SAN .../app/<id>)")


def new_key_and_csr() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A P-256 key and a CSR for it; the server ignores any name in the CSR."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


async def renew_certificate(client: PrivacamClient) -> x509.Certificate:
    """Renew the client's certificate (same key: a camera's is pinned at pairing) over its
    own mTLS identity and store it in its profile; the client, and any other client of the
    profile, presents it on its next channels. Returns the new certificate."""
    profile = client.profile
    key = serialization.load_pem_private_key(profile.key_file.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"profile {profile.name!r} holds no EC key")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    renewed = await client.device_auth().RenewCertificate(
        pb.RenewCertificateRequest(csr=csr.public_bytes(serialization.Encoding.DER)),
        timeout=client.timeout,
    )
    chain = _pem_chain(renewed.certificate)
    profile.store_certificate(chain)
    return x509.load_pem_x509_certificate(chain)


def _pem_chain(issued: pb.IssuedCertificate) -> bytes:
    return b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in issued.certificate_chain
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Enrollment:
    """Talks to device_auth's enrollment port with only the platform's CA to trust.

    `timeout` bounds each step, retries included. Enrolling is a person's one-time step, so
    it waits out what a restart of the event bus costs (a step that cannot be recorded
    fails UNAVAILABLE, undone, and is retried) rather than show them an error."""

    def __init__(
        self,
        ca_pem: bytes,
        endpoint: str = DEFAULT_ENROLLMENT_ENDPOINT,
        endpoints: dict[str, str] | None = None,
        trust_domain: str = "privacam.local",
        home: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._ca_pem = ca_pem
        self._endpoint = endpoint
        self._endpoints = {**(endpoints or DEFAULT_ENDPOINTS), ENROLLMENT_SERVICE: endpoint}
        self._trust_domain = trust_domain
        self._home = home
        self._timeout = timeout

    def _save(
        self, name: str, key: ec.EllipticCurvePrivateKey, issued: pb.IssuedCertificate
    ) -> Profile:
        profile = Profile.create(
            name,
            self._ca_pem,
            _pem_chain(issued),
            _key_pem(key),
            self._endpoints,
            self._trust_domain,
            self._home,
        )
        # Pinned now, over the same server-authenticated channel as the certificate: from
        # here on a log key is trusted only through a statement signed by one of these.
        profile.pin_log_keys(
            {
                pinned.key_id: Ed25519PublicKey.from_public_bytes(pinned.public_key)
                for pinned in issued.access_log_keys
            }
        )
        return profile

    async def _call(self) -> tuple[grpc.aio.Channel, pb_grpc.DeviceAuthServiceAsyncStub]:
        # The same retries as PrivacamClient: a new user's first step survives a store's
        # restart or a replica shedding load (UNAVAILABLE) like every later one.
        channel = grpc.aio.secure_channel(
            self._endpoint,
            grpc.ssl_channel_credentials(root_certificates=self._ca_pem),
            options=CHANNEL_OPTIONS,
        )
        stub: pb_grpc.DeviceAuthServiceAsyncStub = pb_grpc.DeviceAuthServiceStub(channel)
        return channel, stub

    async def register_account(
        self, profile: str, login: str, password: str, install_label: str = ""
    ) -> tuple[Profile, str]:
        """A new account with this app install enrolled; (profile, tenant id)."""
        key, csr = new_key_and_csr()
        channel, stub = await self._call()
        async with channel:
            reply = await stub.RegisterAccount(
                pb.RegisterAccountRequest(
                    login=login, password=password, csr=csr, install_label=install_label
                ),
                timeout=self._timeout,
            )
        return self._save(profile, key, reply.certificate), reply.tenant_id

    async def sign_in(
        self, profile: str, login: str, password: str, install_label: str = ""
    ) -> tuple[Profile, str]:
        """Enroll this app install under an existing account; (profile, tenant id)."""
        key, csr = new_key_and_csr()
        channel, stub = await self._call()
        async with channel:
            reply = await stub.SignIn(
                pb.SignInRequest(
                    login=login, password=password, csr=csr, install_label=install_label
                ),
                timeout=self._timeout,
            )
        return self._save(profile, key, reply.certificate), reply.tenant_id

    async def enroll_camera(
        self,
        profile: str,
        claim_token: str,
        serial: str,
        owner_certificates: Sequence[bytes] = (),
    ) -> tuple[Profile, str]:
        """Pair a camera with its owner's claim token; (profile, device id).

        ``owner_certificates`` (PEM) come from the owner's app with the token, out of the
        platform's reach: their keys are pinned as the only ones whose privacy statements
        the camera applies. A camera paired again starts with no privacy statement: the
        one kept from its previous pairing was signed by that household's keys."""
        owners = [owner_app_key(pem) for pem in owner_certificates]
        key, csr = new_key_and_csr()
        channel, stub = await self._call()
        async with channel:
            reply = await stub.EnrollCamera(
                pb.EnrollCameraRequest(claim_token=claim_token, csr=csr, serial=serial),
                timeout=self._timeout,
            )
        saved = self._save(profile, key, reply.certificate)
        # Only the camera's own household's apps; another household's key is no owner.
        saved.pin_owner_keys(
            {
                install: owner_key
                for tenant, install, owner_key in owners
                if tenant == reply.tenant_id
            }
        )
        saved.privacy_state_file.unlink(missing_ok=True)
        return saved, reply.device_id
