"""Decoding shared by the LTX-Video pipelines: decode timestep and noise, latents -> uint8 frames.

The text-to-video endpoint itself (`ltx-video-lora`) runs the 13B 0.9.7-dev recipe, the multiconditioning
loop with no conditions: `service.pipelines.multiconditioning.generate_text_to_video`. Its earlier loop here
(LTXPipeline's token-shifted linear sigmas, constant CFG 3) was not what the model's authors run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from service.pipelines.components import Components
from service.pipelines.latents import (
    LatentShape,
    denormalize,
    unpack,
)

logger = logging.getLogger(__name__)

# ltxv-13b-0.9.7-dev.yaml: the decoder sees the latents at t=0.05, mixed with 2.5% fresh noise.
DEFAULT_DECODE_TIMESTEP = 0.05
DEFAULT_DECODE_NOISE_SCALE = 0.025


@dataclass(frozen=True)
class DecodeOptions:
    """How the dev endpoints decode; the defaults are the 0.9.7 dev ones."""

    decode_timestep: float = DEFAULT_DECODE_TIMESTEP
    decode_noise_scale: float = DEFAULT_DECODE_NOISE_SCALE


class PromptEmbeddings(NamedTuple):
    embeds: torch.Tensor  # [B, L, D]; the dev endpoints: B = 2, [negative, positive]
    mask: torch.Tensor  # [B, L]


def decode(
    components: Components,
    tokens: torch.Tensor,
    shape: LatentShape,
    generator: torch.Generator,
    options: DecodeOptions,
) -> torch.Tensor:
    """Packed latents -> video [B, 3, F, H, W] in [-1, 1]."""
    geometry = components.geometry
    latents = unpack(tokens, shape, geometry)
    decode_timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
    if geometry.decode_timestep_conditioning:
        # Decode from slightly re-noised latents at a small timestep (the decoder was trained so). The noise
        # is mixed in NORMALIZED space, as upstream LTXVideoPipeline does on every pipeline (and our
        # distilled one); diffusers mixes it after denormalizing.
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = torch.lerp(latents, noise, options.decode_noise_scale)
        decode_timestep = torch.full_like(decode_timestep, options.decode_timestep)
    return components.vae_decoder.decode(denormalize(latents, geometry), decode_timestep)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Video [1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3], truncated as upstream inference.py does
    (`(video * 255).astype(np.uint8)`; diffusers' VideoProcessor rounds, half a level brighter). Generated
    frames only: decoded inputs keep contract/frames.py's rounding, the exact inverse of `unit_from_uint8`."""
    # In place: at 720p x 89 frames each float copy of the video is ~1 GB.
    pixels = video[0].float().div_(2).add_(0.5).clamp_(0, 1).mul_(255).floor_()
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()
