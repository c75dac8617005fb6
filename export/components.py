"""One declaration per exportable component: tensor names, dtypes, dynamic axes, sample inputs, shape ranges.

Each `ExportableComponent` subclass states once what its graph takes and returns (the names of
`service.pipelines.components`), which torch module implements it (the `*Adapter` modules of
`service.pipelines.torch_components`, the same code the in-process engine runs), what a small sample input
looks like, and the min/opt/max shape of every input a client request can cause. The ONNX export, the
parity check, the TensorRT optimization profiles, the config.pbtxt files and the BLS bindings inside
Triton all read these declarations; nothing else spells a component tensor name.

Shape ranges come from the API (`ApiRanges`): 480p/720p frames at 16:9, 1:1 and 9:16, 9..257 frames
for the dev models, and two prompts per call (negative and positive, for classifier-free guidance); the
transformer takes up to three passes per call (with STG's perturbed pass). `ApiRanges.serving` widens the
ranges for the conditioned endpoints (keyframe tokens) and the distilled one (two-pass sizes).
Transformer tokens = (H/32)(W/32)((F-1)/8+1) with the model's compression factors.

Only torch is imported here (no onnx, tensorrt or Triton), so the Triton models can import it.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from export.shapes import (
    BATCH,
    EXPORT_SAMPLE,
    FRAMES,
    HEIGHT,
    LATENT_FRAMES,
    LATENT_HEIGHT,
    LATENT_WIDTH,
    PARITY_SAMPLES,
    TOKENS,
    UPSAMPLED_LATENT_HEIGHT,
    UPSAMPLED_LATENT_WIDTH,
    WIDTH,
    ApiRanges,
    AxisRange,
    SampleSize,
    ShapeProfile,
    TensorDecl,
    TensorType,
)
from service.pipelines.components import ModelGeometry

if TYPE_CHECKING:
    from service.models.loading import LoadedModels

__all__ = [  # the shapes vocabulary, re-exported: callers import declarations from one place
    "EXPORT_SAMPLE",
    "PARITY_SAMPLES",
    "ApiRanges",
    "AxisRange",
    "SampleSize",
    "TensorDecl",
    "TensorType",
]


# The transformer's optional STG inputs (TransformerComponent).
STG_SKIP_BLOCKS = "stg_skip_blocks"
STG_ROWS = "stg_rows"


class ExportableComponent(ABC):
    """One component's declaration; drives its ONNX export, parity check, TensorRT profile and config."""

    name: ClassVar[str]  # Triton model name, ONNX/plan file stem
    batch_range: ClassVar[AxisRange | None] = None  # overrides ApiRanges.prompts for this component
    parity_samples: ClassVar[tuple[SampleSize, ...]] = PARITY_SAMPLES  # sizes the parity checks run at

    def __init__(self, geometry: ModelGeometry, api: ApiRanges | None = None) -> None:
        self.geometry = geometry
        self.api = api or ApiRanges()

    @property
    @abstractmethod
    def inputs(self) -> tuple[TensorDecl, ...]: ...

    @property
    @abstractmethod
    def outputs(self) -> tuple[TensorDecl, ...]: ...

    @abstractmethod
    def adapter(self, models: LoadedModels) -> nn.Module:
        """The torch module of `service.pipelines.torch_components` that implements this component."""

    def module(self, models: LoadedModels) -> nn.Module:
        """What is exported: the adapter with the declared fp32 I/O around a model of any float dtype."""
        return DeclaredIO(self.adapter(models), self.inputs)

    @abstractmethod
    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        """Valid inputs of `size` (seeded), in `inputs` order and dtypes."""

    @contextlib.contextmanager
    def export_context(self, models: LoadedModels) -> Iterator[None]:
        """Temporary model settings the exporter needs (restored afterwards)."""
        yield

    def default_input(self, name: str, present: dict[str, torch.Tensor]) -> torch.Tensor:
        """The value of the optional input `name` when a request leaves it out (`present`: the others)."""
        raise ValueError(f"{self.name}: input {name} is required")

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]

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


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


class DeclaredIO(nn.Module):
    """Casts float inputs to the model's dtype (fp32 for `keeps_fp32` ones) and the output to fp32.

    So a bf16 model exports a bf16 graph (what TensorRT's strongly typed networks build from) whose inputs
    and outputs stay the declared fp32, the same casts the torch bindings make in process.
    """

    def __init__(self, adapter: nn.Module, inputs: tuple[TensorDecl, ...]) -> None:
        super().__init__()
        self.adapter = adapter
        self.model_dtype = next(adapter.parameters()).dtype
        self.cast_to_model = [tensor.dtype is TensorType.FP32 and not tensor.keeps_fp32 for tensor in inputs]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        cast = [x.to(self.model_dtype) if to_model else x for x, to_model in zip(inputs, self.cast_to_model)]
        return self.adapter(*cast).float()


class TextEncoderComponent(ExportableComponent):
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

    def adapter(self, models: LoadedModels) -> nn.Module:
        from service.pipelines.torch_components import TextEncoderAdapter

        return TextEncoderAdapter(models.text_encoder).eval()

    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        from service.pipelines.torch_components import tokenize

        prompts = ["a red fox runs through fresh snow at dawn", "blurry, low quality"][: size.batch]
        tokens = tokenize(models.tokenizer, prompts, self.geometry.text_max_length)
        return tokens["input_ids"], tokens["attention_mask"]

    @contextlib.contextmanager
    def export_context(self, models: LoadedModels) -> Iterator[None]:
        # transformers' SDPA attention for T5 trips the dynamo exporter's decomposition (a view of a
        # transposed tensor); eager attention is the same math and exports cleanly.
        encoder = models.text_encoder
        previous = encoder.config._attn_implementation
        encoder.set_attn_implementation("eager")
        try:
            yield
        finally:
            encoder.set_attn_implementation(previous)


class TransformerComponent(ExportableComponent):
    """The denoiser, with STG as two optional inputs: `stg_skip_blocks` (bool [num_blocks], the blocks whose
    self-attention is perturbed) and `stg_rows` (bool [B], the perturbed pass's rows). Absent or all false,
    the output is the plain velocity; the graph always computes the perturbation's projections."""

    name = "transformer"
    # Up to three passes per call: unconditional, conditional and STG's perturbed one.
    batch_range = AxisRange(1, 2, 3)

    @property
    def _token_width(self) -> int:
        geometry = self.geometry
        return geometry.latent_channels * geometry.patch_size**2 * geometry.patch_size_t

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        length, width = self.geometry.text_max_length, self.geometry.text_dim
        return (
            TensorDecl("hidden_states", TensorType.FP32, (BATCH, TOKENS, self._token_width)),
            TensorDecl("timestep", TensorType.FP32, (BATCH, TOKENS), keeps_fp32=True),
            TensorDecl("video_coords", TensorType.FP32, (BATCH, 3, TOKENS), keeps_fp32=True),
            TensorDecl("encoder_hidden_states", TensorType.FP32, (BATCH, length, width)),
            TensorDecl("encoder_attention_mask", TensorType.INT64, (BATCH, length)),
            TensorDecl(STG_SKIP_BLOCKS, TensorType.BOOL, (self.geometry.transformer_blocks,), optional=True),
            TensorDecl(STG_ROWS, TensorType.BOOL, (BATCH,), optional=True),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        return (TensorDecl("velocity", TensorType.FP32, (BATCH, TOKENS, self._token_width)),)

    def default_input(self, name: str, present: dict[str, torch.Tensor]) -> torch.Tensor:
        # No perturbation: no block skipped, no row perturbed.
        if name == STG_SKIP_BLOCKS:
            return torch.zeros(self.geometry.transformer_blocks, dtype=torch.bool)
        if name == STG_ROWS:
            return torch.zeros(present["hidden_states"].shape[0], dtype=torch.bool)
        return super().default_input(name, present)

    def adapter(self, models: LoadedModels) -> nn.Module:
        from service.pipelines.torch_components import TransformerAdapter

        return TransformerAdapter(models.transformer).eval()

    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        from service.pipelines.latents import LatentShape, video_coords

        geometry, generator = self.geometry, _generator()
        shape = LatentShape(size.batch, geometry.latent_channels, *size[1:])
        tokens = shape.num_tokens // (geometry.patch_size**2 * geometry.patch_size_t)
        length = geometry.text_max_length
        mask = torch.zeros(size.batch, length, dtype=torch.int64)
        mask[:, : length // 4] = 1  # a short prompt: padding tokens are masked out
        return (
            torch.randn(size.batch, tokens, self._token_width, generator=generator),
            torch.rand(size.batch, tokens, generator=generator),
            video_coords(shape, geometry, 25.0, torch.device("cpu")),
            torch.randn(size.batch, length, geometry.text_dim, generator=generator),
            mask,
            # Every other block skipped, the last row perturbed: parity covers both kinds of rows.
            torch.arange(geometry.transformer_blocks) % 2 == 0,
            torch.arange(size.batch) == size.batch - 1,
        )


class VaeDecoderComponent(ExportableComponent):
    name = "vae_decoder"
    batch_range = AxisRange(1, 1, 1)  # the pipeline decodes one video at a time

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        channels = self.geometry.latent_channels
        return (
            TensorDecl(
                "latents", TensorType.FP32, (BATCH, channels, LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH)
            ),
            TensorDecl("decode_timestep", TensorType.FP32, (BATCH,)),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        return (TensorDecl("video", TensorType.FP32, (BATCH, 3, FRAMES, HEIGHT, WIDTH)),)

    def adapter(self, models: LoadedModels) -> nn.Module:
        from service.pipelines.torch_components import VaeDecoderAdapter

        return VaeDecoderAdapter(models.vae).eval()

    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        latents = torch.randn(size.batch, self.geometry.latent_channels, *size[1:], generator=_generator())
        return latents, torch.full((size.batch,), 0.05)


class VaeEncoderComponent(ExportableComponent):
    """Optional: needed by the conditioning endpoints, not by text to video. Encodes one condition at a
    time: an image (1 frame) or a video (8k + 1 frames)."""

    name = "vae_encoder"
    batch_range = AxisRange(1, 1, 1)
    parity_samples = (*PARITY_SAMPLES, SampleSize(batch=1, latent_frames=1, latent_height=2, latent_width=3))

    def axis_ranges(self) -> dict[str, AxisRange]:
        ranges = super().axis_ranges()
        # An image condition is a 1-frame video: one latent frame.
        ranges[LATENT_FRAMES] = AxisRange(1, *ranges[LATENT_FRAMES][1:])
        ranges[FRAMES] = AxisRange(1, *ranges[FRAMES][1:])
        return ranges

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        return (TensorDecl("video", TensorType.FP32, (BATCH, 3, FRAMES, HEIGHT, WIDTH)),)

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        channels = self.geometry.latent_channels
        return (
            TensorDecl(
                "latents", TensorType.FP32, (BATCH, channels, LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH)
            ),
        )

    def adapter(self, models: LoadedModels) -> nn.Module:
        from service.pipelines.torch_components import VaeEncoderAdapter

        return VaeEncoderAdapter(models.vae).eval()

    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        geometry = self.geometry
        frames = (size.latent_frames - 1) * geometry.temporal_compression + 1
        height = size.latent_height * geometry.spatial_compression
        width = size.latent_width * geometry.spatial_compression
        video = torch.rand(size.batch, 3, frames, height, width, generator=_generator()) * 2 - 1
        return (video,)


class LatentUpsamplerComponent(ExportableComponent):
    """Optional: the distilled endpoint's x2 latent upsampler; denormalized latents in and out."""

    name = "latent_upsampler"
    batch_range = AxisRange(1, 1, 1)

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        channels = self.geometry.latent_channels
        return (
            TensorDecl(
                "latents", TensorType.FP32, (BATCH, channels, LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH)
            ),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        channels = self.geometry.latent_channels
        axes = (BATCH, channels, LATENT_FRAMES, UPSAMPLED_LATENT_HEIGHT, UPSAMPLED_LATENT_WIDTH)
        return (TensorDecl("upsampled_latents", TensorType.FP32, axes),)

    def adapter(self, models: LoadedModels) -> nn.Module:
        from service.pipelines.torch_components import LatentUpsamplerAdapter

        if models.upsampler is None:
            raise ValueError("latent_upsampler: the model has no latent upsampler (model.upsampler_dir)")
        return LatentUpsamplerAdapter(models.upsampler).eval()

    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        latents = torch.randn(size.batch, self.geometry.latent_channels, *size[1:], generator=_generator())
        return (latents,)


COMPONENT_TYPES: dict[str, type[ExportableComponent]] = {
    cls.name: cls
    for cls in (
        TextEncoderComponent,
        TransformerComponent,
        VaeDecoderComponent,
        VaeEncoderComponent,
        LatentUpsamplerComponent,
    )
}
# Every component: the four LTX-Video endpoints. Text to video needs the first three, the conditioned
# endpoints add the VAE encoder, the distilled one the latent upsampler (triton_contract.ENDPOINT_COMPONENTS).
DEFAULT_COMPONENTS = tuple(COMPONENT_TYPES)


def declare(
    names: tuple[str, ...] | list[str], geometry: ModelGeometry, api: ApiRanges | None = None
) -> list[ExportableComponent]:
    """The declarations of the components `names` for a model of `geometry`."""
    unknown = [name for name in names if name not in COMPONENT_TYPES]
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {sorted(COMPONENT_TYPES)}")
    return [COMPONENT_TYPES[name](geometry, api) for name in names]
