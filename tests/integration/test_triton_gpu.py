"""The generated GPU repository (TensorRT plans) served by NVIDIA's tritonserver (GPU only).

Needs a CUDA GPU, the tensorrt package matching the server's TensorRT, and a tritonserver with the
TensorRT backend (NVIDIA's container: /opt/tritonserver); the wheel's bundled server has only Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.components import DEFAULT_COMPONENTS
from export.repository import write_gpu_repository
from export.stages import ExportStages, Precision
from export.tensorrt_build import tensorrt_available
from service.config import ModelConfig, ServiceConfig
from service.domain.progress import Stage
from service.domain.specs import TextToVideoSpec
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess
from service.models.loading import load_components
from service.pipelines.text_to_video import generate_text_to_video

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


def test_gpu_repository_generates_what_torch_generates(tmp_path: Path) -> None:
    stages = ExportStages(ServiceConfig(), tmp_path / "cache", DEFAULT_COMPONENTS, precision=Precision.BF16)
    engines = {component.name: stages.engine(component) for component in stages.components}
    repository = write_gpu_repository(tmp_path / "repository", stages.assets, engines, stages.components)
    server = TritonServerProcess(repository, tmp_path / "server", binary=CONTAINER_SERVER)
    try:
        server.start(timeout_s=300)
        events: list = []
        video = TritonEngine(ServiceConfig(triton_url=server.grpc_url)).generate(
            SPEC, events.append, lambda: False
        )
    finally:
        server.stop()
    expected = generate_text_to_video(load_components(ModelConfig()), SPEC, lambda _: None, lambda: False)

    assert video.frames.shape == expected.frames.shape == (9, 480, 480, 3)
    assert [e.step for e in events if e.stage is Stage.DENOISING] == [1, 2]
    # bf16 engines against the fp32 torch pipeline: rounding moves pixels by a few levels, a broken graph
    # by tens on average.
    mean_difference = np.abs(video.frames.astype(np.int16) - expected.frames.astype(np.int16)).mean()
    assert mean_difference < 4.0
