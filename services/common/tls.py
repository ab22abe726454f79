"""mTLS credentials for servers and channels, from the files named in TlsSettings.

The files are watched (services.common.certificates): servers hand out the newest usable
certificate in every new handshake and check callers against the newest CA bundle;
connections already open keep the certificate they began with.
"""

from __future__ import annotations

import grpc

from services.common.certificates import RELOADER, TlsMaterial, WatchedFiles
from services.common.settings import TlsSettings

SERVICE_ROLE = "service"
"""The `certificate` label of a service's own certificate (and `service_ca` of its CA
bundle) in privacam_certificate_expiry_timestamp_seconds."""


def service_certificates(settings: TlsSettings) -> WatchedFiles:
    """This process's own CA bundle, certificate and key, as watched for rotation."""
    return RELOADER.watch(SERVICE_ROLE, settings.ca_file, settings.cert_file, settings.key_file)


def _server_credentials(settings: TlsSettings, client_auth: bool) -> grpc.ServerCredentials:
    watched = service_certificates(settings)

    def configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        assert material.key_pem is not None
        assert material.cert_pem is not None
        return grpc.ssl_server_certificate_configuration(
            [(material.key_pem, material.cert_pem)],
            root_certificates=material.ca_pem if client_auth else None,
        )

    served = watched.current

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before every handshake (on its own threads): no I/O here, only a
        # look at the material the periodic check last loaded.
        nonlocal served
        material = watched.current
        if material is served:
            return None
        served = material
        return configuration(material)

    return grpc.dynamic_ssl_server_credentials(
        configuration(watched.current),
        fetch,  # type: ignore[arg-type]  # grpc's stubs omit the documented None
        require_client_authentication=client_auth,
    )


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """Credentials that make every caller present a certificate from our CA."""
    return _server_credentials(settings, client_auth=True)


def public_server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """Server-authenticated TLS only: for the few calls that obtain a first identity."""
    return _server_credentials(settings, client_auth=False)


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """Credentials for calling another Privacam service with this material's identity
    (fixed once made: services.common.peers opens new channels when the files change)."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_pem,
        private_key=material.key_pem,
        certificate_chain=material.cert_pem,
    )
