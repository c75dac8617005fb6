"""gRPC server credentials from PEM files: TLS, or mTLS when a client CA is configured."""

from __future__ import annotations

from pathlib import Path

import grpc

from service.security.config import AuthConfig


def server_credentials(config: AuthConfig) -> grpc.ServerCredentials | None:
    """None when TLS is not configured; a half-configured pair is an error naming both fields."""
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ValueError("auth.tls_cert_file and auth.tls_key_file must be set together")
    if not config.tls_enabled:
        if config.tls_client_ca_file:
            raise ValueError("auth.tls_client_ca_file needs auth.tls_cert_file and auth.tls_key_file")
        return None
    assert config.tls_cert_file and config.tls_key_file
    chain = Path(config.tls_cert_file).read_bytes()
    key = Path(config.tls_key_file).read_bytes()
    client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
