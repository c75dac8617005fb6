"""LocalEngine on the LTX-2.3 tiny preset, through the registry's LTX-2.3 entry like every endpoint: the
resident Gemma's prompt expansion, the camera LoRA precondition, and LoRAs mixed per stage (a job's own
LoRA applies to that job only; the distilled LoRA's second-pass scale reaches stage 2)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from safetensors.torch import save_file

from ltx.v1 import endpoints_pb2 as pb
from service.api.convert import ltx2_spec
from service.config import LoraConfig, ServiceConfig
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress
from service.domain.specs import CameraLora, Endpoint, LoraSpec, Ltx2TextToVideoSpec, TextToVideoSpec
from service.engines.local import LocalEngine
from service.engines.ltx2_local import TINY_EXPANSION_TOKENS, Ltx2ModelSet
from service.models.ltx2 import load_ltx2_models
from service.models.ltx2_loras import tiny_distilled_lora
from service.prompting.ltx2_gemma import ResidentGemmaExpander
from tests.engine_in_line import EngineInLine

EXAMPLE = Path(__file__).resolve().parents[1] / "data/spec_examples/ltx-2.3-22b-text-to-video-lora.json"


def _small_example() -> Ltx2TextToVideoSpec:
    """The spec's own example (multiscale, the distilled LoRA at 0.5 in stage 2), at 128x64, 9 frames,
    2 steps, expansion off."""
    message = json_format.ParseDict(json.loads(EXAMPLE.read_text()), pb.Ltx2TextToVideoInput())
    spec = ltx2_spec(message, rng=random.Random(0))
    return dataclasses.replace(
        spec, width=128, height=64, num_frames=9, num_inference_steps=2, expand_prompt=False
    )


SPEC = _small_example()


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ltx2-loras")


@pytest.fixture(scope="module")
def config(lora_root: Path) -> ServiceConfig:
    lora = LoraConfig(
        cache_dir=str(lora_root / "cache"), allow_local_paths=True, local_roots=(str(lora_root),)
    )
    return ServiceConfig(lora=lora)


@pytest.fixture(scope="module")
def engine(config: ServiceConfig) -> EngineInLine:
    return EngineInLine(LocalEngine(config), config)


def _generate(engine: EngineInLine, spec: Ltx2TextToVideoSpec) -> tuple[GeneratedVideo, list[Progress]]:
    events: list[Progress] = []
    return engine.generate(spec, JobContext.create(on_progress=events.append)), events


@pytest.fixture(scope="module")
def base_video(engine: EngineInLine) -> GeneratedVideo:
    return _generate(engine, SPEC)[0]


def test_serves_both_families(engine: EngineInLine) -> None:
    assert engine.supports(Endpoint.LTX2_TEXT_TO_VIDEO) and engine.supports(Endpoint.TEXT_TO_VIDEO)


def test_camera_lora_precondition_names_the_field(config: ServiceConfig) -> None:
    local = LocalEngine(config)  # the models are cached per config: this costs no second load
    failure = local.precondition_failure(dataclasses.replace(SPEC, camera_lora=CameraLora.DOLLY_IN))
    assert failure is not None and "camera_lora dolly_in" in failure and "ltx2.camera_lora_dir" in failure
    assert local.precondition_failure(SPEC) is None
    ltxv = TextToVideoSpec("a cat", "", 64, 32, 9, 2, 24, seed=1, enable_safety_checker=False)
    assert local.precondition_failure(ltxv) is None


def test_the_second_pass_distilled_scale_reaches_stage_two(
    engine: EngineInLine, base_video: GeneratedVideo
) -> None:
    assert SPEC.use_multiscale and SPEC.distill_lora_second_pass_scale == 0.5
    without, _ = _generate(engine, dataclasses.replace(SPEC, distill_lora_second_pass_scale=0.0))
    assert without.frames.shape == base_video.frames.shape == (9, 64, 128, 3)
    assert not np.array_equal(without.frames, base_video.frames)


def test_a_jobs_lora_changes_that_job_only(
    engine: EngineInLine, base_video: GeneratedVideo, lora_root: Path, config: ServiceConfig
) -> None:
    path = lora_root / "user.safetensors"
    save_file(tiny_distilled_lora(load_ltx2_models(config.ltx2), seed=3), str(path))
    with_lora, events = _generate(engine, dataclasses.replace(SPEC, loras=(LoraSpec(str(path), 0.7),)))
    after, _ = _generate(engine, SPEC)
    assert not np.array_equal(with_lora.frames, base_video.frames)
    assert np.array_equal(after.frames, base_video.frames)
    assert after.audio is not None and base_video.audio is not None
    assert np.array_equal(after.audio, base_video.audio)
    adapters = [event.message for event in events if "LoRA adapters per stage" in event.message]
    assert adapters and "job_lora_0" in adapters[0] and "distilled" in adapters[0]


def test_expansion_runs_on_the_resident_gemma_and_the_video_uses_it(
    engine: EngineInLine, config: ServiceConfig
) -> None:
    models = load_ltx2_models(config.ltx2)
    expected = ResidentGemmaExpander(models.text_encoder, models.tokenizer, TINY_EXPANSION_TOKENS).expand(
        SPEC.prompt
    )
    assert expected != SPEC.prompt
    spec = dataclasses.replace(SPEC, use_multiscale=False, expand_prompt=True)
    expanded, _ = _generate(engine, spec)
    assert expanded.prompt == expected
    given, _ = _generate(engine, dataclasses.replace(spec, prompt=expected, expand_prompt=False))
    assert np.array_equal(expanded.frames, given.frames)


def test_multiscale_without_an_upsampler_is_a_precondition_failure(config: ServiceConfig) -> None:
    model_set = Ltx2ModelSet(config)  # the cached models, their distilled LoRA already resident
    assert model_set.precondition_failure(SPEC) is None
    model_set.components = dataclasses.replace(model_set.components, upsampler=None)
    failure = model_set.precondition_failure(SPEC)
    assert failure is not None and "use_multiscale" in failure and "ltx2.upsampler_dir" in failure
    assert model_set.precondition_failure(dataclasses.replace(SPEC, use_multiscale=False)) is None
