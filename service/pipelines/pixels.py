"""Decoded media pixels back to frames: the inverse of the decoders' pixel rule (x / 127.5 - 1)."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_frames(pixels: torch.Tensor) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3]; exact inverse of the decoders' x / 127.5 - 1."""
    scaled = ((pixels.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return scaled.permute(1, 2, 3, 0).contiguous().cpu().numpy()
