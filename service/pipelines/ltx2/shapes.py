"""The latent grid of one LTX-2.3 stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatentShape:
    frames: int
    height: int
    width: int
    audio_frames: int
    fps: float  # the frame rate the RoPE time axis is conditioned on
