"""SIGTERM against a real `ltx-serve`: the drain stops intake, lets a job finish within the grace
period, re-queues one that does not (re-run on restart to the same bytes), and exits on time."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltx.v1 import video_generation_pb2 as pb
from service.jobs.records import JobState
from service.jobs.store import JobStore
from tests.integration.service_process import ServiceProcess

T2V = "ltx-video-lora"
# Long enough on the tiny preset to be mid-run when the signal comes.
JOB = {
    "prompt": "a long walk",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 50,
    "frame_rate": 12,
    "seed": 3,
}
EXIT_MARGIN_S = 5.0  # the Done-when: gone within grace + 5 s


def _wait_denoising(service: ServiceProcess, request_id: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = service.stub.Status(pb.StatusRequest(request_id=request_id), timeout=5)
        if status.progress.stage == "denoising" and status.progress.step >= 1:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{request_id} never started denoising")


def _readiness(service: ServiceProcess) -> int:
    stub = health_pb2_grpc.HealthStub(service.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=2).status


def _sigterm_and_wait(service: ServiceProcess, timeout_s: float) -> float:
    assert service.proc is not None
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    service.proc.wait(timeout=timeout_s)
    return time.monotonic() - started


def _record(data_dir: Path, request_id: str):
    store = JobStore(data_dir / "jobs.sqlite3")
    try:
        return store.get(request_id)
    finally:
        store.close()


def _result_digest(data_dir: Path, request_id: str) -> str:
    return hashlib.sha256((data_dir / "results" / request_id / f"{request_id}.mp4").read_bytes()).hexdigest()


def test_sigterm_lets_the_running_job_finish_and_stops_intake(tmp_path: Path) -> None:
    """The default run's variant: one start, the drain with a long grace period."""
    _drain_with_long_grace(tmp_path)


@pytest.mark.slow
def test_sigterm_drains_then_requeues_and_the_rerun_gives_the_same_bytes(tmp_path: Path) -> None:
    reference = _drain_with_long_grace(tmp_path)
    _short_grace_then_rerun(tmp_path, reference)


def _drain_with_long_grace(tmp_path: Path) -> str:
    """A long grace period: the running job finishes and its result is stored, not thrown away."""
    service = ServiceProcess(tmp_path, ["--shutdown-grace-s", "300"])
    service.start(timeout_s=300)
    try:
        finished = service.submit(T2V, JOB).request_id
        _wait_denoising(service, finished)
        assert service.proc is not None
        service.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert _readiness(service) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            service.submit(T2V, JOB)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        service.proc.wait(timeout=300)
        assert service.proc.returncode == 0
    finally:
        service.stop()
    record = _record(tmp_path, finished)
    assert record is not None and record.state is JobState.SUCCEEDED
    return _result_digest(tmp_path, finished)


def _short_grace_then_rerun(tmp_path: Path, reference: str) -> None:
    """A short grace period: the job is cancelled, re-queued without counting as a retry, and the process
    is gone within grace + 5 s; on restart it runs again, to the same bytes as the uninterrupted run."""
    grace_s = 1.0
    service = ServiceProcess(tmp_path, ["--shutdown-grace-s", str(grace_s)])
    service.start(timeout_s=300)
    try:
        requeued = service.submit(T2V, JOB).request_id
        _wait_denoising(service, requeued)
        elapsed = _sigterm_and_wait(service, timeout_s=60)
    finally:
        service.stop()
    assert elapsed < grace_s + EXIT_MARGIN_S
    record = _record(tmp_path, requeued)
    assert record is not None and record.state is JobState.QUEUED and record.retries == 0

    service = ServiceProcess(tmp_path, [])
    service.start(timeout_s=300)
    try:
        service.wait_completed(requeued, timeout_s=300)
    finally:
        service.stop()
    assert _result_digest(tmp_path, requeued) == reference
