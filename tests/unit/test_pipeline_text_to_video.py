"""The text-to-video sampling loop on the tiny preset (64x64, 9-17 frames, 2-3 steps)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from service.config import ModelConfig
from service.domain.errors import Cancelled
from service.domain.progress import Progress, Stage
from service.domain.specs import TextToVideoSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.components import Components
from service.pipelines.sampling import make_scheduler, set_schedule
from service.pipelines.text_to_video import SamplingOptions, generate_text_to_video

SPEC = TextToVideoSpec(
    prompt="a ginger cat walks along a sunny sidewalk",
    negative_prompt="blurry, low quality",
    width=64,
    height=64,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=25,
    seed=42,
)


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


def _run(components: Components, spec: TextToVideoSpec = SPEC, **kwargs: object) -> np.ndarray:
    return generate_text_to_video(components, spec, lambda _: None, lambda: False, **kwargs).frames  # type: ignore[arg-type]


def test_same_spec_gives_identical_frames(components: Components) -> None:
    assert np.array_equal(_run(components), _run(components))


def test_different_seed_gives_different_frames(components: Components) -> None:
    other = _run(components, dataclasses.replace(SPEC, seed=SPEC.seed + 1))
    assert not np.array_equal(_run(components), other)


@pytest.mark.parametrize(("num_frames", "width", "height"), [(9, 64, 64), (10, 96, 64), (4, 64, 32)])
def test_output_has_exactly_the_requested_frames_and_size(
    components: Components, num_frames: int, width: int, height: int
) -> None:
    spec = dataclasses.replace(SPEC, num_frames=num_frames, width=width, height=height)
    video = generate_text_to_video(components, spec, lambda _: None, lambda: False)
    assert video.frames.shape == (num_frames, height, width, 3)
    assert video.frames.dtype == np.uint8
    assert video.frame_rate == float(SPEC.frame_rate)
    assert (video.prompt, video.seed) == (SPEC.prompt, SPEC.seed)


def test_reverse_video_reverses_the_frame_order(components: Components) -> None:
    spec = dataclasses.replace(SPEC, num_frames=10)
    forward = _run(components, spec)
    backward = _run(components, dataclasses.replace(spec, reverse_video=True))
    assert not np.array_equal(forward[0], forward[-1])
    assert np.array_equal(backward, forward[::-1])


def test_progress_reports_stages_in_order_and_every_step(components: Components) -> None:
    events: list[Progress] = []
    spec = dataclasses.replace(SPEC, num_inference_steps=3)
    generate_text_to_video(components, spec, events.append, lambda: False)
    stages = [event.stage for event in events]
    assert stages == [
        Stage.ENCODING_PROMPT,
        Stage.DENOISING,
        Stage.DENOISING,
        Stage.DENOISING,
        Stage.DECODING,
    ]
    assert [(event.step, event.total) for event in events[1:4]] == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("cancel_after_checks", [0, 1])
def test_cancel_raises_after_at_most_one_more_step(components: Components, cancel_after_checks: int) -> None:
    checks = 0
    steps: list[int] = []

    def is_cancelled() -> bool:
        nonlocal checks
        checks += 1
        return checks > cancel_after_checks

    def on_progress(event: Progress) -> None:
        if event.stage is Stage.DENOISING:
            steps.append(event.step)

    spec = dataclasses.replace(SPEC, num_inference_steps=4)
    with pytest.raises(Cancelled):
        generate_text_to_video(components, spec, on_progress, is_cancelled)
    assert len(steps) == cancel_after_checks


def test_negative_prompt_changes_the_output_under_guidance(components: Components) -> None:
    other = _run(components, dataclasses.replace(SPEC, negative_prompt="oversaturated"))
    assert not np.array_equal(_run(components), other)


def test_frame_rate_reaches_the_rope_coordinates(components: Components) -> None:
    spec = dataclasses.replace(SPEC, num_frames=17)
    slower = _run(components, dataclasses.replace(spec, frame_rate=8))
    assert not np.array_equal(_run(components, spec), slower)


def test_matches_diffusers_ltx_condition_pipeline() -> None:
    """The same models, prompt, seed and sigmas through diffusers' own LTX-Video 0.9.5+ pipeline give the
    same frames (up to one level of uint8 rounding)."""
    models = loading.load_models(ModelConfig())
    spec = dataclasses.replace(SPEC, num_frames=9, num_inference_steps=3, frame_rate=24, seed=5)
    ours = _run(torch_bindings.bind_components(models), spec).astype(np.float64)

    # Our shifted schedule, handed to diffusers as explicit timesteps with shifting off on its side.
    scheduler = make_scheduler(models.scheduler_config)
    set_schedule(scheduler, spec.num_inference_steps, num_tokens=2 * 2 * 2, device=torch.device("cpu"))
    reference = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0),
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        transformer=models.transformer,
    )
    reference.set_progress_bar_config(disable=True)
    options = SamplingOptions()
    frames = reference(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        width=spec.width,
        height=spec.height,
        num_frames=spec.num_frames,
        frame_rate=spec.frame_rate,
        num_inference_steps=spec.num_inference_steps,
        timesteps=scheduler.timesteps.tolist(),
        guidance_scale=options.guidance_scale,
        decode_timestep=options.decode_timestep,
        decode_noise_scale=options.decode_noise_scale,
        generator=torch.Generator().manual_seed(spec.seed),
        output_type="pt",
    ).frames
    expected = frames[0].permute(0, 2, 3, 1).numpy().astype(np.float64) * 255
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1.0
    assert np.abs(ours - expected).mean() < 0.5
