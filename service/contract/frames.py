"""The frame rule and the pixel convention: the one place each is written.

Frames. The LTX VAEs compress time 8x causally: the first pixel frame is one latent frame and every 8 more
are one more, so a model makes only `8k + 1` frames. A request for any count generates the smallest legal
count at or above it and the tail is dropped (89 -> 89, 90 -> 97, 121 -> 121, 160 -> 161); an input video
is cut to the largest legal count at or below its length (30 -> 25).

Pixels. Frames cross the service as uint8 [F, H, W, 3]; models see floats in [-1, 1]:
    unit = uint8 / 127.5 - 1        uint8 = round((unit + 1) * 127.5), clamped to 0..255
The second is the exact inverse of the first on every uint8 value, so decoded inputs can travel as uint8
(a quarter of float32's bytes) and come back bit for bit.

Only tensor methods are called here (no torch import), so the leaf stays importable without torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from service.domain.geometry import SPATIAL_COMPRESSION, FrameSize

if TYPE_CHECKING:  # annotations only: the contract imports no torch at run time
    import numpy as np
    import torch

TEMPORAL_COMPRESSION = 8  # VAE pixel frames per latent frame, after the first (all LTX models)
PIXEL_HALF_RANGE = 127.5  # uint8 255 / 2: maps 0..255 onto [-1, 1]


def is_legal_frame_count(frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> bool:
    """Whether a clip of `frames` frames is one the VAE can make (8k + 1)."""
    return frames >= 1 and (frames - 1) % temporal_compression == 0


def frames_to_generate(num_frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """The smallest legal frame count `8k + 1` >= `num_frames`; the output keeps the first `num_frames`."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    return math.ceil((num_frames - 1) / temporal_compression) * temporal_compression + 1


def legal_frames_at_most(frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """The largest legal count `8k + 1` <= `frames` (at least 1): how much of an input video is usable."""
    return max(frames - 1, 0) // temporal_compression * temporal_compression + 1


def latent_frame_count(num_frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent frames of a clip that holds `num_frames` output frames: (F - 1) / 8 + 1 of the legal F."""
    return (frames_to_generate(num_frames, temporal_compression) - 1) // temporal_compression + 1


def pixel_frame_count(latent_frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Pixel frames a clip of `latent_frames` latent frames decodes to: (f - 1) * 8 + 1."""
    return (latent_frames - 1) * temporal_compression + 1


def latent_tokens(size: FrameSize, num_frames: int) -> int:
    """Transformer tokens per clip, (H/32)(W/32)((F-1)/8+1): what memory and FLOPs scale with."""
    per_frame = (size.width // SPATIAL_COMPRESSION) * (size.height // SPATIAL_COMPRESSION)
    return per_frame * latent_frame_count(num_frames)


def unit_from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 values (as a float tensor of the wanted dtype, or uint8 for float32) -> [-1, 1]."""
    return pixels / PIXEL_HALF_RANGE - 1.0


def uint8_from_unit(unit: torch.Tensor, *, consume: bool = False) -> torch.Tensor:
    """[-1, 1] -> uint8 (the inverse of `unit_from_uint8`; out-of-range values clamp).

    With `consume` a float32 `unit` is overwritten in place instead of copied: a decoded 720p clip is
    gigabytes in float, and the caller is done with it. Pixels already stored as uint8 (conditioning
    videos are) pass through unchanged.
    """
    if not unit.dtype.is_floating_point:
        return unit
    scaled = unit.float()
    scaled = scaled.add_(1.0) if consume else scaled + 1.0
    return scaled.mul_(PIXEL_HALF_RANGE).round_().clamp_(0, 255).byte()


def uint8_frames(video: torch.Tensor, *, consume: bool = False) -> np.ndarray:
    """Video [3, F, H, W] in [-1, 1] -> uint8 frames [F, H, W, 3] (numpy, on the CPU)."""
    return uint8_from_unit(video, consume=consume).permute(1, 2, 3, 0).contiguous().cpu().numpy()
