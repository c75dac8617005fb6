"""LoRA adapters applied to the transformer for one job, and removed after it.

A LoRA is a local safetensors file or an http(s) URL (downloaded once, size-capped, cached by URL hash), in
any of the key formats LTX-Video LoRAs come in: diffusers (`transformer.`), original/ComfyUI
(`diffusion_model.`, often with `.alpha`) and kohya (`lora_down`/`lora_up`, `.alpha`): see
service/models/lora_keys.py, which also folds alpha/rank into the weights. Reading and injection are
diffusers' own (`LTXPipeline.lora_state_dict`, `load_lora_adapter`, `set_adapters`); this module adds
fetching, checks that name the failing LoRA, and the per-job lifecycle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import SafetensorError

from service.config import LoraConfig
from service.domain.errors import ErrorType, JobError
from service.domain.specs import LoraSpec
from service.media.fetch import FetchLimits, download_to_file
from service.models.lora_keys import LoraKeyError, to_peft_weights

logger = logging.getLogger(__name__)

_PREFIX = "transformer"  # diffusers' key prefix for the LTX transformer (after format conversion)
_FETCH = ErrorType.INPUT_FETCH_FAILED
# What an unreadable or foreign file raises in diffusers/safetensors; anything else is a bug of ours.
_UNREADABLE = (OSError, ValueError, SafetensorError, json.JSONDecodeError)


def _fail(
    index: int, lora: LoraSpec, cause: str, error_type: ErrorType = ErrorType.LORA_LOAD_FAILED
) -> JobError:
    return JobError(error_type, f"loras[{index}] ({_describe(lora.path)}): {cause}")


def _describe(path: str) -> str:
    """The LoRA's path or URL without query and fragment, which may carry access tokens."""
    return urlparse(path)._replace(query="", fragment="").geturl()


@contextmanager
def applied_loras(
    transformer: LTXVideoTransformer3DModel, loras: Sequence[LoraSpec], cfg: LoraConfig
) -> Iterator[None]:
    """Apply `loras` (each at its scale) to `transformer` inside the block; the block's exit removes them,
    whether it ends normally or not, so one job's LoRAs never leak into the next."""
    loaded: list[str] = []
    try:
        for index, lora in enumerate(loras):
            state_dict, metadata = read_lora(index, lora, cfg)
            adapter_name = f"job_lora_{index}"
            _inject(transformer, index, lora, state_dict, metadata, adapter_name)
            loaded.append(adapter_name)
        if loaded:
            transformer.set_adapters(loaded, weights=[lora.scale for lora in loras])
            logger.info(
                "applied %d LoRA(s): %s", len(loaded), ", ".join(_describe(lora.path) for lora in loras)
            )
        yield
    finally:
        _remove(transformer, loaded)


def read_lora(
    index: int, lora: LoraSpec, cfg: LoraConfig
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Fetch and read one LoRA into diffusers' key format; JobError naming `loras[index]` on any failure."""
    path = fetch_lora(index, lora, cfg)
    try:
        state_dict, metadata = LTXPipeline.lora_state_dict(
            str(path),
            weight_name=lora.weight_name if path.is_dir() else None,
            use_safetensors=True,  # never unpickle a file a client pointed us at
            local_files_only=True,
            return_lora_metadata=True,
        )
    except _UNREADABLE as error:
        # The cause stays in the log: its text can quote the file's header, which is not the client's to read.
        logger.info("loras[%d] is unreadable: %s: %s", index, type(error).__name__, error)
        raise _fail(index, lora, "not a readable safetensors LoRA file") from error
    _check_keys(index, lora, state_dict)
    return state_dict, metadata


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
        raise _fail(index, lora, f"unsupported URL scheme {scheme[:20]!r}; use http(s) or a local path", _FETCH)
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


def _check_keys(index: int, lora: LoraSpec, state_dict: dict[str, torch.Tensor]) -> None:
    if not state_dict:
        raise _fail(index, lora, "the file holds no tensors")
    if not any("lora" in key for key in state_dict):
        raise _fail(index, lora, "not a LoRA: the file holds no LoRA weights")


def _inject(
    transformer: LTXVideoTransformer3DModel,
    index: int,
    lora: LoraSpec,
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, Any] | None,
    adapter_name: str,
) -> None:
    modules = {name for name, _module in transformer.named_modules()}
    try:
        state_dict, has_alphas = to_peft_weights(state_dict, modules, prefix=_PREFIX)
    except LoraKeyError as error:
        raise _fail(index, lora, f"{error}; is it a LoRA for this model?") from error
    if has_alphas:
        metadata = None  # the file's alphas are folded into its weights: load at alpha = rank
    try:
        with warnings.catch_warnings():
            # peft warns on every adapter after the first; stacking several LoRAs is what we mean to do.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            transformer.load_lora_adapter(
                state_dict, adapter_name=adapter_name, prefix=_PREFIX, metadata=metadata
            )
    except (ValueError, RuntimeError, KeyError) as error:  # shape mismatches and the like, from peft
        logger.info("loras[%d] does not fit the transformer: %s", index, error)
        raise _fail(index, lora, "could not be applied to the transformer (its shapes do not fit this model)") from error


def _remove(transformer: LTXVideoTransformer3DModel, adapter_names: list[str]) -> None:
    if adapter_names:
        transformer.delete_adapters(adapter_names)
    if not getattr(transformer, "peft_config", None) and _has_lora_layers(transformer):
        # No adapter left: put the plain layers back, so later jobs run the untouched model at full speed.
        transformer.unload_lora()


def _has_lora_layers(module: torch.nn.Module) -> bool:
    return any(isinstance(layer, BaseTunerLayer) for layer in module.modules())
