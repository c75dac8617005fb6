"""The `[auth]` section: API keys, TLS/mTLS files and the key that signs result URLs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuthConfig:
    # TOML file of `[[keys]]` tables (name, key or sha256, endpoints); unset = no API keys required.
    api_keys_file: str | None = None
    # Server certificate chain and key (PEM); both set = the gRPC port speaks TLS.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # CA bundle (PEM) that client certificates must chain to; set = mTLS (a client certificate is required).
    tls_client_ca_file: str | None = None
    # Secret for the HMAC on result URLs (a file, e.g. a mounted Secret); unset = a random per-process key.
    url_signing_key_file: str | None = None
    result_url_ttl_s: float = 24 * 3600.0  # how long a signed result URL stays valid

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file and self.tls_key_file)
