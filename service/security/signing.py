"""Expiring HMAC tokens on result URLs: `...?expires=<unix>&sig=<hex>` over the path and the expiry.

A result URL is then a capability that lapses, instead of relying on the job id being unguessable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

MIN_KEY_BYTES = 16


class UrlSigner:
    def __init__(self, key: bytes, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"auth.url_signing_key_file: the key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_file(cls, path: str | None, ttl_s: float, fallback: Path) -> UrlSigner:
        """The key from `path` (a mounted Secret, shared by replicas), else one kept at `fallback`
        (created once with mode 0600, so URLs survive a restart of a single-pod deployment)."""
        if path:
            return cls(Path(path).read_bytes().strip(), ttl_s)
        if not fallback.exists():
            fallback.parent.mkdir(parents=True, exist_ok=True)
            fallback.touch(mode=0o600)
            fallback.write_bytes(secrets.token_hex(32).encode())
        return cls(fallback.read_bytes().strip(), ttl_s)

    def _mac(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def query(self, path: str) -> str:
        """The query string that makes `path` fetchable until now + ttl."""
        expires = int(self._clock() + self._ttl_s)
        return f"expires={expires}&sig={self._mac(path, expires)}"

    def verify(self, path: str, query: str) -> bool:
        params = parse_qs(query)
        try:
            expires = int(params["expires"][0])
            sig = params["sig"][0]
        except (KeyError, IndexError, ValueError):
            return False
        if expires < self._clock():
            return False
        return hmac.compare_digest(sig, self._mac(path, expires))
