"""TritonEngine against a real tritonserver running the checked-in model repository (tiny preset, CPU):
text to video, and the conditioned endpoints (multiconditioning with STG, extend, distilled) frame for
frame against their pipelines run in process."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from export.components import SampleSize, TransformerComponent
from export.triton_config import read_config
from service.config import ModelConfig, ServiceConfig
from service.contract import pipeline as contract
from service.domain.errors import Cancelled, ErrorType, JobError, RunnerUnavailable
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import (
    DistilledMulticonditioningSpec,
    ExtendSpec,
    ImageConditionSpec,
    LoraSpec,
    MulticonditioningSpec,
    TextToVideoSpec,
    VideoConditionSpec,
)
from service.engines import triton as triton_module
from service.engines.endpoint_pipelines import PIPELINE_SUPPORTED
from service.engines.torch_bindings import load_components
from service.engines.triton import TritonEngine, served_by_repository
from service.engines.triton_backend.params import model_config_from
from service.engines.tritonserver_process import TritonServerProcess
from service.inputs.media import extend_context, prepare_conditioning_inputs, prepare_extend_input
from service.media.fetch import FetchLimits
from service.models.loading import load_models
from service.models.torch_components import TorchTransformer
from service.pipelines.components import Components, Perturbation
from service.pipelines.distilled import generate_distilled
from service.pipelines.extend import generate_extension
from service.pipelines.multiconditioning import (
    NO_STG_MESSAGE,
    generate_multiconditioning,
    generate_text_to_video,
)
from tests.engine_in_line import EngineInLine
from tests.integration.triton_fixtures import MODEL_REPOSITORY, STARTUP_TIMEOUT_S, triton_engine
from tests.unit.test_media_inputs import mp4_uri, png_uri

__all__ = ["triton_engine"]  # a fixture, imported for pytest (the server ones are in conftest.py)

# 900 s: the first test of a run may start the session's tritonserver (STARTUP_TIMEOUT_S) in its setup.
pytestmark = [pytest.mark.triton, pytest.mark.timeout(900)]

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


def test_the_job_request_id_is_the_triton_request_id(
    triton_server: TritonServerProcess, triton_engine: EngineInLine
) -> None:
    """One job can be followed from the service log into tritonserver's: TritonEngine sends the job
    context's request id (the job's id, in the runner), and ltx_pipeline logs its lines under it."""
    triton_engine.generate(SPEC, JobContext.create("job-trace-7f3a"))
    deadline = time.monotonic() + 10
    while "request job-trace-7f3a:" not in triton_server.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, "ltx_pipeline never logged the job's request id"
        time.sleep(0.2)


def test_generates_frames_and_a_progress_event_per_step(triton_engine: EngineInLine) -> None:
    events: list[Progress] = []

    video = triton_engine.generate(SPEC, JobContext.create(on_progress=events.append))

    assert video.frames.shape == (9, 64, 64, 3) and video.frames.dtype == np.uint8
    assert (video.frame_rate, video.seed, video.prompt) == (24.0, 1234, SPEC.prompt)
    assert [(e.step, e.total) for e in events if e.stage is Stage.DENOISING] == [(1, 2), (2, 2)]
    # Accepted at once, then the pipeline's own stages from encoding the prompt to decoding.
    assert events[0] == Progress(Stage.WAITING, message=f"accepted by {contract.PIPELINE_MODEL}")
    assert events[1].stage is Stage.ENCODING_PROMPT and events[-1].stage is Stage.DECODING


def repository_model_config() -> ModelConfig:
    """The weights the repository's models were configured with (its config.pbtxt parameters)."""
    config = read_config(MODEL_REPOSITORY / "ltx_pipeline" / "config.pbtxt")
    return model_config_from({key: value.string_value for key, value in config.parameters.items()})


@pytest.fixture(scope="module")
def repository_components() -> Components:
    """In-process components with the repository's weights."""
    return load_components(repository_model_config())


def assert_same_frames(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert expected.std() > 1.0  # not a blank video, so equality means something
    # Same code, same weights, same seed on the same CPU: bit-exact is expected. One uint8 level is allowed
    # for float reductions that a different torch thread count in Triton's stub processes could reorder.
    difference = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1, f"max difference {difference.max()} levels"


def test_served_endpoints_are_read_from_the_repository(triton_server: TritonServerProcess) -> None:
    # The checked-in repository has every component model: the four LTX-Video endpoints and LTX-2.3.
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        assert served_by_repository(client, 5.0) == PIPELINE_SUPPORTED
    assert len(PIPELINE_SUPPORTED) == 5


def test_same_frames_through_triton_as_in_process(
    triton_engine: EngineInLine, repository_components: Components
) -> None:
    spec = dataclasses.replace(SPEC, width=96, height=64, num_frames=12, num_inference_steps=3, seed=99)

    expected = generate_text_to_video(repository_components, spec, JobContext.create())
    actual = triton_engine.generate(spec, JobContext.create())

    assert actual.frames.shape == (12, 64, 96, 3)
    assert_same_frames(actual.frames, expected.frames)


def test_cancel_stops_the_triton_request(
    triton_server: TritonServerProcess, triton_engine: EngineInLine
) -> None:
    spec = dataclasses.replace(SPEC, num_inference_steps=LONG_STEPS)
    cancelled = threading.Event()

    def on_progress(progress: Progress) -> None:
        if progress.stage is Stage.DENOISING and progress.step >= 2:
            cancelled.set()

    before = _transformer_executions(triton_server)
    with pytest.raises(Cancelled):
        triton_engine.generate(
            spec, JobContext.create(on_progress=on_progress, is_cancelled=cancelled.is_set)
        )
    settled = _settled_transformer_executions(triton_server)

    # The model saw the cancellation between steps and stopped, far short of the requested steps.
    assert 2 <= settled - before < LONG_STEPS / 2
    # And the model serves the next request.
    assert triton_engine.generate(SPEC, JobContext.create()).frames.shape == (9, 64, 64, 3)


def test_a_bad_request_fails_alone(triton_engine: EngineInLine, triton_server: TritonServerProcess) -> None:
    errors = _raw_request(triton_server.grpc_url, "ltx-video-lora", "{not json")
    assert errors and contract.SPEC_JSON in errors[0]

    with pytest.raises(JobError) as raised:
        lora_spec = dataclasses.replace(SPEC, loras=(LoraSpec(path="/nonexistent.safetensors"),))
        triton_engine.generate(lora_spec, JobContext.create())
    assert raised.value.error_type is ErrorType.LORA_LOAD_FAILED

    assert triton_engine.generate(SPEC, JobContext.create()).frames.shape == (9, 64, 64, 3)


def test_killed_server_fails_the_job_and_a_restart_recovers(triton_server: TritonServerProcess) -> None:
    config = ServiceConfig(triton_url=triton_server.grpc_url)
    engine = EngineInLine(TritonEngine(config, ready_cache_s=0.0), config)
    spec = dataclasses.replace(SPEC, num_inference_steps=LONG_STEPS)

    def kill_midway(progress: Progress) -> None:
        if progress.stage is Stage.DENOISING and progress.step == 2:
            triton_server.kill()

    started = time.monotonic()
    with pytest.raises(RunnerUnavailable):
        engine.generate(spec, JobContext.create(on_progress=kill_midway))
    assert time.monotonic() - started < 60  # failed promptly, did not wait out the job
    assert not engine.ready()

    triton_server.start(timeout_s=STARTUP_TIMEOUT_S)  # same ports; eleven models to load again
    assert engine.ready()
    assert engine.generate(SPEC, JobContext.create()).frames.shape == (9, 64, 64, 3)


def test_frames_arrive_in_pieces_under_a_low_byte_cap(
    triton_server: TritonServerProcess, triton_engine: EngineInLine, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = triton_engine.generate(SPEC, JobContext.create())
    pieces: list[int] = []
    add = triton_module.FrameReceiver.add

    def counting_add(self: triton_module.FrameReceiver, result: object) -> None:
        frames = result.as_numpy(contract.FRAMES)  # type: ignore[attr-defined]
        if frames is not None:
            pieces.append(frames.nbytes)
        add(self, result)

    monkeypatch.setattr(triton_module.FrameReceiver, "add", counting_add)
    cap = 2 * 64 * 64 * 3  # two 64x64 frames
    config = ServiceConfig(triton_url=triton_server.grpc_url)
    capped = EngineInLine(TritonEngine(config, max_response_bytes=cap, memory_frames_bytes=cap), config)

    actual = capped.generate(SPEC, JobContext.create())

    assert len(pieces) == 5 and max(pieces) <= cap  # 9 frames: 2 + 2 + 2 + 2 + 1
    assert isinstance(actual.frames, np.memmap)  # past memory_frames_bytes: received into a file
    assert np.array_equal(actual.frames, expected.frames)


def test_a_request_queued_inside_triton_gets_heartbeats_not_a_timeout(
    triton_server: TritonServerProcess, triton_engine: EngineInLine
) -> None:
    """A request waiting behind another for the accelerator longer than the client's silence timeout
    lives on (heartbeats every 5 s against an 8 s timeout) and runs once the accelerator frees."""
    first_running, second_waiting, stop_first = threading.Event(), threading.Event(), threading.Event()
    first_outcome: list[BaseException] = []

    def run_first() -> None:
        def on_progress(progress: Progress) -> None:
            if progress.stage is Stage.DENOISING:
                first_running.set()

        try:
            # Runs until cancelled: 100x the usual long job, far past the 14 s the second one waits.
            long_spec = dataclasses.replace(SPEC, num_inference_steps=100 * LONG_STEPS)
            triton_engine.generate(
                long_spec, JobContext.create(on_progress=on_progress, is_cancelled=stop_first.is_set)
            )
        except Cancelled as exc:
            first_outcome.append(exc)

    second_events: list[Progress] = []

    def on_second_progress(progress: Progress) -> None:
        second_events.append(progress)
        if progress.message == "waiting for the accelerator":
            second_waiting.set()

    first = threading.Thread(target=run_first)
    first.start()
    try:
        assert first_running.wait(120)
        config = ServiceConfig(triton_url=triton_server.grpc_url)
        second = EngineInLine(TritonEngine(config, response_timeout_s=8.0, ready_cache_s=0.0), config)
        result: list[GeneratedVideo | BaseException] = []

        def run_second() -> None:
            try:
                result.append(second.generate(SPEC, JobContext.create(on_progress=on_second_progress)))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread's assertions below
                result.append(exc)

        waiter = threading.Thread(target=run_second)
        waiter.start()
        assert second_waiting.wait(60)
        time.sleep(14.0)  # well past the second client's 8 s silence timeout
        assert waiter.is_alive(), result  # still waiting, not failed
    finally:
        stop_first.set()
        first.join(60)
    waiter.join(120)
    assert len(first_outcome) == 1
    assert result and isinstance(result[0], GeneratedVideo), result
    assert result[0].frames.shape == (9, 64, 64, 3)
    messages = [event.message for event in second_events if event.stage is Stage.WAITING]
    assert messages[:2] == [f"accepted by {contract.PIPELINE_MODEL}", "waiting for the accelerator"]


# An image at frame 0 and a weaker one at the last frame (a keyframe): both conditioning paths.
IMAGES = (
    ImageConditionSpec(png_uri(64, 64, level=200), start_frame=0, strength=1.0),
    ImageConditionSpec(png_uri(48, 48, level=30), start_frame=16, strength=0.8),
)
MULTICONDITIONING = MulticonditioningSpec(
    prompt="a paper boat drifts across a pond",
    negative_prompt="blurry",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,
    height=64,
    num_frames=17,
    num_inference_steps=2,  # sigmas 1.0, 0.975: the dev schedule's second step runs STG (scale 2)
    frame_rate=24,
    seed=21,
    images=IMAGES,
    enable_safety_checker=False,
)
EXTEND = ExtendSpec(
    prompt="the boat sails on",
    negative_prompt="blurry",
    width=64,
    height=64,
    num_frames=17,
    frame_rate=24,
    num_inference_steps=2,
    seed=22,
    # Keeps 10 input frames, conditions on the last 9 of them, generates 7.
    video=VideoConditionSpec(mp4_uri(12, 64, 64), start_frame=10, strength=1.0),
    expand_prompt=False,
)
DISTILLED = DistilledMulticonditioningSpec(
    prompt="a paper boat drifts across a pond",
    negative_prompt="blurry",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,  # first pass 32x32, upsampled to 64x64
    height=64,
    num_frames=9,
    first_pass_num_inference_steps=2,
    second_pass_num_inference_steps=2,
    second_pass_skip_initial_steps=1,
    frame_rate=24,
    seed=23,
    temporal_adain_factor=0.0,
    tone_map_compression_ratio=0.5,
    constant_rate_factor=20,  # the inputs are re-compressed in the service, before they cross
    images=IMAGES[:1],
    videos=(VideoConditionSpec(mp4_uri(9, 64, 64), start_frame=0, strength=0.5),),
    enable_safety_checker=False,
)

InProcess = Callable[[Components, object, Callable[[Progress], None]], GeneratedVideo]


def _multiconditioning(
    components: Components, spec: object, on_progress: Callable[[Progress], None]
) -> GeneratedVideo:
    assert isinstance(spec, MulticonditioningSpec)
    inputs = prepare_conditioning_inputs(spec, FetchLimits(), None, on_progress)
    assert isinstance(inputs.spec, MulticonditioningSpec)
    return generate_multiconditioning(
        components, inputs.spec, inputs.media, JobContext.create(on_progress=on_progress)
    )


def _distilled(
    components: Components, spec: object, on_progress: Callable[[Progress], None]
) -> GeneratedVideo:
    assert isinstance(spec, DistilledMulticonditioningSpec)
    inputs = prepare_conditioning_inputs(spec, FetchLimits(), None, on_progress)
    assert isinstance(inputs.spec, DistilledMulticonditioningSpec)
    return generate_distilled(
        components, inputs.spec, inputs.media, JobContext.create(on_progress=on_progress)
    )


def _extend(components: Components, spec: object, on_progress: Callable[[Progress], None]) -> GeneratedVideo:
    assert isinstance(spec, ExtendSpec)
    kept = prepare_extend_input(spec, FetchLimits(), None, on_progress)
    context = extend_context(spec, kept)  # as the prepare stage makes it
    return generate_extension(components, spec, kept, context, JobContext.create(on_progress=on_progress))


def _denoising(events: list[Progress]) -> list[tuple[int, int]]:
    return [(e.step, e.total) for e in events if e.stage is Stage.DENOISING and e.total]


@pytest.mark.parametrize(
    ("spec", "in_process", "shape"),
    [
        (MULTICONDITIONING, _multiconditioning, (17, 64, 64, 3)),
        (EXTEND, _extend, (17, 64, 64, 3)),
        (DISTILLED, _distilled, (9, 64, 64, 3)),
    ],
    ids=lambda value: getattr(value, "endpoint", None),
)
def test_same_frames_and_steps_through_triton_as_in_process(
    triton_engine: EngineInLine,
    repository_components: Components,
    spec: object,
    in_process: InProcess,
    shape: tuple[int, ...],
) -> None:
    assert triton_engine.supports(spec.endpoint)  # type: ignore[attr-defined]
    expected_events: list[Progress] = []
    expected = in_process(repository_components, spec, expected_events.append)
    events: list[Progress] = []

    actual = triton_engine.generate(spec, JobContext.create(on_progress=events.append))

    assert actual.frames.shape == shape
    assert_same_frames(actual.frames, expected.frames)
    # A progress event per denoising step of every pass, as the pipeline reports them in process.
    assert len(_denoising(expected_events)) >= 2
    assert _denoising(events) == _denoising(expected_events)


class _WithoutStg:
    """A transformer binding that is not a PerturbableTransformer: the pipeline runs CFG only."""

    def __init__(self, transformer: object) -> None:
        self._transformer = transformer

    def velocity(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self._transformer.velocity(*tensors)  # type: ignore[attr-defined]


def test_stg_perturbed_pass_runs_on_triton(
    triton_engine: EngineInLine, repository_components: Components
) -> None:
    without_stg = dataclasses.replace(
        repository_components, transformer=_WithoutStg(repository_components.transformer)
    )
    with_stg_frames = _multiconditioning(repository_components, MULTICONDITIONING, lambda _: None).frames
    no_stg_events: list[Progress] = []
    no_stg_frames = _multiconditioning(without_stg, MULTICONDITIONING, no_stg_events.append).frames
    events: list[Progress] = []

    actual = triton_engine.generate(MULTICONDITIONING, JobContext.create(on_progress=events.append))

    # The STG step changes the video by far more than the one-level tolerance...
    assert NO_STG_MESSAGE in [e.message for e in no_stg_events]
    assert np.abs(with_stg_frames.astype(np.int16) - no_stg_frames.astype(np.int16)).max() > 4
    # ...and Triton's video is the STG one: its transformer binding ran the perturbed pass.
    assert_same_frames(actual.frames, with_stg_frames)
    assert NO_STG_MESSAGE not in [e.message for e in events]


def test_transformer_model_takes_optional_stg_inputs(
    triton_server: TritonServerProcess, repository_components: Components
) -> None:
    component = TransformerComponent(repository_components.geometry)
    models = load_models(repository_model_config())
    inputs = component.sample_inputs(
        models, SampleSize(batch=2, latent_frames=2, latent_height=2, latent_width=3)
    )
    assert inputs[6].tolist() == [False, True]  # row 1 perturbed, in block 0

    def infer(tensors: tuple[torch.Tensor, ...]) -> np.ndarray:
        request = []
        for declared, tensor in zip(
            component.inputs, tensors, strict=False
        ):  # the optional STG inputs may be left out
            array = tensor.numpy()
            request.append(
                grpcclient.InferInput(declared.name, list(array.shape), np_to_triton_dtype(array.dtype))
            )
            request[-1].set_data_from_numpy(array)
        with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
            return np.asarray(client.infer(component.name, request).as_numpy(component.output_names[0]))

    plain = infer(inputs[:5])
    perturbed = infer(inputs)
    all_false = infer((*inputs[:5], torch.zeros_like(inputs[5]), torch.zeros_like(inputs[6])))

    assert np.array_equal(plain, all_false)  # absent = no perturbation
    binding = TorchTransformer(models.transformer)
    hidden, timestep, coords, text, text_mask = inputs[:5]
    perturbation = Perturbation(skip_blocks=(0,), rows=inputs[6])
    expected = binding.velocity(hidden, timestep, coords, text, text_mask, perturbation).numpy()
    assert np.abs(perturbed - expected).max() < 1e-5
    assert np.array_equal(perturbed[0], plain[0]) and np.abs(perturbed[1] - plain[1]).max() > 1e-2


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
