"""LocalEngine behind its prepare stage and output check on every endpoint: prompt expansion, safety
checks, conditioned endpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from service.config import ServiceConfig
from service.domain.errors import ErrorType, JobError
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress
from service.domain.specs import (
    Endpoint,
    ExtendSpec,
    ImageConditionSpec,
    MulticonditioningSpec,
    TextToVideoSpec,
    VideoConditionSpec,
)
from service.engines.local import LocalEngine
from service.inputs import prepare as prepare_stage
from service.jobs.finish import SAFETY_PASSED_MESSAGE
from service.safety.checker import DISABLED_MESSAGE, SafetyChecker
from service.safety.config import SafetyConfig
from tests.engine_in_line import EngineInLine
from tests.unit.test_media_inputs import mp4_uri, png_uri

TEXT_TO_VIDEO = TextToVideoSpec(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=64,
    height=32,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=24,
    seed=5,
    enable_safety_checker=False,
)
MULTICONDITIONING = MulticonditioningSpec(
    prompt="a paper boat on a pond",
    negative_prompt="blurry",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.AUTO,
    width=0,
    height=0,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=24,
    seed=5,
    images=(ImageConditionSpec(png_uri(40, 40), 0, 1.0),),
    enable_safety_checker=False,
)
EXTEND = ExtendSpec(
    prompt="the boat drifts on",
    negative_prompt="blurry",
    width=64,
    height=32,
    num_frames=17,
    frame_rate=24,
    num_inference_steps=2,
    seed=5,
    video=VideoConditionSpec(mp4_uri(12), start_frame=8),
    expand_prompt=False,
)


class FakeExpander:
    def expand(self, prompt: str) -> str:
        return f"a detailed, cinematic version of: {prompt}"


class FlagEverything:
    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        return [0.99] * len(images)


def _engine(monkeypatch: pytest.MonkeyPatch, *, expander: bool = False, flag: bool = False) -> EngineInLine:
    if expander:
        monkeypatch.setattr(prepare_stage, "build_prompt_expander", lambda _config: FakeExpander())
    if flag:
        checker = SafetyChecker(FlagEverything(), threshold=0.8, frames_to_sample=4)
        monkeypatch.setattr(prepare_stage, "build_safety_checker", lambda _config: checker)
    config = ServiceConfig(safety=SafetyConfig(enabled=flag))
    return EngineInLine(LocalEngine(config), config)


def _run(engine: EngineInLine, spec: object, events: list[Progress] | None = None) -> GeneratedVideo:
    return engine.generate(spec, JobContext.create(on_progress=(events if events is not None else []).append))


def test_serves_the_conditioned_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)
    assert engine.supports(Endpoint.MULTICONDITIONING) and engine.supports(Endpoint.EXTEND)


@pytest.mark.parametrize("spec", [TEXT_TO_VIDEO, MULTICONDITIONING, EXTEND], ids=lambda s: s.endpoint)
def test_expanded_prompt_is_the_result_prompt(monkeypatch: pytest.MonkeyPatch, spec: object) -> None:
    engine = _engine(monkeypatch, expander=True)
    plain = _run(engine, spec)
    expanded = _run(engine, dataclasses.replace(spec, expand_prompt=True))  # type: ignore[type-var]
    assert plain.prompt == spec.prompt  # type: ignore[attr-defined]
    assert expanded.prompt == FakeExpander().expand(spec.prompt)  # type: ignore[attr-defined]
    assert not np.array_equal(expanded.frames[-1], plain.frames[-1])  # the expansion was generated from


def test_flagged_output_fails_with_content_policy_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, flag=True)
    with pytest.raises(JobError) as caught:
        _run(engine, dataclasses.replace(TEXT_TO_VIDEO, enable_safety_checker=True))
    assert caught.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert caught.value.message.startswith("video:")


def test_flagged_input_image_fails_before_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, flag=True)
    events: list[Progress] = []
    with pytest.raises(JobError) as caught:
        _run(engine, dataclasses.replace(MULTICONDITIONING, enable_safety_checker=True), events)
    assert caught.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert caught.value.message.startswith("images[0].image_url")
    assert not any(event.stage == "denoising" for event in events)


def test_checker_is_skipped_when_the_request_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, flag=True)
    video = _run(engine, MULTICONDITIONING)  # enable_safety_checker=False
    assert video.frames.shape[0] == 9


def test_extend_is_always_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, flag=True)
    with pytest.raises(JobError) as caught:
        _run(engine, EXTEND)
    assert caught.value.message.startswith("video.video_url")


def test_checker_disabled_by_config_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)  # SafetyConfig(enabled=False)
    events: list[Progress] = []
    _run(engine, dataclasses.replace(TEXT_TO_VIDEO, enable_safety_checker=True), events)
    assert DISABLED_MESSAGE in [event.message for event in events]


def test_multiconditioning_resolves_auto_size_from_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)
    wide_image = ImageConditionSpec(png_uri(80, 40))
    video = _run(engine, dataclasses.replace(MULTICONDITIONING, images=(wide_image,)))
    # 2:1 at 480p: 960x480 (both multiples of 32).
    assert video.frames.shape == (9, 480, 960, 3)


def test_extend_output_has_num_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)
    video = _run(engine, EXTEND)
    assert video.frames.shape == (EXTEND.num_frames, 32, 64, 3)


def test_passing_output_is_noted_in_the_job_log(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = SafetyChecker(FlagEverything(), threshold=1.0, frames_to_sample=4)  # 0.99 < 1.0: passes
    monkeypatch.setattr(prepare_stage, "build_safety_checker", lambda _config: checker)
    engine = EngineInLine(LocalEngine(ServiceConfig()), ServiceConfig())
    events: list[Progress] = []
    _run(engine, dataclasses.replace(TEXT_TO_VIDEO, enable_safety_checker=True), events)
    assert SAFETY_PASSED_MESSAGE in [event.message for event in events]
