"""One export recipe per component: the declaration (service/contract/components.py) plus what export needs.

Each `ExportableComponent` subclass is a contract declaration (tensor names, dtypes, dynamic axes, shape
ranges) with the recipe added: which torch module implements it (service/models/component_modules.py,
the same adapters the in-process engine runs), what a small sample input looks like, the sizes the parity
checks run at and temporary model settings the exporter needs. The ONNX export, the parity check, the
TensorRT build and the config.pbtxt files read these; nothing in the service imports this module.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from export.shapes import (
    EXPORT_SAMPLE,
    FP32_TOLERANCE,
    PARITY_SAMPLES,
    ApiRanges,
    AxisRange,
    SampleSize,
    TensorDecl,
    TensorType,
    Tolerance,
)
from service.contract.components import (
    ComponentDecl,
    LatentUpsamplerDecl,
    TextEncoderDecl,
    TransformerDecl,
    VaeDecoderDecl,
    VaeEncoderDecl,
)
from service.contract.frames import pixel_frame_count
from service.contract.geometry import ModelGeometry
from service.models.component_modules import component_adapter, component_module

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
    "Tolerance",
]

ModelsT = TypeVar("ModelsT")  # the loaded models of the component's family


class Family(StrEnum):
    """Which models a component comes from: `[model]`'s LTX-Video or `[ltx2]`'s LTX-2.3."""

    LTX_VIDEO = "ltx-video"
    LTX2 = "ltx2"


class ExportableComponent(ComponentDecl, Generic[ModelsT]):
    """One component's declaration and recipe; drives its ONNX export, parity check, TensorRT profile and
    config. `ModelsT` is its family's loaded models (LoadedModels, Ltx2Models)."""

    family: ClassVar[Family] = Family.LTX_VIDEO
    parity_samples: ClassVar[tuple[SampleSize, ...]] = PARITY_SAMPLES  # sizes the parity checks run at
    tolerance: ClassVar[Tolerance] = FP32_TOLERANCE  # of the fp32 graph against torch

    @property
    def exported_inputs(self) -> tuple[TensorDecl, ...]:
        """The inputs of the exported graph (and of `sample_inputs`), in order."""
        return self.inputs

    @property
    def exported_input_names(self) -> list[str]:
        return [tensor.name for tensor in self.exported_inputs]

    @abstractmethod
    def module(self, models: ModelsT) -> nn.Module:
        """What is exported: the adapter with the declared fp32 I/O around a model of any float dtype."""

    @abstractmethod
    def sample_inputs(self, models: ModelsT, size: SampleSize) -> tuple[torch.Tensor, ...]:
        """Valid inputs of `size` (seeded), in `exported_inputs` order and dtypes."""

    @contextlib.contextmanager
    def export_context(self, models: ModelsT) -> Iterator[None]:
        """Temporary model settings the exporter needs (restored afterwards)."""
        yield


class LtxVideoComponent(ExportableComponent["LoadedModels"]):
    """An LTX-Video component's recipe, on the adapters of service/models/component_modules.py."""

    def adapter(self, models: LoadedModels) -> nn.Module:
        """The torch module of service/models/torch_components.py that implements this component."""
        return component_adapter(self, models)

    def module(self, models: LoadedModels) -> nn.Module:
        return component_module(self, models)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


class TextEncoderComponent(TextEncoderDecl, LtxVideoComponent):
    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        from service.models.torch_components import tokenize

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


class TransformerComponent(TransformerDecl, LtxVideoComponent):
    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        from service.pipelines.latents import LatentShape, video_coords

        geometry, generator = self.geometry, _generator()
        shape = LatentShape(size.batch, geometry.latent_channels, *size[1:])
        tokens = shape.num_tokens // (geometry.patch_size**2 * geometry.patch_size_t)
        length = geometry.text_max_length
        mask = torch.zeros(size.batch, length, dtype=torch.int64)
        mask[:, : length // 4] = 1  # a short prompt: padding tokens are masked out
        return (
            torch.randn(size.batch, tokens, self.token_width, generator=generator),
            torch.rand(size.batch, tokens, generator=generator),
            video_coords(shape, geometry, 25.0, torch.device("cpu")),
            torch.randn(size.batch, length, geometry.text_dim, generator=generator),
            mask,
            # Every other block skipped, the last row perturbed: parity covers both kinds of rows.
            torch.arange(geometry.transformer_blocks) % 2 == 0,
            torch.arange(size.batch) == size.batch - 1,
        )


class VaeDecoderComponent(VaeDecoderDecl, LtxVideoComponent):
    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        latents = torch.randn(size.batch, self.geometry.latent_channels, *size[1:], generator=_generator())
        return latents, torch.full((size.batch,), 0.05)


class VaeEncoderComponent(VaeEncoderDecl, LtxVideoComponent):
    parity_samples = (*PARITY_SAMPLES, SampleSize(batch=1, latent_frames=1, latent_height=2, latent_width=3))

    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        geometry = self.geometry
        frames = pixel_frame_count(size.latent_frames, geometry.temporal_compression)
        height = size.latent_height * geometry.spatial_compression
        width = size.latent_width * geometry.spatial_compression
        video = torch.rand(size.batch, 3, frames, height, width, generator=_generator()) * 2 - 1
        return (video,)


class LatentUpsamplerComponent(LatentUpsamplerDecl, LtxVideoComponent):
    def sample_inputs(self, models: LoadedModels, size: SampleSize) -> tuple[torch.Tensor, ...]:
        latents = torch.randn(size.batch, self.geometry.latent_channels, *size[1:], generator=_generator())
        return (latents,)


COMPONENT_TYPES: dict[str, type[LtxVideoComponent]] = {
    cls.name: cls
    for cls in (
        TextEncoderComponent,
        TransformerComponent,
        VaeDecoderComponent,
        VaeEncoderComponent,
        LatentUpsamplerComponent,
    )
}
# Every component: the four LTX-Video endpoints (service/contract/components.py DEFAULT_COMPONENTS).
DEFAULT_COMPONENTS = tuple(COMPONENT_TYPES)


def declare(
    names: tuple[str, ...] | list[str], geometry: ModelGeometry, api: ApiRanges | None = None
) -> list[ExportableComponent[Any]]:
    """The declarations and recipes of the LTX-Video components `names` for a model of `geometry`."""
    unknown = [name for name in names if name not in COMPONENT_TYPES]
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {sorted(COMPONENT_TYPES)}")
    return [COMPONENT_TYPES[name](geometry, api) for name in names]
