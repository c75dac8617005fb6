"""Text to video (the 0.9.7-dev recipe) on the tiny preset (64x64, 9-17 frames, 2-3 steps)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from service.config import ModelConfig
from service.domain.errors import Cancelled
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.domain.specs import TextToVideoSpec
from service.engines import torch_bindings
from service.pipelines.components import Components
from service.pipelines.multiconditioning import generate_text_to_video
from service.pipelines.schedules import linear_quadratic_sigmas
from tests.unit.test_multiconditioning import OFFICIAL_CFG, OFFICIAL_STG, RecordingTransformer, _official

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
    return generate_text_to_video(components, spec, JobContext.create(), **kwargs).frames  # type: ignore[arg-type]


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
    video = generate_text_to_video(components, spec, JobContext.create())
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
    generate_text_to_video(components, spec, JobContext.create(on_progress=events.append))
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
        generate_text_to_video(
            components, spec, JobContext.create(on_progress=on_progress, is_cancelled=is_cancelled)
        )
    assert len(steps) == cancel_after_checks


def test_negative_prompt_changes_the_output_under_guidance(components: Components) -> None:
    # 8 steps reach the dev schedule's CFG intervals (sigma <= 0.996); 2 steps (1, 0.9875) would not.
    spec = dataclasses.replace(SPEC, num_inference_steps=8)
    other = _run(components, dataclasses.replace(spec, negative_prompt="oversaturated"))
    assert not np.array_equal(_run(components, spec), other)


def test_frame_rate_reaches_the_rope_coordinates(components: Components) -> None:
    spec = dataclasses.replace(SPEC, num_frames=17)
    slower = _run(components, dataclasses.replace(spec, frame_rate=8))
    assert not np.array_equal(_run(components, spec), slower)


def test_runs_the_dev_recipe_cfg_and_stg_per_step(components: Components) -> None:
    """ltxv-13b-0.9.7-dev.yaml: on the 30-step linear-quadratic schedule, CFG runs on the steps of the 6/8/6
    intervals and STG on every step from the third interval on (the old loop: constant CFG, no STG)."""
    recorder = RecordingTransformer(components.transformer, num_blocks=4)  # type: ignore[arg-type]
    spec = dataclasses.replace(SPEC, num_inference_steps=30)
    generate_text_to_video(dataclasses.replace(components, transformer=recorder), spec, JobContext.create())
    sigmas = linear_quadratic_sigmas(30)
    expected = [1 + (_official(s, OFFICIAL_CFG) > 1) + (_official(s, OFFICIAL_STG) > 0) for s in sigmas]
    assert recorder.batches == expected
    assert 3 in recorder.batches and 1 in recorder.batches  # uncond+cond+perturbed steps and cond-only ones
