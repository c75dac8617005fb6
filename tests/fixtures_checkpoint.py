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


# A tiny VAE in the LTX-Video 0.9.5 / 0.9.7 layout (diffusers' `LTXVideo095DownBlock3D` encoder, the
# config of Lightricks/LTX-Video-0.9.7-dev's vae/ with tiny widths). diffusers' single-file converter picks
# its 0.9.5 key map only when the encoder's conv_out takes 2048 channels, as the real one does, so the last
# encoder width is the real 2048; the level before it is 256 (a downsampler needs out <= 8 x in) and those
# two levels have no res blocks, which keeps it at 2.7 M parameters.
TINY_VAE_097_CONFIG: dict[str, object] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 8,
    "block_out_channels": (8, 16, 32, 256, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "decoder_block_out_channels": (8, 16, 32),
    "layers_per_block": (1, 1, 1, 0, 0),
    "decoder_layers_per_block": (1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}


def original_vae_097_key(key: str) -> str:
    """The 0.9.5+ layout: encoder blocks alternate res blocks (2i) and downsampler (2i + 1), mid block 8."""
    if key.startswith("encoder."):
        key = re.sub(
            r"^encoder\.down_blocks\.(\d)\.resnets",
            lambda m: f"encoder.down_blocks.{2 * int(m[1])}.resnets",
            key,
        )
        key = re.sub(
            r"^encoder\.down_blocks\.(\d)\.downsamplers\.0",
            lambda m: f"encoder.down_blocks.{2 * int(m[1]) + 1}",
            key,
        )
        key = key.replace("encoder.mid_block.", "encoder.down_blocks.8.")
        for diffusers_name, original_name in _COMMON_RENAMES:
            key = key.replace(diffusers_name, original_name)
        return f"vae.{key}"
    return original_vae_key(key)  # the decoder and the statistics are laid out as in 0.9.1


def original_checkpoint(
    transformer: torch.nn.Module, vae: torch.nn.Module, vae_layout: str = "0.9.1"
) -> dict[str, torch.Tensor]:
    vae_key = original_vae_097_key if vae_layout == "0.9.7" else original_vae_key
    state = {original_transformer_key(k): v for k, v in transformer.state_dict().items()}
    state.update({vae_key(k): v for k, v in vae.state_dict().items()})
    if vae_layout == "0.9.7":
        # What a real file carries besides the weights diffusers keeps (its converter drops them).
        channels = vae.state_dict()["latents_mean"].shape[0]
        state["vae.per_channel_statistics.channel"] = torch.arange(channels)
        state["vae.per_channel_statistics.mean-of-stds"] = torch.ones(channels)
    return {k: v.contiguous().clone() for k, v in state.items()}


def write_single_file(
    path: Path, transformer: torch.nn.Module, vae: torch.nn.Module, vae_layout: str = "0.9.1"
) -> Path:
    save_file(original_checkpoint(transformer, vae, vae_layout), str(path))
    return path
