"""`ltx-2.3-22b/text-to-video/lora` through `TritonEngine` on the bundled tritonserver (checked-in repository,
tiny presets on the CPU) against the same request in process: frames within one uint8 level, audio within
1e-3, the audio streamed back in several responses."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
from google.protobuf import json_format

from ltx.v1 import endpoints_pb2 as pb
from service.api.convert import ltx2_spec
from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.domain.specs import Ltx2TextToVideoSpec
from service.engines.local import LocalEngine
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess
from tests.engine_in_line import EngineInLine
from tests.integration.service_process import ROOT

# 900 s: the first test of a run may start the session's tritonserver (STARTUP_TIMEOUT_S) in its setup.
pytestmark = [pytest.mark.triton, pytest.mark.timeout(900)]

EXAMPLE = ROOT / "tests/data/spec_examples/ltx-2.3-22b-text-to-video-lora.json"


def scaled_example() -> Ltx2TextToVideoSpec:
    """The spec's own example (multiscale, STG, modality guidance, restart, the distilled LoRA per pass,
    its empty-path LoRA entry), scaled down: 128x64, 9 frames, 2 steps. Expansion off: in process it runs
    on the resident Gemma, which the comparison is not about."""
    message = json_format.ParseDict(json.loads(EXAMPLE.read_text()), pb.Ltx2TextToVideoInput())
    spec = ltx2_spec(message, rng=random.Random(0))
    return dataclasses.replace(
        spec, width=128, height=64, num_frames=9, num_inference_steps=2, expand_prompt=False
    )


def test_spec_example_through_triton_equals_in_process(triton_server: TritonServerProcess) -> None:
    spec = scaled_example()
    assert spec.use_multiscale and spec.generate_audio and spec.distill_lora_second_pass_scale == 0.5
    config = ServiceConfig(triton_url=triton_server.grpc_url)
    # A small response cap, so both the frames and the 48 kHz audio come back in several pieces.
    engine = TritonEngine(config, poll_interval_s=0.02, ready_cache_s=0.0, max_response_bytes=64 * 1024)
    assert engine.ready() and engine.supports(spec.endpoint)
    events: list[Progress] = []
    remote = EngineInLine(engine, config).generate(spec, JobContext.create(on_progress=events.append))
    local_config = ServiceConfig()
    local = EngineInLine(LocalEngine(local_config), local_config).generate(spec, JobContext.create())

    assert remote.frames.shape == local.frames.shape == (9, 64, 128, 3)
    difference = np.abs(remote.frames.astype(np.int16) - local.frames.astype(np.int16))
    assert difference.max() <= 1, f"max difference {difference.max()} levels"
    assert local.audio is not None and remote.audio is not None
    assert remote.audio.shape == local.audio.shape and remote.audio_sample_rate == local.audio_sample_rate
    assert remote.audio.nbytes > 64 * 1024  # it did cross in pieces
    assert float(np.abs(remote.audio - local.audio).max()) <= 1e-3
    assert float(np.abs(local.audio).max()) > 1e-3  # not silence on both sides
    stages = {event.stage for event in events}
    assert {Stage.DENOISING, Stage.UPSAMPLING, Stage.DECODING} <= stages


def test_no_audio_through_triton(triton_server: TritonServerProcess) -> None:
    spec = dataclasses.replace(
        scaled_example(), generate_audio=False, use_multiscale=False, num_inference_steps=1
    )
    config = ServiceConfig(triton_url=triton_server.grpc_url)
    engine = TritonEngine(config, poll_interval_s=0.02, ready_cache_s=0.0)
    video = EngineInLine(engine, config).generate(spec, JobContext.create())
    assert video.audio is None and video.audio_sample_rate == 0
    assert video.frames.shape == (9, 64, 128, 3)
