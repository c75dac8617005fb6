"""Decoding shared by the LTX-Video pipelines: decode timestep and noise, latents -> uint8 frames.

The text-to-video endpoint itself (`ltx-video-lora`) runs the 13B 0.9.7-dev recipe, the multiconditioning
loop with no conditions: `service.pipelines.multiconditioning.generate_text_to_video`. Its earlier loop here
(LTXPipeline's token-shifted linear sigmas, constant CFG 3) was not what the model's authors run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from service.pipelines.components import Components
from service.pipelines.latent_windows import DecodedFrames, decode_in_tiles, plan_windows
from service.pipelines.latents import (
    LatentShape,
    denormalize,
    unpack,
)
from service.pipelines.long_video import (
    DEFAULT_DECODE_OVERLAP_LATENT_FRAMES,
    DEFAULT_DECODE_TILE_LATENT_FRAMES,
)

logger = logging.getLogger(__name__)

# ltxv-13b-0.9.7-dev.yaml: the decoder sees the latents at t=0.05, mixed with 2.5% fresh noise.
DEFAULT_DECODE_TIMESTEP = 0.05
DEFAULT_DECODE_NOISE_SCALE = 0.025


@dataclass(frozen=True)
class DecodeOptions:
    """How the dev endpoints decode; the defaults are the 0.9.7 dev ones. A clip longer than
    `tile_latent_frames` is decoded in temporal tiles of that many latent frames, crossfaded over
    `overlap_latent_frames` (the distilled endpoint's `decode_in_tiles`), so the decoder's memory is one
    tile's; a clip of at most one tile (121 frames by default) is decoded whole, exactly as before."""

    decode_timestep: float = DEFAULT_DECODE_TIMESTEP
    decode_noise_scale: float = DEFAULT_DECODE_NOISE_SCALE
    tile_latent_frames: int = DEFAULT_DECODE_TILE_LATENT_FRAMES
    overlap_latent_frames: int = DEFAULT_DECODE_OVERLAP_LATENT_FRAMES

    def tiles(self, latent_frames: int) -> int:
        """How many decode tiles a clip of `latent_frames` takes."""
        return len(plan_windows(latent_frames, self.tile_latent_frames, self.overlap_latent_frames))


class PromptEmbeddings(NamedTuple):
    embeds: torch.Tensor  # [B, L, D]; the dev endpoints: B = 2, [negative, positive]
    mask: torch.Tensor  # [B, L]


def decode_chunks(
    components: Components,
    tokens: torch.Tensor,
    shape: LatentShape,
    generator: torch.Generator,
    options: DecodeOptions,
) -> Iterator[DecodedFrames]:
    """Packed latents -> the video's frames in [-1, 1], [3, n, H, W] per finished chunk, in order."""
    geometry = components.geometry
    latents = unpack(tokens, shape, geometry)
    decode_timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
    if geometry.decode_timestep_conditioning:
        # Decode from slightly re-noised latents at a small timestep (the decoder was trained so). The noise
        # is mixed in NORMALIZED space, as upstream LTXVideoPipeline does on every pipeline (and our
        # distilled one); diffusers mixes it after denormalizing. Latent-sized: drawn for the whole clip.
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = torch.lerp(latents, noise, options.decode_noise_scale)
        decode_timestep = torch.full_like(decode_timestep, options.decode_timestep)
    return decode_in_tiles(
        components.vae_decoder,
        denormalize(latents, geometry),
        decode_timestep,
        options.tile_latent_frames,
        options.overlap_latent_frames,
        geometry.temporal_compression,
    )


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Video [1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3], truncated as upstream inference.py does
    (`(video * 255).astype(np.uint8)`; diffusers' VideoProcessor rounds, half a level brighter). Generated
    frames only: decoded inputs keep contract/frames.py's rounding, the exact inverse of `unit_from_uint8`."""
    # In place: at 720p x 89 frames each float copy of the video is ~1 GB.
    pixels = video[0].float().div_(2).add_(0.5).clamp_(0, 1).mul_(255).floor_()
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()
