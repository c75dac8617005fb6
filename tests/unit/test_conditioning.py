"""Conditioning at the latent level, on the tiny preset's VAE (64x64, 9-17 frames, 2-3 steps)."""

from __future__ import annotations

import pytest
import torch
from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline

from service.config import ModelConfig
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.components import Components
from service.pipelines.conditioning import (
    ConditionedLatents,
    ConditioningMedia,
    ConditioningOptions,
    VelocityFn,
    denoise_conditioned,
    fit_to_clip,
    generated_tokens,
    legal_condition_length,
    model_timesteps,
    prepare_conditioned_latents,
    resize_media,
)
from service.pipelines.latents import LatentShape, latent_shape

SIZE = 64
FRAME_RATE = 25.0
CPU = torch.device("cpu")
NO_RENOISE = ConditioningOptions(image_cond_noise_scale=0.0)
TOKENS_PER_FRAME = (SIZE // 32) ** 2  # the tiny VAE keeps the real 32x compression: 2x2 tokens per frame


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


def _pixels(frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, SIZE, SIZE, generator=generator) * 2 - 1


def _shape(components: Components, num_frames: int) -> LatentShape:
    return latent_shape(components.geometry, 1, num_frames, SIZE, SIZE)


def _prepare(
    components: Components, num_frames: int, media: list[ConditioningMedia], seed: int = 3
) -> ConditionedLatents:
    generator = torch.Generator().manual_seed(seed)
    return prepare_conditioned_latents(
        components, _shape(components, num_frames), media, FRAME_RATE, generator, CPU, options=NO_RENOISE
    )


def _expected_latents(components: Components, pixels: torch.Tensor) -> torch.Tensor:
    """The condition's latents straight from diffusers: VAE posterior mode, then its normalization."""
    vae = loading.load_models(ModelConfig()).vae
    with torch.no_grad():
        raw = vae.encode(pixels).latent_dist.mode()
    return LTXPipeline._normalize_latents(
        raw, vae.latents_mean, vae.latents_std, vae.config["scaling_factor"]
    )


def _constant_velocity(value: float = 1.0) -> tuple[VelocityFn, list[torch.Tensor]]:
    calls: list[torch.Tensor] = []

    def velocity(latents: torch.Tensor, timesteps: torch.Tensor, step: int) -> torch.Tensor:
        calls.append(timesteps.clone())
        return torch.full_like(latents, value)

    return velocity, calls


def _run(state: ConditionedLatents, sigmas: list[float], seed: int = 5) -> torch.Tensor:
    velocity, _ = _constant_velocity()
    generator = torch.Generator().manual_seed(seed)
    return denoise_conditioned(state, sigmas, velocity, generator, lambda _: None, lambda: False, NO_RENOISE)


@pytest.mark.parametrize(
    ("start", "available", "target", "expected"),
    [(0, 20, 17, 17), (0, 40, 121, 33), (8, 30, 17, 9), (16, 5, 17, 1), (0, 1, 9, 1), (4, 13, 17, 9)],
)
def test_legal_condition_length(start: int, available: int, target: int, expected: int) -> None:
    assert legal_condition_length(start, available, target, 8) == expected


def test_condition_outside_the_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        legal_condition_length(17, 9, 17, 8)


def test_video_is_trimmed_to_a_legal_length_within_the_clip(components: Components) -> None:
    media = ConditioningMedia(_pixels(20, 0), start_frame=8, strength=1.0)
    trimmed = fit_to_clip(media, 17, components.geometry)
    assert trimmed.num_frames == 9  # 17 - 8 = 9 frames fit, and 9 = 8 + 1 is legal
    assert torch.equal(trimmed.pixels, media.pixels[:, :, :9])


def test_resize_media_changes_size_only() -> None:
    media = ConditioningMedia(_pixels(9, 0), start_frame=0, strength=0.7)
    resized = resize_media(media, 32, 96)
    assert resized.pixels.shape == (1, 3, 9, 96, 32)
    assert (resized.start_frame, resized.strength) == (0, 0.7)
    assert resized.pixels.min() >= -1 and resized.pixels.max() <= 1


def test_strength_one_first_frame_is_intact_after_sampling(components: Components) -> None:
    pixels = _pixels(1, 1)
    state = _prepare(components, 9, [ConditioningMedia(pixels, start_frame=0, strength=1.0)])
    tokens = generated_tokens(_run(state, [1.0, 0.6, 0.3]), state.num_extra_tokens)
    expected = _expected_latents(components, pixels)  # [1, C, 1, 2, 2]
    first_frame = tokens[:, :TOKENS_PER_FRAME]  # packing is frame-major: frame 0's tokens come first
    assert torch.allclose(first_frame, expected.flatten(2).transpose(1, 2), atol=1e-5)
    # ...and the unconditioned latent frame did move: the constant velocity took it to noise - 1.
    assert not torch.allclose(tokens[:, TOKENS_PER_FRAME:], state.tokens[:, TOKENS_PER_FRAME:])


def test_strength_zero_matches_unconditioned_sampling(components: Components) -> None:
    unconditioned = _prepare(components, 9, [])
    weak = _prepare(components, 9, [ConditioningMedia(_pixels(1, 1), start_frame=0, strength=0.0)])
    assert weak.num_extra_tokens == 0
    assert torch.equal(weak.tokens, unconditioned.tokens)
    assert torch.equal(_run(weak, [1.0, 0.5]), _run(unconditioned, [1.0, 0.5]))


def test_partial_strength_waits_until_sigma_falls_below_one_minus_strength(components: Components) -> None:
    state = _prepare(components, 9, [ConditioningMedia(_pixels(1, 1), start_frame=0, strength=0.5)])
    velocity, calls = _constant_velocity(1.0)
    generator = torch.Generator().manual_seed(0)
    sigmas = [1.0, 0.75, 0.4]
    out = denoise_conditioned(state, sigmas, velocity, generator, lambda _: None, lambda: False, NO_RENOISE)
    conditioned = slice(0, TOKENS_PER_FRAME)
    # The model sees min(sigma, 1 - 0.5) on the conditioned frame and sigma elsewhere.
    assert [float(c[0, 0]) for c in calls] == pytest.approx([0.5, 0.5, 0.4])
    assert [float(c[0, -1]) for c in calls] == pytest.approx(sigmas)
    # Frozen while sigma >= 0.5; from sigma 0.4 one Euler step to 0 with velocity 1: x + (0 - 0.4) * 1.
    expected = state.tokens[:, conditioned] - 0.4
    assert torch.allclose(out[:, conditioned], expected, atol=1e-6)
    # Free tokens took every step: x + (0 - 1) * 1.
    assert torch.allclose(out[:, TOKENS_PER_FRAME:], state.tokens[:, TOKENS_PER_FRAME:] - 1.0, atol=1e-6)


def test_model_timesteps_are_min_of_sigma_and_one_minus_strength() -> None:
    strength = torch.tensor([[0.0, 0.25, 1.0]])
    assert torch.allclose(model_timesteps(0.9, strength), torch.tensor([[0.9, 0.75, 0.0]]))


def test_keyframe_at_a_later_frame_is_appended_with_its_frame_position(components: Components) -> None:
    pixels = _pixels(1, 2)
    state = _prepare(components, 17, [ConditioningMedia(pixels, start_frame=16, strength=1.0)])
    assert state.num_extra_tokens == TOKENS_PER_FRAME  # one latent frame of 2x2 tokens
    assert state.tokens.shape[1] == TOKENS_PER_FRAME + 3 * TOKENS_PER_FRAME  # 17 frames: 3 latent frames
    assert torch.allclose(state.coords[0, 0, :TOKENS_PER_FRAME], torch.full((4,), 16 / FRAME_RATE))
    assert torch.equal(state.strength[0, :TOKENS_PER_FRAME], torch.ones(TOKENS_PER_FRAME))
    assert not state.strength[0, TOKENS_PER_FRAME:].any()  # the grid itself is free
    # At strength 1 the keyframe tokens are the condition's latents, not noise.
    expected = _expected_latents(components, pixels).flatten(2).transpose(1, 2)
    assert torch.allclose(state.tokens[:, :TOKENS_PER_FRAME], expected, atol=1e-5)


def test_keyframe_changes_the_output_near_its_frame(components: Components) -> None:
    free = _prepare(components, 17, [])
    keyed = _prepare(components, 17, [ConditioningMedia(_pixels(1, 2), start_frame=16, strength=1.0)])
    velocity_calls: list[torch.Tensor] = []

    def attention_like(latents: torch.Tensor, timesteps: torch.Tensor, step: int) -> torch.Tensor:
        # Each token's velocity depends on every token (as attention does), so keyframes can act.
        velocity_calls.append(latents)
        return latents - latents.mean(dim=1, keepdim=True)

    outputs = []
    for state in (free, keyed):
        generator = torch.Generator().manual_seed(0)
        tokens = denoise_conditioned(
            state, [1.0, 0.5], attention_like, generator, lambda _: None, lambda: False, NO_RENOISE
        )
        outputs.append(generated_tokens(tokens, state.num_extra_tokens))
    last_frame = slice(2 * TOKENS_PER_FRAME, 3 * TOKENS_PER_FRAME)  # latent frame 2 holds frames 9..16
    assert outputs[0].shape == outputs[1].shape
    assert not torch.allclose(outputs[0][:, last_frame], outputs[1][:, last_frame])


def test_video_at_a_later_frame_keeps_two_prefix_latent_frames_as_keyframes(components: Components) -> None:
    # 17 frames = 3 latent frames, placed at output frame 8 of a 25-frame clip (4 latent frames).
    media = ConditioningMedia(_pixels(17, 4), start_frame=8, strength=0.8)
    state = _prepare(components, 25, [media])
    assert state.num_extra_tokens == 2 * TOKENS_PER_FRAME
    # The third latent frame lands in the grid at latent frame 8 // 8 + 2 = 3, with the condition's strength.
    grid_strength = state.strength[0, state.num_extra_tokens :].view(4, TOKENS_PER_FRAME)[:, 0]
    assert grid_strength.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.8])
    keyframe_times = state.coords[0, 0, : state.num_extra_tokens] * FRAME_RATE
    # Causal VAE: latent frame k stands for pixel frames 8k - 7 .. 8k and sits at the first of them (0
    # for k = 0), offset by the start frame: 8 + 0 and 8 + 1.
    assert sorted(set(keyframe_times.round().tolist())) == [8.0, 9.0]


def test_hard_tokens_are_renoised_by_a_small_amount(components: Components) -> None:
    pixels = _pixels(1, 1)
    generator = torch.Generator().manual_seed(3)
    options = ConditioningOptions(image_cond_noise_scale=0.15)
    media = [ConditioningMedia(pixels, 0, 1.0)]
    shape = _shape(components, 9)
    state = prepare_conditioned_latents(components, shape, media, FRAME_RATE, generator, CPU, options=options)
    velocity, _ = _constant_velocity()
    out = denoise_conditioned(
        state, [1.0, 0.2], velocity, torch.Generator().manual_seed(1), lambda _: None, lambda: False, options
    )
    drift = (out[:, :TOKENS_PER_FRAME] - state.tokens[:, :TOKENS_PER_FRAME]).abs()
    # Last step at sigma 0.2: noise * 0.15 * 0.2^2 = 0.006 * noise, so well under 0.006 * 6 sigma.
    assert 0 < drift.max() < 0.006 * 6
