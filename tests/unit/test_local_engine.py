"""LocalEngine on the tiny preset: dispatch, LoRAs per job, and honest notes for features not configured."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from service.config import LoraConfig, ServiceConfig
from service.domain.errors import Cancelled, ErrorType, JobError
from service.domain.job_context import JobContext
from service.domain.progress import Progress
from service.domain.specs import Endpoint, LoraSpec, TextToVideoSpec
from service.engines.local import LocalEngine
from service.prompting import NOT_CONFIGURED_MESSAGE
from tests.engine_in_line import EngineInLine
from tests.fixtures_lora import tiny_lora_weights, write_lora

SPEC = TextToVideoSpec(
    prompt="waves breaking on a rocky shore",
    negative_prompt="blurry",
    width=64,
    height=32,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=24,
    seed=7,
    enable_safety_checker=False,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> EngineInLine:
    cache = tmp_path_factory.mktemp("lora-cache")
    lora = LoraConfig(
        cache_dir=str(cache), allow_local_paths=True, local_roots=(str(tmp_path_factory.getbasetemp()),)
    )
    config = ServiceConfig(lora=lora)
    return EngineInLine(LocalEngine(config), config)


def _generate(engine: EngineInLine, spec: TextToVideoSpec) -> tuple[np.ndarray, list[Progress]]:
    events: list[Progress] = []
    video = engine.generate(spec, JobContext.create(on_progress=events.append))
    return video.frames, events


def test_is_ready_and_serves_the_ltx_video_endpoints(engine: EngineInLine) -> None:
    assert engine.ready() is True
    assert engine.supports(Endpoint.TEXT_TO_VIDEO)
    assert engine.supports("ltx-video-lora")
    assert engine.supports(Endpoint.MULTICONDITIONING) and engine.supports(Endpoint.EXTEND)
    assert engine.supports(Endpoint.LTX2_TEXT_TO_VIDEO)  # the tiny-ltx2 preset is the default [ltx2]
    assert not engine.supports("no-such-endpoint")


def test_generates_the_requested_video(engine: EngineInLine) -> None:
    frames, _events = _generate(engine, SPEC)
    assert frames.shape == (9, 32, 64, 3)


def test_lora_changes_one_job_and_does_not_leak_into_the_next(engine: EngineInLine, tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "style.safetensors", tiny_lora_weights(), "original")
    before, _ = _generate(engine, SPEC)
    with_lora, events = _generate(engine, dataclasses.replace(SPEC, loras=(LoraSpec(str(lora), 1.0),)))
    after, _ = _generate(engine, SPEC)
    assert not np.array_equal(with_lora, before)
    assert np.array_equal(after, before)
    assert any("LoRA" in event.message for event in events)


def test_bad_lora_fails_the_job_and_leaves_the_engine_usable(engine: EngineInLine, tmp_path: Path) -> None:
    before, _ = _generate(engine, SPEC)
    spec = dataclasses.replace(SPEC, loras=(LoraSpec(str(tmp_path / "missing.safetensors")),))
    with pytest.raises(JobError) as caught:
        engine.generate(spec, JobContext.create())
    # A file that is not there is input_fetch_failed (service/inputs/lora.py), a bad file lora_load_failed.
    assert caught.value.error_type is ErrorType.INPUT_FETCH_FAILED
    assert np.array_equal(_generate(engine, SPEC)[0], before)


def test_cancelled_job_raises_cancelled(engine: EngineInLine) -> None:
    with pytest.raises(Cancelled):
        engine.generate(SPEC, JobContext.create(is_cancelled=lambda: True))


def test_unconfigured_expansion_is_reported_plainly(engine: EngineInLine) -> None:
    spec = dataclasses.replace(SPEC, expand_prompt=True)
    events: list[Progress] = []
    video = engine.generate(spec, JobContext.create(on_progress=events.append))
    assert NOT_CONFIGURED_MESSAGE in [event.message for event in events]
    assert video.prompt == SPEC.prompt
    assert np.array_equal(video.frames, _generate(engine, SPEC)[0])  # the prompt was used as given


def test_unsupported_spec_is_refused(engine: EngineInLine) -> None:
    @dataclasses.dataclass(frozen=True)
    class UnknownSpec:
        endpoint = "no-such-endpoint"

    with pytest.raises(ValueError):
        engine.generate(UnknownSpec(), JobContext.create())
