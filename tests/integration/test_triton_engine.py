"""TritonEngine against a real tritonserver running the checked-in model repository (tiny preset, CPU)."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from export.triton_config import read_config
from service.config import ServiceConfig
from service.domain.errors import Cancelled, ErrorType, JobError, RunnerUnavailable
from service.domain.progress import Progress, Stage
from service.domain.specs import LoraSpec, TextToVideoSpec
from service.engines import triton_contract as contract
from service.engines.triton import TritonEngine
from service.engines.triton_backend.params import model_config_from
from service.engines.tritonserver_process import TritonServerProcess
from service.models.loading import load_components
from service.pipelines.text_to_video import generate_text_to_video
from tests.integration.triton_fixtures import MODEL_REPOSITORY, triton_engine, triton_server, triton_session

__all__ = ["triton_engine", "triton_server", "triton_session"]  # fixtures, imported for pytest

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]

SPEC = TextToVideoSpec(
    prompt="a red fox trots through fresh snow",
    negative_prompt="blurry, low quality",
    width=64,
    height=64,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=24,
    seed=1234,
    enable_safety_checker=False,
)
LONG_STEPS = 1000  # far more steps than a test waits for: only a cancelled or killed job ends early


def never() -> bool:
    return False


def test_generates_frames_and_a_progress_event_per_step(triton_engine: TritonEngine) -> None:
    events: list[Progress] = []

    video = triton_engine.generate(SPEC, events.append, never)

    assert video.frames.shape == (9, 64, 64, 3) and video.frames.dtype == np.uint8
    assert (video.frame_rate, video.seed, video.prompt) == (24.0, 1234, SPEC.prompt)
    assert [(e.step, e.total) for e in events if e.stage is Stage.DENOISING] == [(1, 2), (2, 2)]
    assert events[0].stage is Stage.ENCODING_PROMPT and events[-1].stage is Stage.DECODING


def test_same_frames_through_triton_as_in_process(triton_engine: TritonEngine) -> None:
    spec = dataclasses.replace(SPEC, width=96, height=64, num_frames=12, num_inference_steps=3, seed=99)
    # The weights the repository's models were configured with, read from its config.pbtxt.
    config = read_config(MODEL_REPOSITORY / "ltx_pipeline" / "config.pbtxt")
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    components = load_components(model_config_from(parameters))

    expected = generate_text_to_video(components, spec, lambda _: None, never)
    actual = triton_engine.generate(spec, lambda _: None, never)

    assert actual.frames.shape == expected.frames.shape == (12, 64, 96, 3)
    assert expected.frames.std() > 1.0  # not a blank video, so equality means something
    # Same code, same weights, same seed on the same CPU: bit-exact is expected. One uint8 level is allowed
    # for float reductions that a different torch thread count in Triton's stub processes could reorder.
    difference = np.abs(actual.frames.astype(np.int16) - expected.frames.astype(np.int16))
    assert difference.max() <= 1, f"max difference {difference.max()} levels"


def test_cancel_stops_the_triton_request(
    triton_server: TritonServerProcess, triton_engine: TritonEngine
) -> None:
    spec = dataclasses.replace(SPEC, num_inference_steps=LONG_STEPS)
    cancelled = threading.Event()

    def on_progress(progress: Progress) -> None:
        if progress.stage is Stage.DENOISING and progress.step >= 2:
            cancelled.set()

    before = _transformer_executions(triton_server)
    with pytest.raises(Cancelled):
        triton_engine.generate(spec, on_progress, cancelled.is_set)
    settled = _settled_transformer_executions(triton_server)

    # The model saw the cancellation between steps and stopped, far short of the requested steps.
    assert 2 <= settled - before < LONG_STEPS / 2
    # And the model serves the next request.
    assert triton_engine.generate(SPEC, lambda _: None, never).frames.shape == (9, 64, 64, 3)


def test_a_bad_request_fails_alone(triton_engine: TritonEngine, triton_server: TritonServerProcess) -> None:
    errors = _raw_request(triton_server.grpc_url, "ltx-video-lora", "{not json")
    assert errors and contract.SPEC_JSON in errors[0]

    with pytest.raises(JobError) as raised:
        lora_spec = dataclasses.replace(SPEC, loras=(LoraSpec(path="/nonexistent.safetensors"),))
        triton_engine.generate(lora_spec, lambda _: None, never)
    assert raised.value.error_type is ErrorType.LORA_LOAD_FAILED

    assert triton_engine.generate(SPEC, lambda _: None, never).frames.shape == (9, 64, 64, 3)


def test_killed_server_fails_the_job_and_a_restart_recovers(triton_server: TritonServerProcess) -> None:
    engine = TritonEngine(ServiceConfig(triton_url=triton_server.grpc_url), ready_cache_s=0.0)
    spec = dataclasses.replace(SPEC, num_inference_steps=LONG_STEPS)

    def kill_midway(progress: Progress) -> None:
        if progress.stage is Stage.DENOISING and progress.step == 2:
            triton_server.kill()

    started = time.monotonic()
    with pytest.raises(RunnerUnavailable):
        engine.generate(spec, kill_midway, never)
    assert time.monotonic() - started < 60  # failed promptly, did not wait out the job
    assert not engine.ready()

    triton_server.start()  # same ports
    assert engine.ready()
    assert engine.generate(SPEC, lambda _: None, never).frames.shape == (9, 64, 64, 3)


def _transformer_executions(server: TritonServerProcess) -> int:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        statistics = client.get_inference_statistics("transformer", as_json=True)
    return int(statistics["model_stats"][0].get("execution_count", 0))


def _settled_transformer_executions(
    server: TritonServerProcess, quiet_s: float = 1.0, limit_s: float = 60.0
) -> int:
    """The transformer's execution count once it has stopped changing for `quiet_s`."""
    deadline = time.monotonic() + limit_s
    count = _transformer_executions(server)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        latest = _transformer_executions(server)
        if latest == count:
            return count
        count = latest
    raise AssertionError(f"the transformer was still running after {limit_s} s")


def _raw_request(url: str, endpoint: str, spec_json: str) -> list[str]:
    """Send one ltx_pipeline request with tritonclient directly; return the error messages it got."""
    errors: list[str] = []
    done = threading.Event()

    def on_response(result: object, error: object) -> None:
        if error is not None:
            errors.append(str(error))
        done.set()

    with grpcclient.InferenceServerClient(url) as client:
        inputs = []
        for name, text in ((contract.ENDPOINT, endpoint), (contract.SPEC_JSON, spec_json)):
            tensor = grpcclient.InferInput(name, [1], "BYTES")
            tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
            inputs.append(tensor)
        client.start_stream(callback=on_response)
        client.async_stream_infer(contract.PIPELINE_MODEL, inputs)
        assert done.wait(timeout=30), "no response to a bad request"
        client.stop_stream(cancel_requests=True)
    return errors
