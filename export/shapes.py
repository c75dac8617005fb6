"""Tensor declarations and shape ranges: the vocabulary of export/components.py.

`TensorDecl` names a graph input or output with its dtype and axes (static sizes or dynamic axis names);
`ApiRanges` turns what the API lets clients ask for into the min/opt/max of every dynamic axis, which the
TensorRT optimization profiles use. Only torch is imported (the Triton models import this too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import torch

from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    AspectRatio,
    FrameSize,
    Resolution,
    frame_size,
    multiscale_sizes,
    padded_to_latent_grid,
)
from service.pipelines.components import ModelGeometry


class TensorType(StrEnum):
    FP32 = "FP32"
    INT64 = "INT64"
    BOOL = "BOOL"

    @property
    def triton(self) -> str:
        return f"TYPE_{self.value}"

    @property
    def torch(self) -> torch.dtype:
        return _TORCH_DTYPES[self]


_TORCH_DTYPES = {TensorType.FP32: torch.float32, TensorType.INT64: torch.int64, TensorType.BOOL: torch.bool}


@dataclass(frozen=True)
class TensorDecl:
    """A graph input or output: `axes` holds a static size (int) or a dynamic axis name (str) per dim."""

    name: str
    dtype: TensorType
    axes: tuple[int | str, ...]
    # Float inputs are cast to the model's dtype, as the torch bindings do, except these (kept fp32 there).
    keeps_fp32: bool = False
    # A Python-backend model fills an absent optional input with its default (ExportableComponent
    # .default_input); graphs and TensorRT plans always take every input.
    optional: bool = False

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {index: axis for index, axis in enumerate(self.axes) if isinstance(axis, str)}

    @property
    def triton_dims(self) -> tuple[int, ...]:
        """config.pbtxt dims: -1 for every dynamic axis."""
        return tuple(axis if isinstance(axis, int) else -1 for axis in self.axes)


class AxisRange(NamedTuple):
    """TensorRT optimization-profile bounds of one dynamic axis."""

    min: int
    opt: int
    max: int


# Dynamic axis names, shared by ONNX graphs (dim_param), profiles and these declarations.
BATCH = "batch"
TOKENS = "tokens"
LATENT_FRAMES = "latent_frames"
LATENT_HEIGHT = "latent_height"
LATENT_WIDTH = "latent_width"
FRAMES = "frames"
HEIGHT = "height"
WIDTH = "width"
UPSAMPLED_LATENT_HEIGHT = "upsampled_latent_height"  # outputs only: 2x their input's axis
UPSAMPLED_LATENT_WIDTH = "upsampled_latent_width"


PROMPTS_PER_CALL = AxisRange(1, 2, 2)  # one prompt, or negative + positive with guidance
# Keyframe tokens of later-frame conditions: validation's MAX_IMAGE_CONDITIONS (10) images of one latent
# frame each and MAX_VIDEO_CONDITIONS (4) videos of conditioning.DEFAULT_PREFIX_LATENT_FRAMES (2) each.
CONDITIONING_KEYFRAME_LATENT_FRAMES = 10 * 1 + 4 * 2


def _api_frame_sizes() -> tuple[FrameSize, ...]:
    """The frames the model generates for the API's sizes: each padded up to the latent grid."""
    ratios = (AspectRatio.R16_9, AspectRatio.R1_1, AspectRatio.R9_16)
    return tuple(
        padded_to_latent_grid(frame_size(resolution, ratio)) for resolution in Resolution for ratio in ratios
    )


@dataclass(frozen=True)
class ApiRanges:
    """What clients may ask for; it bounds every shape a component sees (dev text-to-video models)."""

    frame_sizes: tuple[FrameSize, ...] = field(default_factory=_api_frame_sizes)
    default_size: FrameSize = field(
        default_factory=lambda: padded_to_latent_grid(frame_size(Resolution.P720, AspectRatio.R16_9))
    )
    min_frames: int = 9
    default_frames: int = 89  # the endpoint's default `number_of_frames`: what profiles optimize for
    max_frames: int = 257
    prompts: AxisRange = PROMPTS_PER_CALL
    # Latent frames of keyframe tokens the transformer may see on top of the clip (conditioned endpoints).
    keyframe_latent_frames: int = 0
    # The distilled endpoint's first-pass (2/3) and second-pass (2x first) sizes are in range too.
    multiscale: bool = False

    @classmethod
    def serving(cls, component_names: tuple[str, ...] | list[str]) -> ApiRanges:
        """The ranges of a repository with these components: the endpoints they serve set the shapes."""
        return cls(
            keyframe_latent_frames=CONDITIONING_KEYFRAME_LATENT_FRAMES if "vae_encoder" in component_names else 0,
            multiscale="latent_upsampler" in component_names,
        )

    def served_frame_sizes(self) -> tuple[FrameSize, ...]:
        if not self.multiscale:
            return self.frame_sizes
        passes = [multiscale_sizes(size, DISTILLED_FIRST_PASS_DOWNSCALE) for size in self.frame_sizes]
        return (*self.frame_sizes, *(p.first_pass for p in passes), *(p.second_pass for p in passes))

    def axis_ranges(self, geometry: ModelGeometry) -> dict[str, AxisRange]:
        space, time = geometry.spatial_compression, geometry.temporal_compression

        def latent(frames: int) -> int:
            return (frames - 1) // time + 1

        frames = AxisRange(latent(self.min_frames), latent(self.default_frames), latent(self.max_frames))
        sizes = self.served_frame_sizes()
        heights = [size.height // space for size in sizes]
        widths = [size.width // space for size in sizes]
        height = AxisRange(min(heights), self.default_size.height // space, max(heights))
        width = AxisRange(min(widths), self.default_size.width // space, max(widths))
        cells = [size.height // space * (size.width // space) for size in sizes]
        patch = geometry.patch_size**2 * geometry.patch_size_t
        tokens = AxisRange(
            min(cells) * frames.min // patch,
            height.opt * width.opt * frames.opt // patch,
            max(cells) * (frames.max + self.keyframe_latent_frames) // patch,
        )
        return {
            BATCH: self.prompts,
            TOKENS: tokens,
            LATENT_FRAMES: frames,
            LATENT_HEIGHT: height,
            LATENT_WIDTH: width,
            FRAMES: AxisRange(*((f - 1) * time + 1 for f in frames)),
            HEIGHT: AxisRange(*(h * space for h in height)),
            WIDTH: AxisRange(*(w * space for w in width)),
        }


class SampleSize(NamedTuple):
    """Sizes of a sample input, in latent units. Distinct values per axis keep the tracer from tying them."""

    batch: int
    latent_frames: int
    latent_height: int
    latent_width: int


EXPORT_SAMPLE = SampleSize(batch=2, latent_frames=3, latent_height=4, latent_width=5)
# Parity runs the graph at the export sample and at a second size, which proves the axes are dynamic.
PARITY_SAMPLES = (EXPORT_SAMPLE, SampleSize(batch=1, latent_frames=2, latent_height=3, latent_width=2))

ShapeProfile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
