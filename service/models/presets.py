"""Model presets: which architecture and weights a `ModelConfig.preset` names.

`tiny` builds seeded random weights on a CPU in well under a second. Its architecture is the real LTX-Video
one (diffusers' `LTXVideoTransformer3DModel`, `AutoencoderKLLTXVideo`, transformers' `T5EncoderModel`)
with tiny widths, and its VAE keeps the real compression (32x spatial, 8x temporal), so frame-count and
size rules, token counts and the decode path are those of the real model.

`ltx-video-0.9.7` loads real weights from a local directory (see `service.models.loading`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx import AutoencoderKLLTXVideo
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from transformers import T5Config, T5EncoderModel

# Tokens per prompt for LTX-Video 0.9.7: T5-XXL padded to 256, as upstream inference.py
# (`text_encoder_max_tokens=256`) and diffusers' LTXConditionPipeline (`max_sequence_length=256`). 128 (the
# 0.9.0 LTXPipeline default) cut the spec examples' ~110-word prompts.
LTX_VIDEO_TEXT_MAX_LENGTH = 256


class Preset(StrEnum):
    TINY = "tiny"
    LTX_VIDEO_097 = "ltx-video-0.9.7"


TINY_LATENT_CHANNELS = 8
TINY_TEXT_DIM = 32

# Two heads of 16, not four of 8: torch's CPU flash-attention kernel is ~3x slower at head_dim 8, and the
# 720p/89-frame example (10,560 tokens) must stay fast on a laptop.
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "in_channels": TINY_LATENT_CHANNELS,
    "out_channels": TINY_LATENT_CHANNELS,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "cross_attention_dim": 32,
    "num_layers": 1,
    "caption_channels": TINY_TEXT_DIM,
}

# The 0.9.1-style layout: patchify by 4, three spatio-temporal 2x downsamples (4 * 2**3 = 32 spatial,
# 2**3 = 8 temporal) and a decoder conditioned on the decode timestep (the 0.9.1+ `last_scale_shift_table`).
# Decoder widths halve per up-block because diffusers' up-blocks need in == out channels after depth-to-space.
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": TINY_LATENT_CHANNELS,
    "block_out_channels": (8, 8, 16, 16),
    "decoder_block_out_channels": (8, 16, 32),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}

TINY_T5_CONFIG: dict[str, Any] = {
    "d_model": TINY_TEXT_DIM,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 1,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "dropout_rate": 0.0,
    "feed_forward_proj": "gated-gelu",
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


def build_tiny_transformer() -> LTXVideoTransformer3DModel:
    return LTXVideoTransformer3DModel(**TINY_TRANSFORMER_CONFIG).eval()


def build_tiny_vae(generator: torch.Generator) -> AutoencoderKLLTXVideo:
    vae = AutoencoderKLLTXVideo(**TINY_VAE_CONFIG).eval()
    # Non-trivial latent statistics, so that (de)normalization is exercised as with real weights.
    channels = TINY_LATENT_CHANNELS
    vae.latents_mean.copy_(0.1 * torch.randn(channels, generator=generator))
    vae.latents_std.copy_(1.0 + 0.1 * torch.rand(channels, generator=generator))
    return vae


def build_tiny_text_encoder(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=vocab_size, **TINY_T5_CONFIG)).eval()
