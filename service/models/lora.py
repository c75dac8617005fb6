"""LoRA adapters applied to the transformer for one job, and removed after it.

A LoRA is a local safetensors file or an http(s) URL (downloaded once, size-capped, cached by URL hash), in
any of the key formats LTX-Video LoRAs come in: diffusers (`transformer.`), original/ComfyUI
(`diffusion_model.`, often with `.alpha`) and kohya (`lora_down`/`lora_up`, `.alpha`): see
service/models/lora_keys.py, which also folds alpha/rank into the weights. Reading and injection are
diffusers' own (`LTXPipeline.lora_state_dict`, `load_lora_adapter`, `set_adapters`); this module adds
fetching, checks that name the failing LoRA, and the per-job lifecycle.
"""

from __future__ import annotations

import hashlib
import logging
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

from service.config import LoraConfig
from service.domain.errors import ErrorType, JobError
from service.domain.specs import LoraSpec
from service.media.fetch import FetchLimits, download_to_file
from service.models.lora_keys import LoraKeyError, to_peft_weights

logger = logging.getLogger(__name__)

_PREFIX = "transformer"  # diffusers' key prefix for the LTX transformer (after format conversion)


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
    except Exception as error:  # diffusers raises OSError, SafetensorError, ValueError, ...
        raise _fail(index, lora, f"not a readable safetensors LoRA file ({error})") from error
    _check_keys(index, lora, state_dict)
    return state_dict, metadata


def fetch_lora(index: int, lora: LoraSpec, cfg: LoraConfig) -> Path:
    """A local path to the LoRA file: the path itself, or the cached download of an http(s) URL."""
    scheme = urlparse(lora.path).scheme.lower()
    if scheme in ("http", "https"):
        return _download(index, lora, cfg)
    if scheme not in ("", "file"):
        raise _fail(index, lora, f"unsupported URL scheme {scheme!r}; use http(s) or a local path")
    if not cfg.allow_local_paths:
        raise _fail(index, lora, "local LoRA paths are disabled on this server; pass an http(s) URL")
    path = Path(urlparse(lora.path).path if scheme == "file" else lora.path)
    if not path.exists():
        raise _fail(index, lora, "file not found")
    return path


def _download(index: int, lora: LoraSpec, cfg: LoraConfig) -> Path:
    """The cached download of an http(s) LoRA, fetched with the same guards as media inputs (private
    addresses refused unless allowed, redirects re-checked, size and time limits): service/media/fetch.py."""
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


def _check_keys(index: int, lora: LoraSpec, state_dict: dict[str, torch.Tensor]) -> None:
    if not state_dict:
        raise _fail(index, lora, "the file holds no tensors")
    if not any("lora" in key for key in state_dict):
        raise _fail(index, lora, f"not a LoRA: no LoRA weights among its keys, e.g. {next(iter(state_dict))!r}")


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
    except Exception as error:  # shape mismatches and the like, from peft
        raise _fail(index, lora, f"could not be applied to the transformer ({error})") from error


def _remove(transformer: LTXVideoTransformer3DModel, adapter_names: list[str]) -> None:
    if adapter_names:
        transformer.delete_adapters(adapter_names)
    if not getattr(transformer, "peft_config", None) and _has_lora_layers(transformer):
        # No adapter left: put the plain layers back, so later jobs run the untouched model at full speed.
        transformer.unload_lora()


def _has_lora_layers(module: torch.nn.Module) -> bool:
    return any(isinstance(layer, BaseTunerLayer) for layer in module.modules())
