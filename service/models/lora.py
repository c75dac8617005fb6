"""LoRA adapters applied to the transformer for one job, and removed after it.

The files are already local: the prepare stage (service/inputs/lora.py) resolved each LoRA's path or
downloaded its URL before the job took the model lock. A file is in any of the key formats LTX-Video LoRAs
come in: diffusers (`transformer.`), original/ComfyUI (`diffusion_model.`, often with `.alpha`) and kohya
(`lora_down`/`lora_up`, `.alpha`): see service/models/lora_keys.py, which also folds alpha/rank into the
weights. Reading and injection are diffusers' own (`LTXPipeline.lora_state_dict`, `load_lora_adapter`,
`set_adapters`); this module adds checks that name the failing LoRA and the per-job lifecycle.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import torch
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import SafetensorError

from service.domain.errors import ErrorType, JobError
from service.domain.specs import LoraSpec
from service.models.lora_keys import LoraKeyError, to_peft_weights

logger = logging.getLogger(__name__)

_PREFIX = "transformer"  # diffusers' key prefix for the LTX transformer (after format conversion)
# What an unreadable or foreign file raises in diffusers/safetensors; anything else is a bug of ours.
_UNREADABLE = (OSError, ValueError, SafetensorError, json.JSONDecodeError)


class FetchedLora(NamedTuple):
    """A request's LoRA (`loras[position]`) and the local file it was resolved or downloaded to."""

    position: int  # its index in the request's `loras`
    spec: LoraSpec
    path: Path


def lora_error(
    index: int, lora: LoraSpec, cause: str, error_type: ErrorType = ErrorType.LORA_LOAD_FAILED
) -> JobError:
    return JobError(error_type, f"loras[{index}] ({describe_lora(lora.path)}): {cause}")


def describe_lora(path: str) -> str:
    """The LoRA's path or URL without query and fragment, which may carry access tokens."""
    return urlparse(path)._replace(query="", fragment="").geturl()


@contextmanager
def applied_loras(transformer: LTXVideoTransformer3DModel, loras: Sequence[FetchedLora]) -> Iterator[None]:
    """Apply `loras` (each at its scale) to `transformer` inside the block; the block's exit removes them,
    whether it ends normally or not, so one job's LoRAs never leak into the next."""
    loaded: list[str] = []
    try:
        for lora in loras:
            state_dict, metadata = read_lora(lora)
            adapter_name = f"job_lora_{lora.position}"
            _inject(transformer, lora.position, lora.spec, state_dict, metadata, adapter_name)
            loaded.append(adapter_name)
        if loaded:
            transformer.set_adapters(loaded, weights=[lora.spec.scale for lora in loras])
            logger.info(
                "applied %d LoRA(s): %s",
                len(loaded),
                ", ".join(describe_lora(lora.spec.path) for lora in loras),
            )
        yield
    finally:
        _remove(transformer, loaded)


def read_lora(fetched: FetchedLora) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read one LoRA file into diffusers' key format; JobError naming `loras[index]` on any failure."""
    index, lora, path = fetched
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
        raise lora_error(index, lora, "not a readable safetensors LoRA file") from error
    _check_keys(index, lora, state_dict)
    return state_dict, metadata


def _check_keys(index: int, lora: LoraSpec, state_dict: dict[str, torch.Tensor]) -> None:
    if not state_dict:
        raise lora_error(index, lora, "the file holds no tensors")
    if not any("lora" in key for key in state_dict):
        raise lora_error(index, lora, "not a LoRA: the file holds no LoRA weights")


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
        raise lora_error(index, lora, f"{error}; is it a LoRA for this model?") from error
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
        raise lora_error(
            index, lora, "could not be applied to the transformer (its shapes do not fit this model)"
        ) from error


def _remove(transformer: LTXVideoTransformer3DModel, adapter_names: list[str]) -> None:
    if adapter_names:
        transformer.delete_adapters(adapter_names)
    if not getattr(transformer, "peft_config", None) and _has_lora_layers(transformer):
        # No adapter left: put the plain layers back, so later jobs run the untouched model at full speed.
        transformer.unload_lora()


def _has_lora_layers(module: torch.nn.Module) -> bool:
    return any(isinstance(layer, BaseTunerLayer) for layer in module.modules())
