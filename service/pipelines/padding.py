"""The generated frame is the output frame padded up to the latent grid (service/domain/geometry.py):
conditioning media are padded with black around it, as upstream `inference.py` pads them (`F.pad(...,
value=-1)`), and the decoded frames are cropped back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch.nn.functional as F

from service.domain.geometry import FrameSize, LatentGridPadding, padded_to_latent_grid
from service.pipelines.conditioning import ConditioningMedia


def generated_size(output: FrameSize) -> FrameSize:
    return padded_to_latent_grid(output)


def pad_media(media: ConditioningMedia, output: FrameSize) -> ConditioningMedia:
    """`media` at the output size -> at the generated size, black (-1) in the padding."""
    padding = LatentGridPadding.of(output)
    if padding.is_none or tuple(media.pixels.shape[-2:]) != (output.height, output.width):
        return media
    pixels = F.pad(media.pixels, (padding.left, padding.right, padding.top, padding.bottom), value=-1.0)
    return replace(media, pixels=pixels)


def crop_frames(frames: np.ndarray, output: FrameSize) -> np.ndarray:
    """uint8 frames [F, H, W, 3] at the generated size -> at the output size (the padding cut off)."""
    padding = LatentGridPadding.of(output)
    if padding.is_none or frames.shape[1:3] == (output.height, output.width):
        return frames
    return frames[:, padding.top : padding.top + output.height, padding.left : padding.left + output.width]
