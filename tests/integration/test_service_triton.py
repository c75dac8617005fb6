"""The service with `--engine triton` against a real tritonserver on the checked-in repository."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltx.v1 import video_generation_pb2 as pb
from service.engines.tritonserver_process import TritonServerProcess
from service.pipelines.multiconditioning import NO_STG_MESSAGE
from tests.integration.service_process import ServiceProcess
from tests.integration.test_service import (
    EXAMPLES,
    SLOW,
    SMALL,
    T2V,
    decode,
    download,
    wait_for_denoising,
)
from tests.integration.triton_fixtures import STARTUP_TIMEOUT_S
from tests.unit.test_media_inputs import png_uri

MULTICONDITIONING = "ltx-video-lora/multiconditioning"
LTX2 = "ltx-2.3-22b/text-to-video/lora"

SLOW_ON_TRITON = SLOW  # the largest legal request: long enough to cancel or kill mid-run


@pytest.fixture
def triton_service(triton_server: TritonServerProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(tmp_path, ["--engine", "triton", "--triton-url", triton_server.grpc_url])
    service.start(timeout_s=120)
    try:
        yield service
    finally:
        service.stop()


def health(service: ServiceProcess) -> int:
    stub = health_pb2_grpc.HealthStub(service.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service="ltx.v1.VideoGeneration"), timeout=5).status


def wait_health(service: ServiceProcess, status: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health(service) == status:
            return
        time.sleep(0.2)
    raise TimeoutError(f"health never became {status}")


def test_text_to_video_through_triton(triton_service: ServiceProcess) -> None:
    request_id = triton_service.submit(T2V, SMALL).request_id
    events = list(triton_service.stub.Watch(pb.WatchRequest(request_id=request_id), timeout=180))
    steps = [e.progress.step for e in events if e.progress.stage == "denoising"]
    assert set(range(1, SMALL["number_of_steps"] + 1)) <= set(steps)
    final = events[-1]
    assert final.status == pb.COMPLETED and not final.HasField("error"), final.error
    assert decode(download(final.result.text_to_video.video.url)) == (9, 480, 480, 12.0)


def test_cancel_running_job_on_triton(triton_service: ServiceProcess) -> None:
    request_id = triton_service.submit(T2V, SLOW_ON_TRITON).request_id
    wait_for_denoising(triton_service, request_id, timeout_s=120)
    assert (
        triton_service.stub.Cancel(pb.CancelRequest(request_id=request_id)).status
        == pb.CANCELLATION_REQUESTED
    )
    final = triton_service.wait_completed(request_id, timeout_s=60)
    assert final.error.error_type == "cancelled"
    assert final.progress.step < SLOW_ON_TRITON["number_of_steps"]


def test_killed_tritonserver_fails_the_job_and_recovers(
    triton_service: ServiceProcess,
    triton_server: TritonServerProcess,
) -> None:
    request_id = triton_service.submit(T2V, SLOW_ON_TRITON).request_id
    wait_for_denoising(triton_service, request_id, timeout_s=120)
    triton_server.kill()

    final = triton_service.wait_completed(request_id, timeout_s=90)
    assert final.error.error_type == "runner_unavailable", final.error
    wait_health(triton_service, health_pb2.HealthCheckResponse.NOT_SERVING, timeout_s=30)
    assert triton_service.proc is not None and triton_service.proc.poll() is None  # the service stays up
    with pytest.raises(grpc.RpcError) as refused:  # new jobs are refused at the door, not queued to fail
        triton_service.submit(T2V, SMALL)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    triton_server.start(timeout_s=STARTUP_TIMEOUT_S)
    wait_health(triton_service, health_pb2.HealthCheckResponse.SERVING, timeout_s=60)
    again = triton_service.submit(T2V, SMALL).request_id
    assert not triton_service.wait_completed(again, timeout_s=180).HasField("error")


def test_multiconditioning_through_triton(triton_service: ServiceProcess) -> None:
    # The images are fetched and decoded by the service, then cross to ltx_pipeline as tensors.
    images = [
        {"image_url": png_uri(480, 480, level=200), "start_frame_number": 0, "strength": 1.0},
        {"image_url": png_uri(240, 240, level=40), "start_frame_number": 8, "strength": 0.8},
    ]
    request_id = triton_service.submit(MULTICONDITIONING, {**SMALL, "images": images}).request_id
    events = list(triton_service.stub.Watch(pb.WatchRequest(request_id=request_id), timeout=180))

    steps = [e.progress.step for e in events if e.progress.stage == "denoising"]
    assert set(range(1, SMALL["number_of_steps"] + 1)) <= set(steps)
    final = events[-1]
    assert final.status == pb.COMPLETED and not final.HasField("error"), final.error
    assert decode(download(final.result.multiconditioning.video.url)) == (9, 480, 480, 12.0)
    logs = triton_service.stub.Status(pb.StatusRequest(request_id=request_id, logs=True)).logs
    messages = [line.message for line in logs]
    assert any("fetched 2 conditioning input(s)" in m for m in messages), messages
    assert NO_STG_MESSAGE not in messages  # the Triton transformer binding runs STG


def test_ltx2_spec_example_through_triton(triton_service: ServiceProcess) -> None:
    # The spec's own example, scaled down, through --engine triton: an MP4 with an AAC stream of the video's
    # duration; a camera LoRA (not resident on the Triton component models) is refused at Submit.
    example = json.loads((EXAMPLES / "ltx-2.3-22b-text-to-video-lora.json").read_text())
    small = {**example, "video_size": {"width": 128, "height": 64}, "num_frames": 9,
             "num_inference_steps": 2, "enable_prompt_expansion": False}  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        triton_service.submit(LTX2, {**small, "camera_lora": "dolly_in"})
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "camera_lora" in (caught.value.details() or "")

    request_id = triton_service.submit(LTX2, small).request_id
    final = triton_service.wait_completed(request_id, timeout_s=300)
    assert not final.HasField("error"), final.error
    result = triton_service.stub.Result(pb.ResultRequest(request_id=request_id))
    data = download(result.output.ltx2_text_to_video.video.url)
    assert decode(data) == (9, 128, 64, 24.0)
    with av.open(io.BytesIO(data)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.rate == 48000
