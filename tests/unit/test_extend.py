"""Extending a video on the tiny preset: the plan (frame counts) and that kept frames are copied."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from service.config import ModelConfig
from service.domain.job_context import JobContext
from service.domain.specs import ExtendSpec, VideoConditionSpec
from service.engines import torch_bindings
from service.inputs.conditioning_recipe import UPSTREAM_CONDITIONING_CRF, preprocess_conditioning
from service.inputs.media import extend_context
from service.pipelines import multiconditioning
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.extend import EXTEND_CONTEXT_FRAMES, ExtensionPlan, generate_extension, plan_extension

SPEC = ExtendSpec(
    prompt="the camera keeps panning",
    negative_prompt="blurry",
    width=64,
    height=32,
    num_frames=17,
    frame_rate=24,
    num_inference_steps=2,
    seed=3,
    video=VideoConditionSpec("unused", start_frame=10),
)


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


@pytest.mark.parametrize(
    ("num_frames", "kept", "expected"),
    [
        # The spec example: 24 kept, context 17 (8k + 1 <= 24), 97 new, 17 + 97 = 114 -> clip 121.
        (121, 24, ExtensionPlan(kept=24, context=17, new=97, clip=121)),
        # Long inputs condition on EXTEND_CONTEXT_FRAMES (25) frames: 25 + 21 = 46 -> 49.
        (121, 100, ExtensionPlan(kept=100, context=25, new=21, clip=49)),
        (17, 10, ExtensionPlan(kept=10, context=9, new=7, clip=17)),  # 9 + 7 = 16 -> 17
        (17, 1, ExtensionPlan(kept=1, context=1, new=16, clip=17)),
        (121, 0, ExtensionPlan(kept=0, context=0, new=121, clip=121)),  # nothing kept: text to video
    ],
)
def test_plan(num_frames: int, kept: int, expected: ExtensionPlan) -> None:
    plan = plan_extension(num_frames, kept)
    assert plan == expected
    assert plan.output == num_frames
    assert EXTEND_CONTEXT_FRAMES == 25


def test_plan_refuses_keeping_the_whole_output() -> None:
    with pytest.raises(ValueError):
        plan_extension(17, 17)


def _kept(count: int) -> tuple[np.ndarray, torch.Tensor]:
    """Random uint8 frames, and the [3, K, H, W] tensor the decoder would give for them."""
    frames = np.random.default_rng(0).integers(0, 256, (count, 32, 64, 3), dtype=np.uint8)
    pixels = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
    return frames, pixels


def _context(pixels: torch.Tensor) -> tuple[ConditioningMedia, ...]:
    return extend_context(SPEC, pixels)  # as the prepare stage hands it over


def test_output_keeps_the_input_frames_exactly_and_has_num_frames(components: Components) -> None:
    frames, pixels = _kept(10)
    video = generate_extension(components, SPEC, pixels, _context(pixels), JobContext.create())
    assert video.frames.shape == (17, 32, 64, 3)
    assert np.array_equal(video.frames[:10], frames)
    assert (video.prompt, video.seed, video.frame_rate) == (SPEC.prompt, SPEC.seed, 24.0)


def test_the_tail_of_the_kept_frames_conditions_the_clip(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: dict[str, Any] = {}
    original = multiconditioning.prepare_conditioned_latents  # extend renders through it

    def spy(components: Components, shape: Any, media: Any, *args: Any, **kwargs: Any) -> Any:
        captured.update(shape=shape, media=list(media))
        return original(components, shape, media, *args, **kwargs)

    monkeypatch.setattr(multiconditioning, "prepare_conditioned_latents", spy)
    _, pixels = _kept(10)
    (context,) = _context(pixels)
    generate_extension(components, SPEC, pixels, (context,), JobContext.create())
    (condition,) = captured["media"]
    # Context 9 (the largest 8k + 1 <= 10): input frames 1..9 at clip frame 0, full strength, preprocessed.
    assert condition.start_frame == 0 and condition.strength == 1.0
    assert torch.equal(condition.pixels, context.pixels)
    assert torch.equal(context.pixels[0], preprocess_conditioning(pixels[:, 1:10], UPSTREAM_CONDITIONING_CRF))
    assert captured["shape"].frames == 3  # a 17-frame clip: (17 - 1) / 8 + 1 latent frames


def test_nothing_kept_generates_every_frame(components: Components) -> None:
    video = generate_extension(components, SPEC, torch.empty(3, 0, 32, 64), (), JobContext.create())
    assert video.frames.shape == (17, 32, 64, 3)


def test_same_spec_same_extension(components: Components) -> None:
    _, pixels = _kept(10)
    first = generate_extension(components, SPEC, pixels, _context(pixels), JobContext.create()).frames
    second = generate_extension(components, SPEC, pixels, _context(pixels), JobContext.create()).frames
    assert np.array_equal(first, second)


def test_a_context_that_does_not_fit_the_plan_is_refused(components: Components) -> None:
    _, pixels = _kept(10)
    with pytest.raises(ValueError, match="context"):
        generate_extension(components, SPEC, pixels, (), JobContext.create())
