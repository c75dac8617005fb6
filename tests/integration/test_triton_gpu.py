"""The generated GPU repository (TensorRT plans) served by NVIDIA's tritonserver (GPU only).

Needs a CUDA GPU, the tensorrt package matching the server's TensorRT, and a tritonserver with the
TensorRT backend (NVIDIA's container: /opt/tritonserver); the wheel's bundled server has only Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from export.components import DEFAULT_COMPONENTS
from export.repository import write_gpu_repository
from export.stages import ExportStages, Precision
from export.tensorrt_build import tensorrt_available
from service.config import ModelConfig, ServiceConfig
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.domain.specs import Endpoint, ImageConditionSpec, MulticonditioningSpec, TextToVideoSpec
from service.engines.torch_bindings import load_components
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess
from service.inputs.media import prepare_conditioning_inputs
from service.media.fetch import FetchLimits
from service.pipelines.multiconditioning import (
    NO_STG_MESSAGE,
    generate_multiconditioning,
    generate_text_to_video,
)
from tests.engine_in_line import EngineInLine
from tests.unit.test_media_inputs import png_uri

CONTAINER_SERVER = Path("/opt/tritonserver/bin/tritonserver")
AVAILABLE, WHY_NOT = tensorrt_available()
if AVAILABLE and not (CONTAINER_SERVER.parents[1] / "backends" / "tensorrt").is_dir():
    AVAILABLE, WHY_NOT = False, f"no tritonserver with the TensorRT backend at {CONTAINER_SERVER}"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.triton,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not AVAILABLE, reason=f"a Triton GPU run needs an NVIDIA GPU: {WHY_NOT}"),
]

SPEC = TextToVideoSpec(
    prompt="a red fox trots through fresh snow",
    negative_prompt="blurry",
    width=480,
    height=480,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=24,
    seed=5,
    enable_safety_checker=False,
)  # 480x480 x 9 frames: the smallest shape inside the engines' optimization profiles


MULTICONDITIONING = MulticonditioningSpec(
    prompt="a red fox trots through fresh snow",
    negative_prompt="blurry",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=480,
    height=480,
    num_frames=9,
    num_inference_steps=2,  # the dev schedule's second step runs STG: the plan's perturbation inputs
    frame_rate=24,
    seed=6,
    images=(ImageConditionSpec(png_uri(480, 480, level=180), start_frame=0, strength=1.0),),
    enable_safety_checker=False,
)


@pytest.fixture(scope="module")
def gpu_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineInLine]:
    """The GPU repository (bf16 TensorRT plans of every component) served by the container's tritonserver."""
    root = tmp_path_factory.mktemp("gpu")
    stages = ExportStages(ServiceConfig(), root / "cache", DEFAULT_COMPONENTS, precision=Precision.BF16)
    engines = {component.name: stages.engine(component) for component in stages.components}
    repository = write_gpu_repository(root / "repository", stages.assets, engines, stages.components)
    server = TritonServerProcess(repository, root / "server", binary=CONTAINER_SERVER)
    try:
        server.start(timeout_s=300)
        config = ServiceConfig(triton_url=server.grpc_url)
        yield EngineInLine(TritonEngine(config), config)
    finally:
        server.stop()


def _mean_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual.astype(np.int16) - expected.astype(np.int16)).mean())


def test_gpu_repository_generates_what_torch_generates(gpu_engine: EngineInLine) -> None:
    events: list[Progress] = []
    video = gpu_engine.generate(SPEC, JobContext.create(on_progress=events.append))
    expected = generate_text_to_video(load_components(ModelConfig()), SPEC, JobContext.create())

    assert video.frames.shape == expected.frames.shape == (9, 480, 480, 3)
    assert [e.step for e in events if e.stage is Stage.DENOISING] == [1, 2]
    # bf16 engines against the fp32 torch pipeline: rounding moves pixels by a few levels, a broken graph
    # by tens on average.
    assert _mean_difference(video.frames, expected.frames) < 4.0


def test_gpu_repository_runs_multiconditioning_with_stg(gpu_engine: EngineInLine) -> None:
    assert gpu_engine.supports(Endpoint.DISTILLED_MULTICONDITIONING)  # every component model is there
    events: list[Progress] = []
    video = gpu_engine.generate(MULTICONDITIONING, JobContext.create(on_progress=events.append))
    inputs = prepare_conditioning_inputs(MULTICONDITIONING, FetchLimits(), None, lambda _: None)
    expected = generate_multiconditioning(
        load_components(ModelConfig()), MULTICONDITIONING, inputs.media, JobContext.create()
    )

    assert video.frames.shape == expected.frames.shape == (9, 480, 480, 3)
    assert NO_STG_MESSAGE not in [e.message for e in events]
    assert _mean_difference(video.frames, expected.frames) < 4.0
