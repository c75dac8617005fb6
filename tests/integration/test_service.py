"""The whole path through a real server on 127.0.0.1: gRPC, validation, queue, pipeline, MP4, HTTP."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ltx.v1 import video_generation_pb2 as pb
from service.api.status import field_violations
from service.client.cli import build_request
from tests.integration.service_process import ServiceProcess

T2V = "ltx-video-lora"
EXAMPLES = Path(__file__).resolve().parents[1] / "data/spec_examples"
# Small and quick: 480x480, 9 frames, 2 steps.
SMALL: dict[str, Any] = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}
# Slow enough to cancel or kill mid-run on the tiny preset: many steps at the largest size.
SLOW: dict[str, Any] = {
    "prompt": "a long walk",
    "resolution": "720p",
    "aspect_ratio": "16:9",
    "number_of_frames": 161,
    "number_of_steps": 50,
    "seed": 1,
}


def decode(data: bytes) -> tuple[int, int, int, float]:
    """(frames, width, height, fps) of an MP4, decoded with PyAV."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.average_rate is not None, "the MP4 has no frame rate"
        return frames, stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def wait_for_state(
    service: ServiceProcess, request_id: str, status: pb.JobStatus.ValueType, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.stub.Status(pb.StatusRequest(request_id=request_id)).status == status:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{request_id} never reached {pb.JobStatus.Name(status)}")


def wait_for_denoising(service: ServiceProcess, request_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = service.stub.Status(pb.StatusRequest(request_id=request_id))
        if status.progress.stage == "denoising" and status.progress.step >= 1:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{request_id} never started denoising")


def test_submit_watch_result_download(service: ServiceProcess) -> None:
    submitted = service.submit(T2V, SMALL)
    assert submitted.endpoint_id == T2V
    events = list(service.stub.Watch(pb.WatchRequest(request_id=submitted.request_id), timeout=120))
    steps = [e.progress.step for e in events if e.progress.stage == "denoising"]
    assert set(range(1, SMALL["number_of_steps"] + 1)) <= set(steps)
    assert events[-1].status == pb.COMPLETED and not events[-1].HasField("error")

    result = service.stub.Result(pb.ResultRequest(request_id=submitted.request_id))
    output = result.output.text_to_video
    assert output.seed == SMALL["seed"]
    assert output.prompt == SMALL["prompt"]
    assert output == events[-1].result.text_to_video
    data = download(output.video.url)
    assert output.video.content_type == "video/mp4"
    assert output.video.file_size == len(data)
    assert output.video.file_name.endswith(".mp4")
    assert decode(data) == (9, 480, 480, 12.0)

    status = service.stub.Status(pb.StatusRequest(request_id=submitted.request_id, logs=True))
    messages = [line.message for line in status.logs]
    assert any("expand_prompt" in m or "safety" in m for m in messages), messages


def test_same_seed_same_video(service: ServiceProcess) -> None:
    def frames(seed: int) -> bytes:
        rid = service.submit(T2V, {**SMALL, "seed": seed}).request_id
        service.wait_completed(rid)
        url = service.stub.Result(pb.ResultRequest(request_id=rid)).output.text_to_video.video.url
        with av.open(io.BytesIO(download(url)), mode="r") as container:
            return b"".join(f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0))

    first, again, other = frames(11), frames(11), frames(12)
    assert first == again
    assert first != other


def test_bad_request_lists_every_violation(service: ServiceProcess) -> None:
    bad = {**SMALL, "prompt": "", "number_of_frames": 1000, "resolution": "1080p"}
    with pytest.raises(grpc.RpcError) as caught:
        service.submit(T2V, bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {field for field, _ in field_violations(caught.value)}
    assert {"prompt", "number_of_frames", "resolution"} <= fields
    described = dict(field_violations(caught.value))
    assert "161" in described["number_of_frames"]  # names the bound


def test_empty_input_and_unknown_id(service: ServiceProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.Submit(pb.SubmitRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    lookups: tuple[Callable[[], object], ...] = (
        lambda: service.stub.Status(pb.StatusRequest(request_id="no-such-id")),
        lambda: service.stub.Result(pb.ResultRequest(request_id="no-such-id")),
    )
    for lookup in lookups:
        with pytest.raises(grpc.RpcError) as missing:
            lookup()
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert service.stub.Cancel(pb.CancelRequest(request_id="no-such-id")).status == pb.NOT_FOUND


def test_cancel_queued_then_running(service: ServiceProcess) -> None:
    running = service.submit(T2V, SLOW).request_id
    queued = service.submit(T2V, SMALL).request_id
    wait_for_denoising(service, running)
    with pytest.raises(grpc.RpcError) as not_ready:
        service.stub.Result(pb.ResultRequest(request_id=running))
    assert not_ready.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    assert service.stub.Cancel(pb.CancelRequest(request_id=queued)).status == pb.OK
    status = service.stub.Status(pb.StatusRequest(request_id=queued))  # immediate: no waiting
    assert status.status == pb.COMPLETED and status.error.error_type == "cancelled"

    assert service.stub.Cancel(pb.CancelRequest(request_id=running)).status == pb.CANCELLATION_REQUESTED
    final = service.wait_completed(running, timeout_s=30)
    assert final.error.error_type == "cancelled"
    assert service.stub.Cancel(pb.CancelRequest(request_id=running)).status == pb.ALREADY_COMPLETED
    result = service.stub.Result(pb.ResultRequest(request_id=running))
    assert result.error.error_type == "cancelled" and not result.HasField("output")


def test_cancelling_generate_cancels_the_job(service: ServiceProcess) -> None:
    call = service.stub.Generate(build_request(T2V, SLOW))
    request_id = ""
    for event in call:
        request_id = event.request_id
        if event.progress.stage == "denoising" and event.progress.step >= 1:
            call.cancel()
            break
    final = service.wait_completed(request_id, timeout_s=30)
    assert final.error.error_type == "cancelled"


def test_watch_disconnect_does_not_cancel(service: ServiceProcess) -> None:
    request_id = service.submit(T2V, {**SMALL, "number_of_steps": 6}).request_id
    watch = service.stub.Watch(pb.WatchRequest(request_id=request_id))
    next(iter(watch))  # iter(): grpc-stubs' CallIterator has no __next__ (the call is its own iterator)
    watch.cancel()
    final = service.wait_completed(request_id)
    assert not final.HasField("error")


def test_uninstalled_camera_lora_is_failed_precondition(service: ServiceProcess) -> None:
    # No camera LoRA directory is configured: a request for one is refused at Submit, not queued.
    example = json.loads((EXAMPLES / "ltx-2.3-22b-text-to-video-lora.json").read_text())
    with pytest.raises(grpc.RpcError) as caught:
        service.submit("ltx-2.3-22b/text-to-video/lora", {**example, "camera_lora": "jib_up"})
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "camera_lora jib_up" in (caught.value.details() or "")


def test_health_and_reflection(service: ServiceProcess) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(service.channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"ltx.v1.VideoGeneration", "grpc.health.v1.Health"} <= names


def test_queue_full_is_resource_exhausted(fresh_service: ServiceProcess) -> None:
    fresh_service.start()
    running = fresh_service.submit(T2V, SLOW).request_id
    wait_for_state(fresh_service, running, pb.IN_PROGRESS)
    # The job stages take the next jobs in hand while one generates (one being prepared, one finished:
    # IN_PROGRESS, "waiting for the accelerator"); only the jobs after them wait in the queue.
    prepared = [fresh_service.submit(T2V, SMALL).request_id for _ in range(2)]
    for request_id in prepared:
        wait_for_state(fresh_service, request_id, pb.IN_PROGRESS)
    waiting = [fresh_service.submit(T2V, SMALL).request_id for _ in range(2)]  # --max-queued 2
    with pytest.raises(grpc.RpcError) as caught:
        fresh_service.submit(T2V, SMALL)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    positions = [fresh_service.stub.Status(pb.StatusRequest(request_id=r)).queue_position for r in waiting]
    assert positions == [0, 1]
    for request_id in [running, *prepared, *waiting]:
        fresh_service.stub.Cancel(pb.CancelRequest(request_id=request_id))


def test_kill_9_loses_no_job(fresh_service: ServiceProcess) -> None:
    fresh_service.start()
    medium = {**SMALL, "number_of_steps": 20, "aspect_ratio": "16:9"}
    ids = [fresh_service.submit(T2V, {**medium, "seed": s}).request_id for s in (1, 2, 3)]
    wait_for_denoising(fresh_service, ids[0])
    fresh_service.kill9()

    fresh_service.start()  # same data dir
    for request_id in ids:
        status = fresh_service.wait_completed(request_id, timeout_s=180)
        assert not status.HasField("error"), status.error
        output = fresh_service.stub.Result(pb.ResultRequest(request_id=request_id)).output.text_to_video
        assert decode(download(output.video.url))[:3] == (9, 854, 480)  # 480p 16:9, the nominal frame
    logs = fresh_service.stub.Status(pb.StatusRequest(request_id=ids[0], logs=True)).logs
    assert any("re-queued" in line.message for line in logs)
