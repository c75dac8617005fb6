"""The LTX-2.3 component declarations and their torch adapters on the tiny preset: declared shapes, defaults
and ranges; the adapters' tensor forms (what ONNX traces and Triton runs) equal to diffusers' own paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from service.contract.ltx2_components import (
    AUDIO_TOKENS,
    DISTILLED_LORA_SCALE,
    LTX2_COMPONENT_DECLS,
    STG_ROWS,
    STG_SKIP_BLOCKS,
    Ltx2Geometry,
    Ltx2Perturbation,
    Ltx2TransformerDecl,
    ltx2_declaration,
)
from service.contract.tensors import BATCH, TOKENS
from service.engines.ltx2_local import bind_ltx2_components
from service.models import ltx2_component_modules as modules
from service.models.ltx2 import Ltx2Models, build_tiny_ltx2
from service.models.ltx2_component_modules import ltx2_component_module, ltx2_geometry
from service.pipelines.ltx2.components import Ltx2Components
from service.pipelines.ltx2.rope import rope_coords
from service.pipelines.ltx2.shapes import LatentShape

SHAPE = LatentShape(frames=2, height=2, width=3, audio_frames=5, fps=24.0)


@pytest.fixture(scope="module")
def models() -> Iterator[Ltx2Models]:
    torch.set_num_threads(2)
    yield build_tiny_ltx2(0)


@pytest.fixture(scope="module")
def geometry(models: Ltx2Models) -> Ltx2Geometry:
    return ltx2_geometry(models)


@pytest.fixture(scope="module")
def components(models: Ltx2Models) -> Ltx2Components:
    return bind_ltx2_components(models)


def test_tiny_geometry_is_the_2_3_layout(geometry: Ltx2Geometry) -> None:
    assert (geometry.latent_channels, geometry.spatial_compression, geometry.temporal_compression) == (
        128,
        32,
        8,
    )
    assert geometry.audio_token_width == 128  # 8 latent channels x 16 latent mel bins, as the real model
    assert geometry.audio_latents_per_second == 25.0
    assert geometry.output_sample_rate == 48000
    assert geometry.stg_blocks == (0,) and geometry.transformer_blocks == 1


def test_every_declaration_has_consistent_ranges(geometry: Ltx2Geometry) -> None:
    for name in LTX2_COMPONENT_DECLS:
        decl = ltx2_declaration(name, geometry)
        for tensor, (low, opt, high) in decl.profile().items():
            assert all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)), (name, tensor)
    ranges = Ltx2TransformerDecl(geometry).axis_ranges()
    # the spec example: stage 2 at 1280x704, 121 frames -> 40 x 22 x 16 tokens; 121 / 24 s -> 126 audio latents
    assert ranges[TOKENS].opt == 40 * 22 * 16
    assert ranges[AUDIO_TOKENS].opt == 126
    assert ranges[BATCH] == (1, 3, 3)
    with pytest.raises(ValueError, match=r"unknown LTX-2\.3 component"):
        ltx2_declaration("transformer", geometry)


def test_optional_transformer_inputs_default_to_off(geometry: Ltx2Geometry) -> None:
    decl = Ltx2TransformerDecl(geometry)
    present = {"hidden_states": (3, 12, 128), "audio_hidden_states": (3, 5, 128)}
    assert decl.default_shape(STG_ROWS, present) == (3,)
    assert decl.default_shape(STG_SKIP_BLOCKS, present) == (1,)
    assert all(tensor.default in (False, 0.0) for tensor in decl.inputs if tensor.optional)
    assert DISTILLED_LORA_SCALE not in [t.name for t in decl.graph_inputs]
    assert DISTILLED_LORA_SCALE in decl.input_names


def test_rope_coords_are_the_transformers_own(models: Ltx2Models, geometry: Ltx2Geometry) -> None:
    coords = rope_coords(geometry, SHAPE, 2, torch.device("cpu"))
    transformer = models.transformer
    want_video = transformer.rope.prepare_video_coords(2, 2, 2, 3, torch.device("cpu"), fps=24.0)
    want_audio = transformer.audio_rope.prepare_audio_coords(2, 5, torch.device("cpu"))
    assert torch.equal(coords.video, want_video) and torch.equal(coords.audio, want_audio)


def _transformer_call(geometry: Ltx2Geometry, components: Ltx2Components, batch: int) -> tuple:
    g = torch.Generator().manual_seed(3)
    context = components.text_encoder.encode("a red fox")
    video = torch.randn(1, SHAPE.frames * SHAPE.height * SHAPE.width, 128, generator=g).expand(batch, -1, -1)
    audio = torch.randn(1, SHAPE.audio_frames, 128, generator=g).expand(batch, -1, -1)
    contexts = tuple(torch.cat([t] * batch) for t in (context.video, context.audio, context.mask))
    timestep = torch.full((batch,), 700.0)
    return video, audio, contexts, timestep, rope_coords(geometry, SHAPE, batch, torch.device("cpu"))


def test_stg_tensor_form_equals_the_eager_shortcuts(
    models: Ltx2Models, geometry: Ltx2Geometry, components: Ltx2Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    video, audio, (cv, ca, cm), t, coords = _transformer_call(geometry, components, 3)
    module = ltx2_component_module(Ltx2TransformerDecl(geometry), models)
    rows = torch.tensor([False, False, True])
    stg = (torch.tensor([True]), rows, torch.tensor([True]), torch.tensor([False]))
    with torch.inference_mode():
        plain = module(video, audio, cv, ca, cm, t, *coords)
        eager = module(video, audio, cv, ca, cm, t, *coords, *stg, torch.tensor([False]))
        isolated = module(video, audio, cv, ca, cm, t, *coords, None, None, None, None, torch.tensor([True]))
        monkeypatch.setattr(modules, "_tracing", lambda: True)
        traced = module(video, audio, cv, ca, cm, t, *coords, *stg, torch.tensor([False]))
        traced_isolated = module(video, audio, cv, ca, cm, t, *coords, *stg[:2], *(torch.tensor([False]),) * 2,
                                 torch.tensor([True]))  # fmt: skip
    # STG moves only the perturbed row; only the video stream's self-attention is perturbed in block 0, and
    # the audio stream sees the video only through cross-attention, so audio changes too, but less.
    assert torch.equal(eager[0][:2], plain[0][:2]) and torch.equal(eager[1][:2], plain[1][:2])
    assert not torch.allclose(eager[0][2], plain[0][2], atol=1e-3)
    assert torch.equal(traced[0], eager[0]) and torch.equal(traced[1], eager[1])
    assert not torch.allclose(isolated[1], plain[1], atol=1e-4)
    assert torch.allclose(traced_isolated[0], isolated[0], atol=1e-6)
    assert torch.allclose(traced_isolated[1], isolated[1], atol=1e-6)


def test_binding_sends_the_perturbation_as_tensors(
    geometry: Ltx2Geometry, components: Ltx2Components
) -> None:
    video, audio, (cv, ca, cm), t, coords = _transformer_call(geometry, components, 3)
    from service.contract.ltx2_components import Ltx2TextContext

    context = Ltx2TextContext(cv, ca, cm)
    rows = torch.tensor([False, False, True])
    plain = components.transformer.velocity((video, audio), context, t, coords)
    both = components.transformer.velocity(
        (video, audio), context, t, coords, Ltx2Perturbation((0,), rows, video=True, audio=True)
    )
    video_only = components.transformer.velocity(
        (video, audio), context, t, coords, Ltx2Perturbation((0,), rows, video=True, audio=False)
    )
    assert torch.equal(both[0][:2], plain[0][:2])
    assert not torch.equal(both[1][2], video_only[1][2])  # the audio flag perturbs audio self-attention


def test_decoders_and_upsampler_shapes(geometry: Ltx2Geometry, components: Ltx2Components) -> None:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 128, 2, 2, 3, generator=g)
    video = components.vae_decoder.decode(latents)
    assert video.shape == (1, 3, 9, 64, 96) and video.dtype == torch.float32
    assert components.upsampler is not None
    assert components.upsampler.upsample(latents).shape == (1, 128, 2, 4, 6)
    waveform = components.audio_decoder.decode(torch.randn(1, 5, 128, generator=g))
    assert waveform.shape[:2] == (1, 2) and float(waveform.abs().max()) <= 1.0
