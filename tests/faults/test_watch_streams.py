"""Many concurrent Watch streams on one live job (a real `ltx-serve`): every stream gets each denoising
step exactly once, in order (issue 8, item 14: one stream in 20 used to get a duplicate)."""

from __future__ import annotations

import threading
from pathlib import Path

from ltx.v1 import video_generation_pb2 as pb
from tests.integration.service_process import ServiceProcess

STEPS = 12
STREAMS = 24
JOB = {
    "prompt": "a quiet street",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": STEPS,
    "frame_rate": 12,
    "seed": 3,
}


def _watch(
    service: ServiceProcess, request_id: str, into: list[list[int]], errors: list[BaseException]
) -> None:
    steps: list[int] = []
    try:
        for event in service.stub.Watch(pb.WatchRequest(request_id=request_id), timeout=300):
            if event.HasField("progress") and event.progress.stage == "denoising":
                steps.append(event.progress.step)
            if event.status == pb.COMPLETED:
                break
    except BaseException as error:  # noqa: BLE001 - reported by the test thread
        errors.append(error)
    into.append(steps)


def test_concurrent_watch_streams_get_each_step_once_and_in_order(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path, [])
    service.start(timeout_s=300)
    try:
        request_id = service.submit("ltx-video-lora", JOB).request_id
        streams: list[list[int]] = []
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_watch, args=(service, request_id, streams, errors))
            for _ in range(STREAMS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(320)
        assert not errors, errors[0]
        assert service.wait_completed(request_id, timeout_s=60).error.error_type == ""
        assert len(streams) == STREAMS
        # Every stream started while the job was queued, so each sees the whole run: steps 1..STEPS once.
        duplicated = [steps for steps in streams if len(set(steps)) != len(steps)]
        assert not duplicated, f"{len(duplicated)} of {STREAMS} streams repeated a step: {duplicated[0]}"
        for steps in streams:
            assert steps == sorted(steps)
            assert steps == list(range(1, STEPS + 1)), steps
    finally:
        service.stop()
