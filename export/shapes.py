"""Sample sizes: the recipe half of the shapes (the declarations and ranges are the contract's).

`SampleSize` is the size of a sample input the exporter traces and the parity check runs; the tensor
vocabulary (TensorDecl, AxisRange, axis names) and the API's ranges live in service/contract/ and are
re-exported here for the export modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from service.contract.ranges import CONDITIONING_KEYFRAME_LATENT_FRAMES, PROMPTS_PER_CALL, ApiRanges
from service.contract.tensors import (
    BATCH,
    FRAMES,
    HEIGHT,
    LATENT_FRAMES,
    LATENT_HEIGHT,
    LATENT_WIDTH,
    TOKENS,
    UPSAMPLED_LATENT_HEIGHT,
    UPSAMPLED_LATENT_WIDTH,
    WIDTH,
    AxisRange,
    ShapeProfile,
    TensorDecl,
    TensorType,
)

__all__ = [
    "BATCH",
    "CONDITIONING_KEYFRAME_LATENT_FRAMES",
    "EXPORT_SAMPLE",
    "FRAMES",
    "HEIGHT",
    "LATENT_FRAMES",
    "LATENT_HEIGHT",
    "LATENT_WIDTH",
    "PARITY_SAMPLES",
    "PROMPTS_PER_CALL",
    "TOKENS",
    "UPSAMPLED_LATENT_HEIGHT",
    "UPSAMPLED_LATENT_WIDTH",
    "WIDTH",
    "ApiRanges",
    "AxisRange",
    "SampleSize",
    "ShapeProfile",
    "TensorDecl",
    "TensorType",
    "Tolerance",
]


class SampleSize(NamedTuple):
    """Sizes of a sample input, in latent units. Distinct values per axis keep the tracer from tying them."""

    batch: int
    latent_frames: int
    latent_height: int
    latent_width: int


EXPORT_SAMPLE = SampleSize(batch=2, latent_frames=3, latent_height=4, latent_width=5)
# Parity runs the graph at the export sample and at a second size, which proves the axes are dynamic.
PARITY_SAMPLES = (EXPORT_SAMPLE, SampleSize(batch=1, latent_frames=2, latent_height=3, latent_width=2))


@dataclass(frozen=True)
class Tolerance:
    """A parity check passes when max|onnx - torch| <= atol + rtol * max|torch| (export/parity.py)."""

    atol: float
    rtol: float


# fp32 graphs on CPU: the exporter's fused and reordered ops differ from torch by float rounding only
# (observed ~1e-5 on outputs of scale ~1); anything near 1e-3 of the output's scale is a real difference.
FP32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
