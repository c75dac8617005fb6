"""The export recipes of the LTX-2.3 components: declarations (service/contract/ltx2_components.py) plus what
export needs.

Each recipe is its declaration with the torch module (service/models/ltx2_component_modules.py, the same
adapters the in-process bindings and the Triton CPU models run), seeded sample inputs at a `SampleSize`,
the sizes the parity checks run at, the fp32 tolerance of its parity check and the model settings the
exporter needs. The graphs take the declaration's `graph_inputs`: every input but the distilled-LoRA scale,
which only the torch models take.

What needed fixing to export them (found on the tiny preset, torch 2.13's dynamo exporter):
- text encoder: Gemma-3's SDPA attention exports, but onnxruntime disagrees with torch on the left-padding
  rows (fully masked queries: up to 3.4 at an output scale of 4.7; the prompt's rows agree to 1e-6), so the
  export runs eager attention, the same math; the connectors' stable sort has no ONNX translation (ours:
  export/onnx_translations.py);
- transformer: torchlib's `squeeze` on a width axis makes a graph onnxruntime refuses to load (ours again);
  STG and modality isolation are tensors in the adapter's traced form (per block/modality/row lerp);
- VAE decoder, audio VAE decoder + vocoder (bandwidth extension), latent upsampler: export as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from export.components import ExportableComponent, Family
from export.shapes import EXPORT_SAMPLE, SampleSize, TensorDecl, Tolerance
from service.contract.ltx2_components import (
    ISOLATE_MODALITIES,
    STG_AUDIO,
    STG_ROWS,
    STG_SKIP_BLOCKS,
    STG_VIDEO,
    Ltx2AudioDecoderDecl,
    Ltx2ComponentDecl,
    Ltx2Geometry,
    Ltx2LatentUpsamplerDecl,
    Ltx2TextEncoderDecl,
    Ltx2TransformerDecl,
    Ltx2VaeDecoderDecl,
)
from service.models.ltx2_component_modules import ltx2_component_module

if TYPE_CHECKING:
    from service.models.ltx2 import Ltx2Models

# Parity at the export sample and a second size unlike it (the graph's axes are dynamic); one prompt or
# pass fewer, as the pipeline calls them.
LTX2_PARITY_SAMPLES = (EXPORT_SAMPLE, SampleSize(batch=1, latent_frames=2, latent_height=3, latent_width=2))
SAMPLE_FPS = 24.0


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def audio_tokens(geometry: Ltx2Geometry, size: SampleSize) -> int:
    """The audio latents the pipeline pairs with `size`'s frames at 24 fps (3 latent frames -> 18)."""
    frames = (size.latent_frames - 1) * geometry.temporal_compression + 1
    return round(frames / SAMPLE_FPS * geometry.audio_latents_per_second)


class Ltx2ExportableComponent(Ltx2ComponentDecl, ExportableComponent["Ltx2Models"]):
    """An LTX-2.3 component's recipe: its declaration's geometry (`ltx2`), ranges and graph inputs."""

    family: ClassVar[Family] = Family.LTX2
    parity_samples: ClassVar[tuple[SampleSize, ...]] = LTX2_PARITY_SAMPLES

    @property
    def exported_inputs(self) -> tuple[TensorDecl, ...]:
        return self.graph_inputs

    def module(self, models: Ltx2Models) -> nn.Module:
        return ltx2_component_module(self, models)


class Ltx2TextEncoderComponent(Ltx2TextEncoderDecl, Ltx2ExportableComponent):
    """Gemma-3 + the text connectors. Outputs of scale ~4 (Gemma's stacked hidden states through RMS norms):
    the connectors' attention and projections differ from torch by ~2e-4, within the fp32 tolerance."""

    def sample_inputs(self, models: Ltx2Models, size: SampleSize) -> tuple[torch.Tensor, ...]:
        prompts = ["a cowboy walks through a dusty town at high noon", "blurry, low quality"][: size.batch]
        tokens = models.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.ltx2.text_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return tokens["input_ids"], tokens["attention_mask"]

    @contextlib.contextmanager
    def export_context(self, models: Ltx2Models) -> Iterator[None]:
        # SDPA: the padding rows (every key masked) differ in the graph (module docstring); eager is exact.
        encoder: Any = models.text_encoder
        previous = encoder.config._attn_implementation
        encoder.set_attn_implementation("eager")
        try:
            yield
        finally:
            encoder.set_attn_implementation(previous)


class Ltx2TransformerComponent(Ltx2TransformerDecl, Ltx2ExportableComponent):
    def sample_inputs(self, models: Ltx2Models, size: SampleSize) -> tuple[torch.Tensor, ...]:
        g, generator = self.ltx2, _generator()
        batch, cpu = size.batch, torch.device("cpu")
        tokens = size.latent_frames * size.latent_height * size.latent_width
        audio = audio_tokens(g, size)
        length = g.text_max_length
        mask = torch.zeros(batch, length, dtype=torch.int64)
        mask[:, -length // 4 :] = 1  # a short left-padded prompt: padding is masked out
        rope, audio_rope = models.transformer.rope, models.transformer.audio_rope
        video_coords = rope.prepare_video_coords(
            batch, size.latent_frames, size.latent_height, size.latent_width, cpu, fps=SAMPLE_FPS
        )
        return (
            torch.randn(batch, tokens, g.token_width, generator=generator),
            torch.randn(batch, audio, g.audio_token_width, generator=generator),
            torch.randn(batch, length, g.video_context_dim, generator=generator),
            torch.randn(batch, length, g.audio_context_dim, generator=generator),
            mask,
            torch.rand(batch, generator=generator) * 1000.0,
            video_coords.float(),
            audio_rope.prepare_audio_coords(batch, audio, cpu).float(),
            # The last row perturbed in every STG block, video and audio: both kinds of rows are checked.
            torch.ones(g.transformer_blocks, dtype=torch.bool),
            torch.arange(batch) == batch - 1,
            torch.tensor([True]),
            torch.tensor([True]),
            torch.tensor([False]),
        )


class Ltx2VaeDecoderComponent(Ltx2VaeDecoderDecl, Ltx2ExportableComponent):
    """The 2.3 video VAE decoder. Its fp32 tolerance is wider than the others': on the tiny random weights
    onnxruntime lands up to 3.5e-3 from a float64 torch run at an output scale of 1.55 (mean 8e-6, in a few
    pixels), where float32 torch itself is 2e-4 from float64: rounding that the random decoder amplifies."""

    tolerance: ClassVar[Tolerance] = Tolerance(atol=1e-4, rtol=5e-3)

    def sample_inputs(self, models: Ltx2Models, size: SampleSize) -> tuple[torch.Tensor, ...]:
        shape = (size.batch, self.ltx2.latent_channels, *size[1:])
        return (torch.randn(shape, generator=_generator()),)


class Ltx2AudioDecoderComponent(Ltx2AudioDecoderDecl, Ltx2ExportableComponent):
    """The audio VAE decoder (mel) and the vocoder with bandwidth extension (48 kHz waveform)."""

    def sample_inputs(self, models: Ltx2Models, size: SampleSize) -> tuple[torch.Tensor, ...]:
        g = self.ltx2
        return (torch.randn(size.batch, audio_tokens(g, size), g.audio_token_width, generator=_generator()),)


class Ltx2LatentUpsamplerComponent(Ltx2LatentUpsamplerDecl, Ltx2ExportableComponent):
    def sample_inputs(self, models: Ltx2Models, size: SampleSize) -> tuple[torch.Tensor, ...]:
        shape = (size.batch, self.ltx2.latent_channels, *size[1:])
        return (torch.randn(shape, generator=_generator()),)


LTX2_COMPONENT_TYPES: dict[str, type[Ltx2ExportableComponent]] = {
    cls.name: cls
    for cls in (
        Ltx2TextEncoderComponent,
        Ltx2TransformerComponent,
        Ltx2VaeDecoderComponent,
        Ltx2AudioDecoderComponent,
        Ltx2LatentUpsamplerComponent,
    )
}
LTX2_EXPORT_COMPONENTS = tuple(LTX2_COMPONENT_TYPES)
# The transformer's STG/isolation inputs, for the tests that drive them by name.
STG_INPUTS = (STG_SKIP_BLOCKS, STG_ROWS, STG_VIDEO, STG_AUDIO, ISOLATE_MODALITIES)


def declare_ltx2(names: tuple[str, ...] | list[str], geometry: Ltx2Geometry) -> list[Ltx2ExportableComponent]:
    """The recipes of the LTX-2.3 components `names` for a model of `geometry`."""
    unknown = [name for name in names if name not in LTX2_COMPONENT_TYPES]
    if unknown:
        raise ValueError(f"unknown LTX-2.3 components {unknown}; known: {sorted(LTX2_COMPONENT_TYPES)}")
    return [LTX2_COMPONENT_TYPES[name](geometry) for name in names]
