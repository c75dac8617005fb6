"""Write diffusers-format LTX modules back into the original single-file checkpoint layout.

The inverse of diffusers' `convert_ltx_transformer_checkpoint_to_diffusers` and (for the 0.9.1-style VAE the
tiny preset uses) `convert_ltx_vae_checkpoint_to_diffusers`, so the real `from_single_file` path can be
tested offline. Tests check the inverse by running diffusers' forward conversion on its output.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

_TRANSFORMER_RENAMES = {
    "proj_in": "patchify_proj",
    "time_embed": "adaln_single",
    "norm_q": "q_norm",
    "norm_k": "k_norm",
}
# Original encoder index of each diffusers (down block, part); mirrors diffusers' VAE_KEYS_RENAME_DICT.
_ENCODER_INDEX = {
    (0, "resnets"): 0, (0, "downsamplers.0"): 1, (0, "conv_out"): 2,
    (1, "resnets"): 3, (1, "downsamplers.0"): 4, (1, "conv_out"): 5,
    (2, "resnets"): 6, (2, "downsamplers.0"): 7,
    (3, "resnets"): 8,
}  # fmt: skip
_COMMON_RENAMES = (
    ("resnets", "res_blocks"),
    ("conv_shortcut.conv", "conv_shortcut"),
    ("norm3", "norm3.norm"),
)


def original_transformer_key(key: str) -> str:
    for diffusers_name, original_name in _TRANSFORMER_RENAMES.items():
        key = key.replace(diffusers_name, original_name)
    return f"model.diffusion_model.{key}"


def original_vae_key(key: str) -> str:
    key = {
        "latents_mean": "per_channel_statistics.mean-of-means",
        "latents_std": "per_channel_statistics.std-of-means",
    }.get(key, key)
    key = re.sub(r"^decoder\.(time_embedder|scale_shift_table)", r"decoder.last_\1", key)
    key = re.sub(r"^encoder\.down_blocks\.(\d)\.(resnets|downsamplers\.0|conv_out)", _encoder_block, key)
    key = re.sub(r"^decoder\.up_blocks\.(\d)\.(upsamplers\.0\.)?", _decoder_block, key)
    key = key.replace("encoder.mid_block.", "encoder.down_blocks.9.")
    key = key.replace("decoder.mid_block.", "decoder.up_blocks.0.")
    for diffusers_name, original_name in _COMMON_RENAMES:
        key = key.replace(diffusers_name, original_name)
    return f"vae.{key}"


def _encoder_block(match: re.Match[str]) -> str:
    index = _ENCODER_INDEX[(int(match[1]), match[2])]
    return f"encoder.down_blocks.{index}" + (".resnets" if match[2] == "resnets" else "")


def _decoder_block(match: re.Match[str]) -> str:
    # Original decoder blocks alternate: upsampler (2j + 1), then its res blocks (2j + 2); 0 is the mid block.
    is_upsampler = match[2] is not None
    return f"decoder.up_blocks.{2 * int(match[1]) + (1 if is_upsampler else 2)}."


def original_checkpoint(transformer: torch.nn.Module, vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {original_transformer_key(k): v for k, v in transformer.state_dict().items()}
    state.update({original_vae_key(k): v for k, v in vae.state_dict().items()})
    return {k: v.contiguous().clone() for k, v in state.items()}


def write_single_file(path: Path, transformer: torch.nn.Module, vae: torch.nn.Module) -> Path:
    save_file(original_checkpoint(transformer, vae), str(path))
    return path
