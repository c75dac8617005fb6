"""Tensor declarations: the vocabulary of the component declarations (components.py).

`TensorDecl` names a graph input or output with its dtype and axes (static sizes or dynamic axis names);
the dynamic axis names are shared by ONNX graphs (dim_param), TensorRT profiles and config.pbtxt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class TensorType(StrEnum):
    FP32 = "FP32"
    INT64 = "INT64"
    BOOL = "BOOL"

    @property
    def triton(self) -> str:
        return f"TYPE_{self.value}"


@dataclass(frozen=True)
class TensorDecl:
    """A graph input or output: `axes` holds a static size (int) or a dynamic axis name (str) per dim."""

    name: str
    dtype: TensorType
    axes: tuple[int | str, ...]
    # Float inputs are cast to the model's dtype, as the torch bindings do, except these (kept fp32 there).
    keeps_fp32: bool = False
    # A Python-backend model fills an absent optional input with `default` in every element, its dynamic
    # axes sized like the same-named axes of the inputs present (`ComponentDecl.default_shape`); graphs
    # and TensorRT plans always take every input.
    optional: bool = False
    default: float | bool | None = None

    def __post_init__(self) -> None:
        if self.optional and self.default is None:
            raise ValueError(f"optional input {self.name} needs a default")

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


# Dynamic axis names, shared by ONNX graphs (dim_param), profiles and the declarations.
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

ShapeProfile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
