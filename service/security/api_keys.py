"""API keys: loaded from a TOML file (e.g. a mounted Secret), checked in constant time.

    [[keys]]
    name = "batch-renderer"          # appears in logs and metrics, never the key itself
    sha256 = "9f86d0..."             # hex SHA-256 of the key (or `key = "..."`, the key in clear)
    endpoints = ["ltx-video-lora"]   # endpoint ids this key may submit to; omitted or ["*"] = all

Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every configured key without
an early exit, so the time taken says nothing about which key (or how much of one) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALL_ENDPOINTS = "*"


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes  # SHA-256 of the key
    endpoints: frozenset[str]

    def allows(self, endpoint_id: str) -> bool:
        return ALL_ENDPOINTS in self.endpoints or endpoint_id in self.endpoints


class ApiKeyError(ValueError):
    """The key file is malformed; the message names the entry and the field."""


def _parse_entry(index: int, entry: Any) -> ApiKey:
    where = f"keys[{index}]"
    if not isinstance(entry, dict):
        raise ApiKeyError(f"{where}: must be a table with name and key or sha256")
    unknown = set(entry) - {"name", "key", "sha256", "endpoints"}
    if unknown:
        raise ApiKeyError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ApiKeyError(f"{where}.name: must be a non-empty string")
    if ("key" in entry) == ("sha256" in entry):
        raise ApiKeyError(f"{where}: set exactly one of key and sha256")
    if "key" in entry:
        if not isinstance(entry["key"], str) or len(entry["key"]) < 16:
            raise ApiKeyError(f"{where}.key: must be a string of at least 16 characters")
        digest = hashlib.sha256(entry["key"].encode()).digest()
    else:
        try:
            digest = bytes.fromhex(entry["sha256"])
        except (TypeError, ValueError):
            digest = b""
        if len(digest) != 32:
            raise ApiKeyError(f"{where}.sha256: must be 64 hex digits")
    endpoints = entry.get("endpoints", [ALL_ENDPOINTS])
    if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
        raise ApiKeyError(f"{where}.endpoints: must be a list of endpoint ids")
    return ApiKey(name, digest, frozenset(endpoints))


def parse_api_keys(text: str) -> list[ApiKey]:
    data = tomllib.loads(text)
    entries = data.get("keys")
    if not isinstance(entries, list) or not entries:
        raise ApiKeyError("keys: the file must hold at least one [[keys]] table")
    keys = [_parse_entry(i, entry) for i, entry in enumerate(entries)]
    names = [k.name for k in keys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ApiKeyError(f"keys.name: duplicated names {', '.join(duplicates)}")
    return keys


def load_api_keys(path: str | Path) -> list[ApiKey]:
    try:
        return parse_api_keys(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ApiKeyError(f"auth.api_keys_file {path}: {error}") from error


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = list(keys)

    def identify(self, presented: str) -> ApiKey | None:
        """The key whose digest matches `presented`, checking all of them in constant time."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
