"""Decoded conditioning media as the tensors `ltx_pipeline` takes, and back again.

The service fetches, decodes and checks the media (service/inputs/media.py); Triton's pipeline
model gets the result. Decoded pixels are exactly `uint8 / 127.5 - 1` (the decoders and the CRF
re-compression both produce them so), so they cross as uint8 frames, a quarter of the bytes of float32, and
come back bit for bit. Tensor names: service/contract/pipeline.py. An empty list (no conditions, or an
extension that keeps no frame) sends no tensor at all: the inputs are optional.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from service.contract import pipeline as contract
from service.contract.frames import uint8_frames
from service.media.decode import pixels_from_frames
from service.pipelines.conditioning import ConditioningMedia


def media_to_arrays(media: Sequence[ConditioningMedia]) -> dict[str, np.ndarray]:
    """The condition tensors of `media` (all at one size, as service/inputs/media.py decodes them)."""
    if not media:
        return {}
    frames = [uint8_frames(item.pixels[0]) for item in media]
    sizes = {f.shape[1:] for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"conditioning media must share one frame size to be sent, got {sorted(sizes)}")
    return {
        contract.CONDITION_FRAMES: np.concatenate(frames),
        contract.CONDITION_FRAME_COUNTS: np.array([f.shape[0] for f in frames], dtype=np.int32),
        contract.CONDITION_START_FRAMES: np.array([item.start_frame for item in media], dtype=np.int32),
        # float64: the strengths must reach the pipeline as the same Python floats (lerp, 1 - strength).
        contract.CONDITION_STRENGTHS: np.array([item.strength for item in media], dtype=np.float64),
    }


def media_from_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[ConditioningMedia, ...]:
    """`media_to_arrays` undone; no condition tensors give no media."""
    present = [name for name in contract.CONDITION_INPUTS if arrays.get(name) is not None]
    if not present:
        return ()
    if len(present) != len(contract.CONDITION_INPUTS):
        missing = sorted(set(contract.CONDITION_INPUTS) - set(present))
        raise ValueError(f"condition tensors come together; missing {missing}")
    frames = arrays[contract.CONDITION_FRAMES]
    counts = [int(count) for count in arrays[contract.CONDITION_FRAME_COUNTS].reshape(-1)]
    starts = arrays[contract.CONDITION_START_FRAMES].reshape(-1)
    strengths = arrays[contract.CONDITION_STRENGTHS].reshape(-1)
    if not len(counts) == len(starts) == len(strengths) or sum(counts) != frames.shape[0] or min(counts) < 1:
        raise ValueError(
            f"{len(counts)} frame counts summing to {sum(counts)}, {len(starts)} start frames and "
            f"{len(strengths)} strengths do not describe {frames.shape[0]} condition frames"
        )
    offsets = np.cumsum([0, *counts])
    return tuple(
        ConditioningMedia(
            pixels=pixels_from_frames(frames[offsets[i] : offsets[i + 1]])[None],
            start_frame=int(starts[i]),
            strength=float(strengths[i]),
        )
        for i in range(len(counts))
    )


def kept_to_arrays(kept_pixels: torch.Tensor) -> dict[str, np.ndarray]:
    """Extend's kept input frames ([3, K, H, W]); none for K = 0."""
    if kept_pixels.shape[1] == 0:
        return {}
    return {contract.KEPT_FRAMES: uint8_frames(kept_pixels)}


def kept_from_arrays(arrays: Mapping[str, np.ndarray], width: int, height: int) -> torch.Tensor:
    """`kept_to_arrays` undone: [3, K, height, width], K = 0 when no frames came."""
    frames = arrays.get(contract.KEPT_FRAMES)
    if frames is None:
        return torch.empty(3, 0, height, width)
    if tuple(frames.shape[1:]) != (height, width, 3):
        raise ValueError(
            f"{contract.KEPT_FRAMES} {tuple(frames.shape)} is not at the spec's {width}x{height}"
        )
    return pixels_from_frames(frames)
