"""mTLS credentials for servers and channels, from the files named in TlsSettings."""

from __future__ import annotations

import grpc

from services.common.settings import TlsSettings


def _read(settings: TlsSettings) -> tuple[bytes, bytes, bytes]:
    return (
        settings.ca_file.read_bytes(),
        settings.cert_file.read_bytes(),
        settings.key_file.read_bytes(),
    )


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """Credentials that make every caller present a certificate from our CA."""
    ca, cert, key = _read(settings)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def public_server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """Server-authenticated TLS only: for the few calls that obtain a first identity."""
    _, cert, key = _read(settings)
    return grpc.ssl_server_credentials([(key, cert)], require_client_auth=False)


def channel_credentials(settings: TlsSettings) -> grpc.ChannelCredentials:
    """Credentials for calling another Privacam service as this process's identity."""
    ca, cert, key = _read(settings)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
