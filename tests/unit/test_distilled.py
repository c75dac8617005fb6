"""The distilled two-pass pipeline on the tiny preset (64x64-class frames, 9-17 frames)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from service.config import ModelConfig
from service.contract.frames import latent_tokens
from service.domain.errors import Cancelled
from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    AspectRatio,
    FrameSize,
    Resolution,
    multiscale_sizes,
)
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.pipelines import distilled
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.latents import denormalize
from service.pipelines.schedules import (
    DISTILLED_13B_097_FIRST_PASS_TIMESTEPS,
    DISTILLED_13B_097_SECOND_PASS_TIMESTEPS,
)

SPEC = DistilledMulticonditioningSpec(
    prompt="a paper boat drifts down a rainy street",
    negative_prompt="worst quality",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,
    height=64,
    num_frames=9,
    first_pass_num_inference_steps=8,
    second_pass_num_inference_steps=8,
    second_pass_skip_initial_steps=5,
    frame_rate=24,
    seed=7,
    temporal_adain_factor=0.5,
    tone_map_compression_ratio=0.0,
    constant_rate_factor=29,
)


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


class TransformerSpy:
    """Records each call's token count and sigma (the largest per-token timestep)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, float]] = []

    def velocity(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, *rest: torch.Tensor
    ) -> torch.Tensor:
        self.calls.append((hidden_states.shape[1], float(timestep.max())))
        return self.inner.velocity(hidden_states, timestep, *rest)

    def sigmas_with_tokens(self, tokens: int) -> list[float]:
        return [sigma for count, sigma in self.calls if count == tokens]


class DecoderSpy:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def decode(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        self.inputs.append(latents.clone())
        return self.inner.decode(latents, decode_timestep)


def _run(
    components: Components,
    spec: DistilledMulticonditioningSpec = SPEC,
    conditions: tuple[ConditioningMedia, ...] = (),
    on_progress: Callable[[Progress], None] = lambda _: None,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    return distilled.generate_distilled(
        components, spec, conditions, JobContext.create(on_progress=on_progress, is_cancelled=is_cancelled)
    ).frames


def _pass_tokens(spec: DistilledMulticonditioningSpec) -> tuple[int, int]:
    sizes = multiscale_sizes(FrameSize(spec.width, spec.height), DISTILLED_FIRST_PASS_DOWNSCALE)
    return latent_tokens(sizes.first_pass, spec.num_frames), latent_tokens(sizes.second_pass, spec.num_frames)


@pytest.mark.parametrize(("num_frames", "width", "height"), [(9, 64, 64), (10, 96, 64), (17, 128, 96)])
def test_output_has_exactly_the_requested_size_and_frames(
    components: Components, num_frames: int, width: int, height: int
) -> None:
    spec = dataclasses.replace(SPEC, num_frames=num_frames, width=width, height=height)
    video = distilled.generate_distilled(components, spec, (), JobContext.create())
    assert video.frames.shape == (num_frames, height, width, 3)
    assert video.frames.dtype == np.uint8
    assert (video.frame_rate, video.prompt, video.seed) == (24.0, SPEC.prompt, SPEC.seed)


def test_same_spec_same_frames_and_other_seed_other_frames(components: Components) -> None:
    first = _run(components)
    assert np.array_equal(first, _run(components))
    assert not np.array_equal(first, _run(components, dataclasses.replace(SPEC, seed=SPEC.seed + 1)))


def test_defaults_run_the_official_distilled_timesteps_one_call_per_step(components: Components) -> None:
    spy = TransformerSpy(components.transformer)
    _run(dataclasses.replace(components, transformer=spy))
    first_tokens, second_tokens = _pass_tokens(SPEC)
    assert len(spy.calls) == len(DISTILLED_13B_097_FIRST_PASS_TIMESTEPS) + len(
        DISTILLED_13B_097_SECOND_PASS_TIMESTEPS
    )
    assert spy.sigmas_with_tokens(first_tokens) == pytest.approx(
        DISTILLED_13B_097_FIRST_PASS_TIMESTEPS, abs=1e-6
    )
    assert spy.sigmas_with_tokens(second_tokens) == pytest.approx(
        DISTILLED_13B_097_SECOND_PASS_TIMESTEPS, abs=1e-6
    )


def test_step_settings_set_the_transformer_calls_of_each_pass(components: Components) -> None:
    spec = dataclasses.replace(
        SPEC,
        first_pass_num_inference_steps=4,
        second_pass_num_inference_steps=6,
        second_pass_skip_initial_steps=2,
    )
    spy = TransformerSpy(components.transformer)
    _run(dataclasses.replace(components, transformer=spy), spec)
    first_tokens, second_tokens = _pass_tokens(spec)
    # The first pass drops its schedule's final step; the second pass skips its initial steps.
    assert len(spy.sigmas_with_tokens(first_tokens)) == 4 - 1
    assert len(spy.sigmas_with_tokens(second_tokens)) == 6 - 2


def test_detail_pass_runs_the_second_pass_again_and_changes_the_video(components: Components) -> None:
    spy = TransformerSpy(components.transformer)
    spec = dataclasses.replace(SPEC, enable_detail_pass=True)
    detailed = _run(dataclasses.replace(components, transformer=spy), spec)
    _first_tokens, second_tokens = _pass_tokens(spec)
    official = pytest.approx(DISTILLED_13B_097_SECOND_PASS_TIMESTEPS * 2, abs=1e-6)
    assert spy.sigmas_with_tokens(second_tokens) == official
    assert not np.array_equal(detailed, _run(components))


def test_upsampled_latents_are_adain_normalized_to_the_first_pass(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, torch.Tensor] = {}
    real_upsample, real_prepare = distilled.upsample_latents, distilled.prepare_conditioned_latents

    def upsample_spy(components: Components, latents: torch.Tensor, *args: Any) -> torch.Tensor:
        seen["first_pass"], seen["upsampled"] = latents.clone(), real_upsample(components, latents, *args)
        return seen["upsampled"]

    def prepare_spy(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("initial_latents") is not None:
            seen["second_pass_start"] = kwargs["initial_latents"].clone()
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(distilled, "upsample_latents", upsample_spy)
    monkeypatch.setattr(distilled, "prepare_conditioned_latents", prepare_spy)
    _run(components, dataclasses.replace(SPEC, width=128, height=96))

    def stats(latents: torch.Tensor) -> torch.Tensor:
        std, mean = torch.std_mean(latents.float(), dim=(2, 3, 4))
        return torch.stack([std, mean])

    reference = stats(seen["first_pass"])
    assert seen["upsampled"].shape[-2:] == tuple(2 * s for s in seen["first_pass"].shape[-2:])
    assert not torch.allclose(stats(seen["upsampled"]), reference, atol=1e-2)  # the upsampler moved them
    assert torch.allclose(stats(seen["second_pass_start"]), reference, atol=1e-4)


def test_tone_map_compresses_the_final_latents_right_before_decoding(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    real_tone_map = distilled.tone_map_latents

    def tone_map_spy(latents: torch.Tensor, ratio: float) -> torch.Tensor:
        calls.append((latents.clone(), result := real_tone_map(latents, ratio), ratio))
        return result

    monkeypatch.setattr(distilled, "tone_map_latents", tone_map_spy)
    decoder = DecoderSpy(components.vae_decoder)
    spied = dataclasses.replace(components, vae_decoder=decoder)
    plain = _run(spied)
    mapped = _run(spied, dataclasses.replace(SPEC, tone_map_compression_ratio=0.9))
    assert not np.array_equal(plain, mapped)
    before, after, ratio = calls[-1]
    assert ratio == 0.9
    assert torch.all(after.abs() <= before.abs()) and torch.all(torch.sign(after) == torch.sign(before))
    assert (before.abs() > 1.5).any() and torch.any(after.abs() < before.abs() - 1e-3)  # it did compress
    order = torch.argsort(before.flatten())
    assert torch.all(torch.diff(after.flatten()[order]) >= 0)  # monotone: the order of values is kept
    # What the decoder got is the tone-mapped latents, denormalized: nothing ran in between.
    assert torch.allclose(decoder.inputs[-1], denormalize(after, components.geometry), atol=1e-6)


def test_progress_reports_each_step_of_both_passes_and_says_which(components: Components) -> None:
    events: list[Progress] = []
    _run(components, on_progress=events.append)
    denoising = [e for e in events if e.stage is Stage.DENOISING]
    first, second = len(DISTILLED_13B_097_FIRST_PASS_TIMESTEPS), len(DISTILLED_13B_097_SECOND_PASS_TIMESTEPS)
    assert [e.stage for e in events] == (
        [Stage.ENCODING_PROMPT]
        + [Stage.DENOISING] * first
        + [Stage.UPSAMPLING]
        + [Stage.DENOISING] * second
        + [Stage.DECODING]
    )
    assert [(e.step, e.total) for e in denoising] == (
        [(i, first) for i in range(1, first + 1)] + [(i, second) for i in range(1, second + 1)]
    )
    assert {e.message for e in denoising[:first]} == {"first pass"}
    assert {e.message for e in denoising[first:]} == {"second pass"}


def test_cancel_during_the_second_pass_stops_before_the_next_step(components: Components) -> None:
    events: list[Progress] = []
    spy = TransformerSpy(components.transformer)

    def cancelled() -> bool:
        return any(e.message == "second pass" for e in events)

    with pytest.raises(Cancelled):
        _run(
            dataclasses.replace(components, transformer=spy),
            on_progress=events.append,
            is_cancelled=cancelled,
        )
    _first_tokens, second_tokens = _pass_tokens(SPEC)
    assert len(spy.sigmas_with_tokens(second_tokens)) == 1
    assert Stage.DECODING not in {e.stage for e in events}


def test_conditions_are_resized_to_each_pass(components: Components, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[tuple[int, int]] = []
    real_prepare = distilled.prepare_conditioned_latents

    def prepare_spy(components: Components, shape: Any, media: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.extend(tuple(item.pixels.shape[-2:]) for item in media)
        return real_prepare(components, shape, media, *args, **kwargs)

    monkeypatch.setattr(distilled, "prepare_conditioned_latents", prepare_spy)
    image = torch.rand(1, 3, 1, 96, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spec = dataclasses.replace(SPEC, width=128, height=96)
    frames = _run(components, spec, (ConditioningMedia(pixels=image, start_frame=0, strength=1.0),))
    expected = multiscale_sizes(FrameSize(128, 96), DISTILLED_FIRST_PASS_DOWNSCALE)
    assert sizes == [
        (expected.first_pass.height, expected.first_pass.width),
        (expected.second_pass.height, expected.second_pass.width),
    ]
    assert not np.array_equal(frames, _run(components, spec))


def test_reverse_video_reverses_the_frames(components: Components) -> None:
    spec = dataclasses.replace(SPEC, num_frames=10)
    forward = _run(components, spec)
    assert np.array_equal(_run(components, dataclasses.replace(spec, reverse_video=True)), forward[::-1])


def test_refuses_components_without_an_upsampler_and_unresolved_sizes(components: Components) -> None:
    with pytest.raises(ValueError, match="upsampler"):
        _run(dataclasses.replace(components, upsampler=None))
    with pytest.raises(ValueError, match="AUTO"):
        _run(components, dataclasses.replace(SPEC, aspect_ratio=AspectRatio.AUTO, width=0, height=0))
