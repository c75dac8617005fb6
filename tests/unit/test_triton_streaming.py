"""ltx_pipeline's request plumbing without a server: frames split under a byte cap, reassembled by the
client into memory or a temporary file; heartbeats; one send at a time; in-flight tracking."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from service.contract import pipeline as contract
from service.domain.geometry import FrameSize
from service.domain.job_context import JobContext
from service.engines.triton import FrameReceiver
from service.engines.triton_backend.requests import (
    Heartbeat,
    InFlight,
    SerialSender,
    StreamedFrames,
    frames_per_response,
)
from service.media.encode import frame_chunks
from service.pipelines.long_video import FrameStore, output_frames
from tests.unit.python_backend_utils import install_python_backend_utils

FINAL = 1


class FakeResult:
    """What tritonclient's InferResult offers the receiver: `as_numpy` by output name."""

    def __init__(self, **outputs: np.ndarray) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)


def _responses(frames: np.ndarray, max_bytes: int) -> list[FakeResult]:
    """The pieces ltx_pipeline hands over for `frames` under `max_bytes` (its _hand_over_frames, without
    pb_utils), as the fetch responses that carry them."""
    total = np.array([len(frames)], dtype=np.int64)
    per_response = frames_per_response(frames[0].nbytes, max_bytes)
    return [
        FakeResult(
            **{
                contract.FRAMES: piece,
                contract.FRAME_START: np.array([index * per_response], dtype=np.int64),
                contract.TOTAL_FRAMES: total,
            }
        )
        for index, piece in enumerate(frame_chunks(frames, per_response))
    ]


def test_frames_per_response_stays_under_the_cap() -> None:
    assert frames_per_response(frame_bytes=100, max_bytes=350) == 3
    assert frames_per_response(frame_bytes=100, max_bytes=50) == 1  # a frame larger than the cap goes alone
    with pytest.raises(ValueError, match="max_bytes"):
        frames_per_response(frame_bytes=100, max_bytes=0)


@pytest.mark.parametrize("memory_bytes", [1 << 30, 1], ids=["in memory", "temporary file"])
def test_receiver_reassembles_pieces_exactly(memory_bytes: int) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(17, 8, 12, 3), dtype=np.uint8)
    receiver = FrameReceiver(memory_bytes)
    pieces = _responses(frames, max_bytes=3 * frames[0].nbytes)
    assert len(pieces) == 6
    for piece in pieces:
        receiver.add(piece)
        receiver.add(FakeResult())  # a heartbeat in between changes nothing
    result = receiver.result("r1")
    assert np.array_equal(result, frames)
    assert isinstance(result, np.memmap) is (memory_bytes == 1)


def test_receiver_refuses_a_video_with_missing_pieces() -> None:
    frames = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    receiver = FrameReceiver(1 << 30)
    for piece in _responses(frames, max_bytes=2 * frames[0].nbytes)[:-1]:
        receiver.add(piece)
    with pytest.raises(RuntimeError, match="with 4 of 5 frames"):
        receiver.result("r2")


def test_receiver_takes_a_whole_video_in_one_response_from_an_older_model() -> None:
    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    receiver = FrameReceiver(1 << 30)
    receiver.add(FakeResult(**{contract.FRAMES: frames}))
    assert np.array_equal(receiver.result("r3"), frames)


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, int]] = []
        self.sending = threading.Lock()
        self.overlaps = 0

    def send(self, response: Any, flags: int = 0) -> None:
        if not self.sending.acquire(blocking=False):
            self.overlaps += 1
            self.sending.acquire()
        try:
            time.sleep(0.001)
            self.sent.append((response, flags))
        finally:
            self.sending.release()


def test_heartbeats_flow_until_stopped_and_never_after_the_final_response() -> None:
    raw = RecordingSender()
    sender = SerialSender(raw, FINAL)
    with Heartbeat(sender, lambda: "beat", interval_s=0.01):
        for k in range(20):
            sender.send(f"progress {k}")
            time.sleep(0.003)
    assert sender.send("result", final=True)
    beats = [response for response, _flags in raw.sent if response == "beat"]
    assert beats  # the request was alive for ~60 ms at a 10 ms interval
    assert raw.overlaps == 0
    assert raw.sent[-1] == ("result", FINAL)
    assert not sender.send("late")  # after FINAL nothing more goes out
    assert raw.sent[-1] == ("result", FINAL)


def test_in_flight_waits_for_the_last_request() -> None:
    in_flight = InFlight()
    in_flight.add()
    in_flight.add()
    assert not in_flight.wait_idle(0.01)

    def finish_both() -> None:
        in_flight.done()
        in_flight.done()

    finisher = threading.Timer(0.05, finish_both)
    finisher.start()
    assert in_flight.wait_idle(5.0)
    assert in_flight.count == 0


def test_pipeline_model_refuses_to_load_unless_decoupled(monkeypatch: pytest.MonkeyPatch) -> None:
    install_python_backend_utils(monkeypatch)
    monkeypatch.delitem(sys.modules, "service.engines.triton_backend.pipeline_model", raising=False)
    monkeypatch.delitem(sys.modules, "service.engines.triton_backend.bls", raising=False)
    from service.engines.triton_backend.pipeline_model import PipelineModel

    config = {"name": "ltx_pipeline", "parameters": {}, "model_transaction_policy": {"decoupled": False}}
    with pytest.raises(ValueError, match="must be decoupled"):
        PipelineModel().initialize({"model_config": json.dumps(config)})


def _streamed(frames: np.ndarray, max_bytes: int, chunks: list[tuple[int, int]], reverse: bool) -> list[Any]:
    """What ltx_pipeline sends while a pipeline writes `frames` chunk by chunk into its StreamedFrames."""

    sent: list[FakeResult] = []

    def send(start: int, piece: np.ndarray, total: int) -> None:
        assert piece.nbytes <= max(max_bytes, piece[0].nbytes)
        sent.append(
            FakeResult(
                **{
                    contract.FRAMES: piece,
                    contract.FRAME_START: np.array([start], dtype=np.int64),
                    contract.TOTAL_FRAMES: np.array([total], dtype=np.int64),
                }
            )
        )

    height, width = frames.shape[1:3]
    ctx = JobContext.create(
        frame_output=lambda n, size: StreamedFrames(n, size.height, size.width, max_bytes, send)
    )
    output = output_frames(ctx, len(frames), FrameSize(width, height), reverse, FrameStore.MEMORY)
    for start, count in chunks:
        before = len(sent)
        output.write(start, frames[start : start + count])
        assert len(sent) > before  # sent at once, not kept for the end
    placeholder = output.result()
    assert placeholder.shape == frames.shape and placeholder.strides[:3] == (0, 0, 0)  # one pixel, broadcast
    return sent


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse_video"])
def test_streamed_frames_are_sent_as_written_and_reassembled(reverse: bool) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(25, 8, 12, 3), dtype=np.uint8)
    sent = _streamed(frames, 3 * frames[0].nbytes, [(0, 8), (8, 8), (16, 9)], reverse)
    assert len(sent) == 9  # each chunk of 8 or 9 frames in pieces of at most 3
    receiver = FrameReceiver(1 << 30)
    for piece in sent:
        receiver.add(piece)
    assert np.array_equal(receiver.result("r3"), frames[::-1] if reverse else frames)


def test_streamed_frames_refuse_a_video_with_frames_never_written() -> None:

    stream = StreamedFrames(5, 4, 4, 1 << 20, lambda start, piece, total: None)
    stream.write(0, np.zeros((3, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="3 of its 5 frames"):
        stream.result()
