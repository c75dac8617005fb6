"""LoRA files for the tiny transformer, built with peft, in both key formats LTX-Video LoRAs come in."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from service.models.presets import build_tiny_transformer

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


def tiny_lora_weights(seed: int = 7, rank: int = 4) -> dict[str, torch.Tensor]:
    """peft LoRA weights (keys like `transformer_blocks.0.attn1.to_q.lora_A.weight`) with a non-zero B, so
    that the LoRA changes the output (peft initializes B to zero)."""
    generator = torch.Generator().manual_seed(seed)
    transformer = build_tiny_transformer()
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGET_MODULES))
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
