"""The prepare stage's half of LoRAs: each request LoRA resolved to a local file before the job takes the
model lock, so a download never holds the accelerator (applying the weights is service/models/lora.py).

A LoRA is a local safetensors path (when `lora.allow_local_paths`, inside `lora.local_roots`) or an
http(s) URL, downloaded with the media inputs' guards and cached (service/media/fetch.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from service.config import LoraConfig
from service.domain.errors import ErrorType
from service.domain.specs import LoraSpec
from service.media.fetch import FetchLimits, download_to_file
from service.models.lora import FetchedLora
from service.models.lora import lora_error as _fail

logger = logging.getLogger(__name__)

_FETCH = ErrorType.INPUT_FETCH_FAILED


def fetch_loras(loras: Sequence[LoraSpec], cfg: LoraConfig) -> tuple[FetchedLora, ...]:
    """Every LoRA of a request as a local file; JobError naming `loras[i]` otherwise."""
    fetched = []
    for index, lora in enumerate(loras):
        if not lora.path:  # the LTX-2.3 spec's own example sends {"path": "", "scale": 1} for "no LoRA"
            logger.info("loras[%d] has an empty path: skipped (no LoRA)", index)
            continue
        fetched.append(FetchedLora(index, lora, fetch_lora(index, lora, cfg)))
    return tuple(fetched)


def fetch_lora(index: int, lora: LoraSpec, cfg: LoraConfig) -> Path:
    """A local path to the LoRA file: the path itself (inside `local_roots`), or the cached download of
    an http(s) URL. Not getting the file, from a URL or a path, is `input_fetch_failed` (the error
    table's row for inputs); a file that cannot be read or applied is `lora_load_failed`."""
    if lora.weight_name is not None and not _is_plain_file_name(lora.weight_name):
        raise _fail(index, lora, "weight_name must be a file name (no directories, no '..')")
    try:
        scheme = urlparse(lora.path).scheme.lower()
    except ValueError as error:  # "http://[::1"
        raise _fail(index, lora, "is not a valid URL or path", _FETCH) from error
    if scheme in ("http", "https"):
        return _download(index, lora, cfg)
    if scheme not in ("", "file"):
        raise _fail(
            index, lora, f"unsupported URL scheme {scheme[:20]!r}; use http(s) or a local path", _FETCH
        )
    if not cfg.allow_local_paths:
        raise _fail(index, lora, "local LoRA paths are disabled on this server; pass an http(s) URL", _FETCH)
    return _local_path(index, lora, cfg, urlparse(lora.path).path if scheme == "file" else lora.path)


def _is_plain_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0") and len(name) <= 255


def _local_path(index: int, lora: LoraSpec, cfg: LoraConfig, raw: str) -> Path:
    """The path, resolved (symlinks too), if it lies inside a configured root. Outside the roots the
    answer is the same whether the file exists or not, so errors reveal nothing about the filesystem."""
    refused = _fail(index, lora, "is not inside a LoRA directory this server allows", _FETCH)
    try:
        resolved = Path(raw).resolve(strict=False)
        roots = [Path(root).resolve(strict=False) for root in cfg.local_roots]
    except (OSError, RuntimeError, ValueError) as error:  # too long, a symlink loop, NUL
        raise refused from error
    if not any(resolved.is_relative_to(root) for root in roots):
        raise refused
    try:
        found = resolved.exists()
    except OSError:  # e.g. a component longer than the filesystem allows
        found = False
    if not found:
        raise _fail(index, lora, "file not found in the LoRA directories", _FETCH)
    return resolved


def _download(index: int, lora: LoraSpec, cfg: LoraConfig) -> Path:
    """The cached download of an http(s) LoRA, fetched with the same guards as media inputs (private
    addresses refused unless allowed, redirects re-checked, size, time and Cancel): service/media/fetch.py.

    The cache is keyed by the URL and the size limit, refreshed after `cache_ttl_s`, and trimmed to
    `cache_max_bytes` (least recently used first). A download lands under its final name only when
    complete, so a truncated one is never reused."""
    cache_dir = Path(cfg.cache_dir)
    key = hashlib.sha256(f"{lora.path}\n{cfg.max_bytes}".encode()).hexdigest()[:32]
    target = cache_dir / f"{key}.safetensors"
    if target.is_file() and time.time() - target.stat().st_mtime < cfg.cache_ttl_s:
        os.utime(target)  # most recently used
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    limits = FetchLimits(
        max_bytes=cfg.max_bytes,
        timeout_s=cfg.download_timeout_s,
        allow_private_networks=cfg.allow_private_networks,
        trusted_prefixes=cfg.trusted_prefixes,
    )
    download_to_file(lora.path, target, field=f"loras[{index}].path", limits=limits)
    _evict(cache_dir, cfg.cache_max_bytes, keep=target)
    return target


def _evict(cache_dir: Path, max_bytes: int, keep: Path) -> None:
    """Delete the least recently used cached LoRAs until the cache fits `max_bytes`."""
    entries = []
    for entry in cache_dir.glob("*.safetensors"):
        with contextlib.suppress(OSError):
            stat = entry.stat()
            entries.append((stat.st_mtime, stat.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda item: item[0]):
        if total <= max_bytes:
            return
        if entry != keep:
            with contextlib.suppress(OSError):
                entry.unlink()
                total -= size
                logger.info("evicted cached LoRA %s (%d bytes)", entry.name, size)
