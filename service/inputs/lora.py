"""The prepare stage's half of LoRAs: each request LoRA resolved to a local file before the job takes the
model lock, so a download never holds the accelerator (applying the weights is service/models/lora.py).

A LoRA is a local safetensors path (when `lora.allow_local_paths`) or an http(s) URL, downloaded once with
the media inputs' guards (size and time limits, private addresses refused unless allowed) and cached by
the URL's hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from service.config import LoraConfig
from service.domain.specs import LoraSpec
from service.media.fetch import FetchLimits, download_to_file
from service.models.lora import FetchedLora, lora_error


def fetch_loras(loras: Sequence[LoraSpec], cfg: LoraConfig) -> tuple[FetchedLora, ...]:
    """Every LoRA of a request as a local file; JobError(lora_load_failed) naming `loras[i]` otherwise."""
    return tuple(FetchedLora(index, lora, fetch_lora(index, lora, cfg)) for index, lora in enumerate(loras))


def fetch_lora(index: int, lora: LoraSpec, cfg: LoraConfig) -> Path:
    """A local path to the LoRA file: the path itself, or the cached download of an http(s) URL."""
    scheme = urlparse(lora.path).scheme.lower()
    if scheme in ("http", "https"):
        return _download(index, lora, cfg)
    if scheme not in ("", "file"):
        raise lora_error(index, lora, f"unsupported URL scheme {scheme!r}; use http(s) or a local path")
    if not cfg.allow_local_paths:
        raise lora_error(index, lora, "local LoRA paths are disabled on this server; pass an http(s) URL")
    path = Path(urlparse(lora.path).path if scheme == "file" else lora.path)
    if not path.exists():
        raise lora_error(index, lora, "file not found")
    return path


def _download(index: int, lora: LoraSpec, cfg: LoraConfig) -> Path:
    cache_dir = Path(cfg.cache_dir)
    target = cache_dir / f"{hashlib.sha256(lora.path.encode()).hexdigest()[:32]}.safetensors"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    limits = FetchLimits(
        max_bytes=cfg.max_bytes,
        timeout_s=cfg.download_timeout_s,
        allow_private_networks=cfg.allow_private_networks,
    )
    download_to_file(lora.path, target, field=f"loras[{index}].path", limits=limits)
    return target
