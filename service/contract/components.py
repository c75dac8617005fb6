"""One declaration per component model: its tensors, optional-input defaults and shape ranges.

Each `ComponentDecl` states once what its graph takes and returns, and the min/opt/max shape of every
input a client request can cause (from `ApiRanges`). The ONNX export and TensorRT build (`export/`, which
adds the recipe: torch adapter, sample inputs, parity sizes), the config.pbtxt files, the torch component
models that Triton runs on the CPU and the BLS bindings inside `ltx_pipeline` all read these declarations;
nothing else spells a component tensor name.

Tensor names (the pipeline's component Protocols, service/pipelines/components.py, speak the same):
  text_encoder:     input_ids [B, L] int64, attention_mask [B, L] int64 -> text_embeds [B, L, D]
  transformer:      hidden_states [B, N, C], timestep [B, N], video_coords [B, 3, N],
                    encoder_hidden_states [B, L, D], encoder_attention_mask [B, L]
                    [, stg_skip_blocks [num_blocks] bool, stg_rows [B] bool] -> velocity [B, N, C]
  vae_decoder:      latents [B, C, f, h, w] (denormalized), decode_timestep [B] -> video [B, 3, F, H, W]
  vae_encoder:      video [B, 3, F, H, W] in [-1, 1] -> latents [B, C, f, h, w] (not normalized)
  latent_upsampler: latents [B, C, f, h, w] -> upsampled_latents [B, C, f, 2h, 2w] (both denormalized)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from service.contract.geometry import ModelGeometry
from service.contract.ranges import ApiRanges
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

if TYPE_CHECKING:  # annotations only: the contract imports no torch at run time
    import torch

# The transformer's optional STG inputs (TransformerDecl).
STG_SKIP_BLOCKS = "stg_skip_blocks"
STG_ROWS = "stg_rows"


@dataclass(frozen=True, eq=False)
class Perturbation:
    """Spatio-temporal guidance (STG): self-attention of `skip_blocks` perturbed for the rows in `rows`.

    What the transformer's two optional STG inputs carry: `stg_skip_blocks` marks `skip_blocks`,
    `stg_rows` is `rows`."""

    skip_blocks: tuple[int, ...]  # transformer block indices, each in [0, num_blocks)
    rows: torch.Tensor  # bool [B]: the batch rows of the perturbed pass; other rows are left exact


class ComponentDecl(ABC):
    """One component model's tensors and shape ranges."""

    name: ClassVar[str]  # Triton model name, ONNX/plan file stem
    batch_range: ClassVar[AxisRange | None] = None  # overrides ApiRanges.prompts for this component

    def __init__(self, geometry: ModelGeometry, api: ApiRanges | None = None) -> None:
        self.geometry = geometry
        self.api = api or ApiRanges()

    @property
    @abstractmethod
    def inputs(self) -> tuple[TensorDecl, ...]: ...

    @property
    @abstractmethod
    def outputs(self) -> tuple[TensorDecl, ...]: ...

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]

    def input(self, name: str) -> TensorDecl:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"{self.name} has no input {name}; inputs: {self.input_names}")

    def default_shape(self, name: str, present: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """The shape of the optional input `name` when a request leaves it out: static axes as declared,
        each dynamic axis as long as the same-named axis of an input that is present (`present`: shapes)."""
        declared = self.input(name)
        if not declared.optional:
            raise ValueError(f"{self.name}: input {name} is required")
        sizes: dict[str, int] = {}
        for tensor in self.inputs:
            if tensor.name in present:
                for index, axis in tensor.dynamic_axes.items():
                    sizes.setdefault(axis, present[tensor.name][index])
        missing = [axis for axis in declared.dynamic_axes.values() if axis not in sizes]
        if missing:
            raise ValueError(f"{self.name}: no input present gives the size of {name}'s axes {missing}")
        return tuple(axis if isinstance(axis, int) else sizes[axis] for axis in declared.axes)

    def axis_ranges(self) -> dict[str, AxisRange]:
        ranges = self.api.axis_ranges(self.geometry)
        if self.batch_range is not None:
            ranges[BATCH] = self.batch_range
        return ranges

    def profile(self) -> ShapeProfile:
        """min/opt/max shape of every input, for the TensorRT optimization profile."""
        ranges = self.axis_ranges()
        profile: ShapeProfile = {}
        for tensor in self.inputs:
            bounds = [
                AxisRange(axis, axis, axis) if isinstance(axis, int) else ranges[axis] for axis in tensor.axes
            ]
            profile[tensor.name] = (
                tuple(b.min for b in bounds),
                tuple(b.opt for b in bounds),
                tuple(b.max for b in bounds),
            )
        return profile


def _latents(name: str, channels: int) -> TensorDecl:
    return TensorDecl(name, TensorType.FP32, (BATCH, channels, LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH))


def _video(name: str) -> TensorDecl:
    return TensorDecl(name, TensorType.FP32, (BATCH, 3, FRAMES, HEIGHT, WIDTH))


class TextEncoderDecl(ComponentDecl):
    name = "text_encoder"

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        length = self.geometry.text_max_length
        return (
            TensorDecl("input_ids", TensorType.INT64, (BATCH, length)),
            TensorDecl("attention_mask", TensorType.INT64, (BATCH, length)),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        geometry = self.geometry
        return (
            TensorDecl("text_embeds", TensorType.FP32, (BATCH, geometry.text_max_length, geometry.text_dim)),
        )


class TransformerDecl(ComponentDecl):
    """The denoiser, with STG as two optional inputs: `stg_skip_blocks` (bool [num_blocks], the blocks whose
    self-attention is perturbed) and `stg_rows` (bool [B], the perturbed pass's rows). Absent or all false,
    the output is the plain velocity; the graph always computes the perturbation's projections."""

    name = "transformer"
    # Up to three passes per call: unconditional, conditional and STG's perturbed one.
    batch_range = AxisRange(1, 2, 3)

    @property
    def token_width(self) -> int:
        geometry = self.geometry
        return geometry.latent_channels * geometry.patch_size**2 * geometry.patch_size_t

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        length, width = self.geometry.text_max_length, self.geometry.text_dim
        blocks = self.geometry.transformer_blocks
        return (
            TensorDecl("hidden_states", TensorType.FP32, (BATCH, TOKENS, self.token_width)),
            TensorDecl("timestep", TensorType.FP32, (BATCH, TOKENS), keeps_fp32=True),
            TensorDecl("video_coords", TensorType.FP32, (BATCH, 3, TOKENS), keeps_fp32=True),
            TensorDecl("encoder_hidden_states", TensorType.FP32, (BATCH, length, width)),
            TensorDecl("encoder_attention_mask", TensorType.INT64, (BATCH, length)),
            # Absent: no block skipped, no row perturbed.
            TensorDecl(STG_SKIP_BLOCKS, TensorType.BOOL, (blocks,), optional=True, default=False),
            TensorDecl(STG_ROWS, TensorType.BOOL, (BATCH,), optional=True, default=False),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        return (TensorDecl("velocity", TensorType.FP32, (BATCH, TOKENS, self.token_width)),)


class VaeDecoderDecl(ComponentDecl):
    name = "vae_decoder"
    batch_range = AxisRange(1, 1, 1)  # the pipeline decodes one video at a time

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        return (
            _latents("latents", self.geometry.latent_channels),
            TensorDecl("decode_timestep", TensorType.FP32, (BATCH,)),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        return (_video("video"),)


class VaeEncoderDecl(ComponentDecl):
    """Optional: needed by the conditioning endpoints, not by text to video. Encodes one condition at a
    time: an image (1 frame) or a video (8k + 1 frames)."""

    name = "vae_encoder"
    batch_range = AxisRange(1, 1, 1)

    def axis_ranges(self) -> dict[str, AxisRange]:
        ranges = super().axis_ranges()
        # An image condition is a 1-frame video: one latent frame.
        ranges[LATENT_FRAMES] = AxisRange(1, *ranges[LATENT_FRAMES][1:])
        ranges[FRAMES] = AxisRange(1, *ranges[FRAMES][1:])
        return ranges

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        return (_video("video"),)

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        return (_latents("latents", self.geometry.latent_channels),)


class LatentUpsamplerDecl(ComponentDecl):
    """Optional: the distilled endpoint's x2 latent upsampler; denormalized latents in and out."""

    name = "latent_upsampler"
    batch_range = AxisRange(1, 1, 1)

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        return (_latents("latents", self.geometry.latent_channels),)

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        channels = self.geometry.latent_channels
        axes = (BATCH, channels, LATENT_FRAMES, UPSAMPLED_LATENT_HEIGHT, UPSAMPLED_LATENT_WIDTH)
        return (TensorDecl("upsampled_latents", TensorType.FP32, axes),)


COMPONENT_DECLS: dict[str, type[ComponentDecl]] = {
    cls.name: cls
    for cls in (TextEncoderDecl, TransformerDecl, VaeDecoderDecl, VaeEncoderDecl, LatentUpsamplerDecl)
}
# Every component: the four LTX-Video endpoints. Text to video needs the first three, the conditioned
# endpoints add the VAE encoder, the distilled one the latent upsampler (each endpoint's `components`, service/engines/endpoint_pipelines.py).
DEFAULT_COMPONENTS = tuple(COMPONENT_DECLS)


def declaration(name: str, geometry: ModelGeometry, api: ApiRanges | None = None) -> ComponentDecl:
    """The declaration of component `name` for a model of `geometry`."""
    if name not in COMPONENT_DECLS:
        raise ValueError(f"unknown component {name!r}; known: {sorted(COMPONENT_DECLS)}")
    return COMPONENT_DECLS[name](geometry, api)
