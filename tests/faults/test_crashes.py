"""kill -9 against a real `ltx-serve`: at each stage a job is re-run after the restart and completes; a
job that takes the process down every time (a poison job) stops after `queue.max_retries` re-runs with
`retries_exhausted` instead of crash-looping the service. Slow (several service starts): `-m slow`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ltx.v1 import video_generation_pb2 as pb
from tests.integration.service_process import ServiceProcess

T2V = "ltx-video-lora"
JOB = {
    "prompt": "a long walk",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 30,
    "frame_rate": 12,
    "seed": 5,
}

pytestmark = pytest.mark.slow


def _wait_stage(service: ServiceProcess, request_id: str, stages: set[str], timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = service.stub.Status(pb.StatusRequest(request_id=request_id), timeout=5)
        if status.progress.stage in stages:
            return status.progress.stage
        time.sleep(0.02)
    raise TimeoutError(f"{request_id} never reached {stages}")


@pytest.mark.parametrize("stage", ["denoising", "decoding", "encoding_video"])
def test_kill_9_at_each_stage_then_the_job_completes(tmp_path: Path, stage: str) -> None:
    service = ServiceProcess(tmp_path, [])
    service.start(timeout_s=300)
    try:
        request_id = service.submit(T2V, JOB).request_id
        _wait_stage(service, request_id, {stage, *({"storing"} if stage == "encoding_video" else set())})
        service.kill9()
        service.start(timeout_s=300)
        status = service.wait_completed(request_id, timeout_s=300)
        assert status.status == pb.COMPLETED
    finally:
        service.stop()


def test_a_poison_job_stops_after_the_retry_cap(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path, ["--max-retries", "1"])
    service.start(timeout_s=300)
    try:
        request_id = service.submit(T2V, JOB).request_id
        for _ in range(2):  # the first run and its one re-run both take the process down
            _wait_stage(service, request_id, {"denoising"})
            service.kill9()
            service.start(timeout_s=300)
        deadline = time.monotonic() + 60
        while True:
            result = service.stub.Status(pb.StatusRequest(request_id=request_id), timeout=5)
            if result.status not in (pb.IN_QUEUE, pb.IN_PROGRESS) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert result.error.error_type == "retries_exhausted", result
    finally:
        service.stop()
