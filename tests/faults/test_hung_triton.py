"""A hung Triton: a real tritonserver on a copy of the model repository whose `vae_decoder` never
answers (its execute blocks), behind a real `ltx-serve --engine triton`. The heartbeats go on, so only
`ltx_pipeline`'s `component_timeout_s` ends the job: it fails as runner_unavailable naming the model,
within that bound; readiness turns NOT_SERVING saying why; the service keeps answering and the engine
is ready again after its hold. Slow (a tritonserver of its own): `-m slow`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltx.v1 import video_generation_pb2 as pb
from service.config import ServiceConfig
from service.domain.errors import RunnerUnavailable
from service.domain.job_context import JobContext
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess
from tests.engine_in_line import EngineInLine
from tests.integration.service_process import ServiceProcess
from tests.integration.test_service_triton import health, wait_health
from tests.integration.test_triton_engine import SPEC
from tests.integration.triton_fixtures import MODEL_REPOSITORY, ROOT, STARTUP_TIMEOUT_S

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(900)]

COMPONENT_TIMEOUT_S = 4.0
HUNG_MODEL = '''
import threading


class TritonPythonModel:
    """vae_decoder that never answers: execute blocks until the model is unloaded."""

    def initialize(self, args):
        self._unloading = threading.Event()

    def execute(self, requests):
        self._unloading.wait(600)
        return None

    def finalize(self):
        self._unloading.set()
'''
SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}


def _parameter(key: str, value: str) -> str:
    return f'parameters {{\n  key: "{key}"\n  value {{\n    string_value: "{value}"\n  }}\n}}\n'


def hung_repository(target: Path) -> Path:
    shutil.copytree(MODEL_REPOSITORY, target)
    for config in target.glob("*/config.pbtxt"):
        extra = _parameter("project_root", str(ROOT))  # the copies' shims find the project by it
        if config.parent.name == "ltx_pipeline":
            extra += _parameter("component_timeout_s", str(COMPONENT_TIMEOUT_S))
            extra += _parameter("heartbeat_s", "0.5")
        config.write_text(config.read_text() + extra)
    (target / "vae_decoder" / "1" / "model.py").write_text(HUNG_MODEL)
    return target


@pytest.fixture(scope="module")
def hung_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    pytest.importorskip(
        "pytriton", reason="the nvidia-pytriton wheel (bundled tritonserver) is not installed"
    )
    work = tmp_path_factory.mktemp("hung-triton")
    server = TritonServerProcess(hung_repository(work / "repository"), work)
    try:
        server.start(timeout_s=STARTUP_TIMEOUT_S)
        yield server
    finally:
        server.stop(grace_s=5)


def test_a_hung_component_fails_the_job_within_its_bound(hung_triton: TritonServerProcess) -> None:
    config = ServiceConfig(triton_url=hung_triton.grpc_url)
    # A 2 s silence timeout, far under the wait: the heartbeats (every 0.5 s) keep the stream alive, so
    # only the component bound can end it.
    engine = TritonEngine(config, response_timeout_s=2.0, ready_cache_s=0.0, wedged_hold_s=3.0)
    assert engine.ready()
    started = time.monotonic()
    with pytest.raises(RunnerUnavailable) as failure:
        EngineInLine(engine, config).generate(SPEC, JobContext.create())
    took = time.monotonic() - started
    print(f"hung vae_decoder: the engine's job failed after {took:.1f} s: {failure.value.message}")
    assert "vae_decoder" in failure.value.message and "within 4 s" in failure.value.message
    assert COMPONENT_TIMEOUT_S <= took < COMPONENT_TIMEOUT_S + 60, took
    reason = engine.unready_reason()
    assert reason is not None and "vae_decoder" in reason
    assert not engine.ready()
    time.sleep(3.5)  # past the hold: ready again (Triton itself answers), so a recovered model gets jobs
    assert engine.unready_reason() is None and engine.ready()


def test_the_service_survives_a_hung_component(hung_triton: TritonServerProcess, tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path, ["--engine", "triton", "--triton-url", hung_triton.grpc_url])
    service.start(timeout_s=120)
    try:
        started = time.monotonic()
        request_id = service.submit("ltx-video-lora", SMALL).request_id
        final = service.wait_completed(request_id, timeout_s=COMPONENT_TIMEOUT_S + 120)
        print(
            f"hung vae_decoder: the service's job ended {final.error.error_type} after {time.monotonic() - started:.1f} s"
        )
        assert final.error.error_type == "runner_unavailable", final.error
        assert "vae_decoder" in final.error.message and "did not answer" in final.error.message
        wait_health(service, 2, timeout_s=10)  # NOT_SERVING (2) while the model is hung ...
        assert "vae_decoder" in service.log_tail(400)  # ... with the reason in the log
        assert service.proc is not None and service.proc.poll() is None  # the worker and process live on
        status = service.stub.Status(pb.StatusRequest(request_id=request_id), timeout=5)
        assert status.status == pb.COMPLETED
        assert health(service) == 2
    finally:
        service.stop()
