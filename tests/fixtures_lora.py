"""LoRA files for the tiny transformer, built with peft, in both key formats LTX-Video LoRAs come in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from service.config import LoraConfig as ServiceLoraConfig
from service.domain.specs import LoraSpec
from service.inputs.lora import fetch_loras
from service.models import lora as model_lora
from service.models.presets import build_tiny_transformer

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
# Everything a full LTX LoRA trains: attention and the feed-forward (`ff.net.0.proj`, `ff.net.2`).
ALL_LINEAR_MODULES = [*TARGET_MODULES, "ff.net.0.proj", "ff.net.2"]


def tiny_lora_weights(
    seed: int = 7, rank: int = 4, target_modules: list[str] = TARGET_MODULES
) -> dict[str, torch.Tensor]:
    """peft LoRA weights (keys like `transformer_blocks.0.attn1.to_q.lora_A.weight`) with a non-zero B, so
    that the LoRA changes the output (peft initializes B to zero)."""
    generator = torch.Generator().manual_seed(seed)
    transformer = build_tiny_transformer()
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=target_modules))
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return {key: value.contiguous() for key, value in get_peft_model_state_dict(transformer).items()}


def write_lora(path: Path, weights: dict[str, torch.Tensor], key_format: str) -> Path:
    """Save `weights` as `diffusers` (`transformer.` prefix) or `original` (ComfyUI `diffusion_model.`)."""
    prefix = {"diffusers": "transformer.", "original": "diffusion_model."}[key_format]
    save_file({prefix + key: value for key, value in weights.items()}, str(path))
    return path


def write_kohya_lora(path: Path, weights: dict[str, torch.Tensor], alpha: float, flat: bool = False) -> Path:
    """The same LoRA as kohya/ComfyUI save it: `lora_down`/`lora_up` with a per-module `.alpha`, where the
    effective update is (alpha / rank) * up @ down. `up` is stored divided by alpha / rank, so the file
    means exactly what `weights` (alpha = rank) mean. `flat`: kohya's `lora_unet_<path_with_underscores>`
    names; else the ComfyUI `diffusion_model.<path>` ones."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        module, kind = key.split(".lora_")
        name = "lora_unet_" + module.replace(".", "_") if flat else f"diffusion_model.{module}"
        if kind.startswith("A"):
            converted[f"{name}.lora_down.weight"] = value
            converted[f"{name}.alpha"] = torch.tensor(alpha)
        else:
            rank = value.shape[1]
            converted[f"{name}.lora_up.weight"] = (value * (rank / alpha)).contiguous()
    save_file(converted, str(path))
    return path


@contextmanager
def applied_loras(
    transformer: torch.nn.Module, loras: Sequence[LoraSpec], cfg: ServiceLoraConfig
) -> Iterator[None]:
    """The prepare stage's fetch, then the generate stage's application, as a job runs them."""
    with model_lora.applied_loras(transformer, fetch_loras(loras, cfg)):  # type: ignore[arg-type]
        yield
