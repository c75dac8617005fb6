"""Latent shapes, packing, normalization and rope coordinates for LTX-Video.

The tensor math is diffusers' own (the static helpers of `LTXPipeline` and `LTXConditionPipeline`); this
module only names the shapes and ties the helpers to a `ModelGeometry`, so the in-process and Triton
bindings of the pipeline share one implementation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline
from diffusers.utils.torch_utils import randn_tensor

from service.contract.frames import is_legal_frame_count, latent_frame_count
from service.pipelines.components import ModelGeometry


class LatentShape(NamedTuple):
    """Latent grid of one clip: [batch, channels, frames, height, width] once unpacked."""

    batch: int
    channels: int
    frames: int
    height: int
    width: int

    @property
    def num_tokens(self) -> int:
        return self.frames * self.height * self.width


def latent_shape(
    geometry: ModelGeometry, batch: int, num_frames: int, height: int, width: int
) -> LatentShape:
    """Latent grid for a clip of `num_frames` (already legal) frames of `height` x `width` pixels."""
    if height % geometry.spatial_compression or width % geometry.spatial_compression:
        raise ValueError(
            f"height and width must be multiples of {geometry.spatial_compression}, got {height}x{width}"
        )
    if not is_legal_frame_count(num_frames, geometry.temporal_compression):
        raise ValueError(f"num_frames must be {geometry.temporal_compression}k+1, got {num_frames}")
    return LatentShape(
        batch=batch,
        channels=geometry.latent_channels,
        frames=latent_frame_count(num_frames, geometry.temporal_compression),
        height=height // geometry.spatial_compression,
        width=width // geometry.spatial_compression,
    )


def initial_noise(shape: LatentShape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The starting noise of a latent grid, [B, C, F, H, W] float32, drawn as upstream draws it.

    Lightricks' `LTXVideoPipeline.prepare_latents` draws `randn((b, f * h * w, c))` and rearranges it
    `b (f h w) c -> b c f h w` ("for backward compatibility, generate in the patchified shape"), so the
    same seed gives upstream's noise. diffusers draws `randn((b, c, f, h, w))` instead: the same
    distribution, different values for a seed.
    """
    batch, channels, frames, height, width = shape
    tokens = randn_tensor(
        (batch, frames * height * width, channels), generator=generator, device=device, dtype=torch.float32
    )
    return tokens.reshape(batch, frames, height, width, channels).permute(0, 4, 1, 2, 3).contiguous()


def pack(latents: torch.Tensor, geometry: ModelGeometry) -> torch.Tensor:
    """[B, C, F, H, W] -> tokens [B, N, C * patch volume]."""
    return LTXPipeline._pack_latents(latents, geometry.patch_size, geometry.patch_size_t)


def unpack(tokens: torch.Tensor, shape: LatentShape, geometry: ModelGeometry) -> torch.Tensor:
    """Tokens [B, N, D] -> [B, C, F, H, W]; the inverse of `pack`."""
    return LTXPipeline._unpack_latents(
        tokens,
        shape.frames // geometry.patch_size_t,
        shape.height // geometry.patch_size,
        shape.width // geometry.patch_size,
        geometry.patch_size,
        geometry.patch_size_t,
    )


def denormalize(latents: torch.Tensor, geometry: ModelGeometry) -> torch.Tensor:
    """Undo the VAE's per-channel latent normalization before decoding."""
    return LTXPipeline._denormalize_latents(
        latents,
        torch.tensor(geometry.latents_mean),
        torch.tensor(geometry.latents_std),
        geometry.scaling_factor,
    )


def normalize(latents: torch.Tensor, geometry: ModelGeometry) -> torch.Tensor:
    """Per-channel latent normalization after encoding (the transformer works on normalized latents)."""
    return LTXPipeline._normalize_latents(
        latents,
        torch.tensor(geometry.latents_mean),
        torch.tensor(geometry.latents_std),
        geometry.scaling_factor,
    )


def video_coords(
    shape: LatentShape, geometry: ModelGeometry, frame_rate: float, device: torch.device
) -> torch.Tensor:
    """Rope coordinates [B, 3, N] of each token: pixel positions, time in seconds.

    As LTXConditionPipeline builds them: latent indices scaled by the VAE compression, the first latent
    frame at pixel frame 0 (causal VAE: latent frame k covers pixel frames 8k-7..8k), time divided by the
    frame rate.
    """
    ids = LTXConditionPipeline._prepare_video_ids(
        shape.batch,
        shape.frames,
        shape.height,
        shape.width,
        patch_size=geometry.patch_size,
        patch_size_t=geometry.patch_size_t,
        device=device,
    )
    coords = LTXConditionPipeline._scale_video_ids(
        ids,
        scale_factor=geometry.spatial_compression,
        scale_factor_t=geometry.temporal_compression,
        frame_index=0,
        device=device,
    ).float()
    coords[:, 0] = coords[:, 0] * (1.0 / frame_rate)
    return coords
