"""The frames' way out of ltx_pipeline without a server: a bounded handoff from the pipeline to the
client's fetch requests (the pipeline waits for a slow client instead of queueing the video in
tritonserver), and TritonEngine fetching one piece at a time."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.config import ServiceConfig
from service.contract import pipeline as contract
from service.domain.errors import Cancelled, RunnerUnavailable
from service.domain.job_context import JobContext
from service.engines.triton import FrameFetches, TritonEngine
from service.engines.triton_backend.requests import Piece, PieceHandoff, PieceHandoffs, PiecesEnded


def _never() -> bool:
    return False


def _piece(start: int, count: int = 2, total: int = 40) -> Piece:
    return start, np.full((count, 2, 3, 3), start, dtype=np.uint8), total


def test_the_pipeline_cannot_run_ahead_of_a_client_that_fetches_nothing() -> None:
    handoff = PieceHandoff(capacity=1)
    handoff.put(_piece(0), _never, timeout_s=1.0)
    handoff.take(_never)  # taken, its response not sent yet: still in flight
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="fetched no frames for 0 s"):
        handoff.put(_piece(2), _never, timeout_s=0.3)  # the second piece waits for a fetch
    assert time.monotonic() - started >= 0.3
    assert handoff.waiting == 1


def test_a_slow_client_keeps_at_most_one_piece_in_flight_and_gets_every_piece_in_order() -> None:
    handoff = PieceHandoff(capacity=1)
    pieces = [_piece(start) for start in range(0, 40, 2)]
    counts = {"put": 0, "sent": 0}
    in_flight: list[int] = []  # pieces put and not yet sent, after each put
    lock = threading.Lock()

    def pipeline() -> None:
        for piece in pieces:
            handoff.put(piece, _never, timeout_s=10.0)
            with lock:
                counts["put"] += 1
                in_flight.append(counts["put"] - counts["sent"])
        handoff.wait_sent(_never, timeout_s=10.0)
        handoff.end()

    producer = threading.Thread(target=pipeline)
    producer.start()
    received: list[Piece] = []
    for _ in pieces:
        piece = handoff.take(_never)
        time.sleep(0.01)  # a client slower than the pipeline: the response takes a while to go
        with lock:
            counts["sent"] += 1
        handoff.sent()
        received.append(piece)
    producer.join(timeout=10)
    assert not producer.is_alive()
    assert max(in_flight) == 1  # the pipeline never ran ahead by a second piece
    assert [start for start, _, _ in received] == list(range(0, 40, 2))
    assert all(np.array_equal(got[1], sent[1]) for got, sent in zip(received, pieces, strict=True))
    with pytest.raises(PiecesEnded, match="already taken"):
        handoff.take(_never)  # a fetch past the last piece is refused, not left waiting


def test_a_waiting_fetch_ends_with_the_pipelines_error_and_untaken_pieces_are_dropped() -> None:
    handoff = PieceHandoff(capacity=1)
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            handoff.take(_never)
        except BaseException as exc:  # noqa: BLE001 - handed to the assertions below
            outcome.append(exc)

    waiting = threading.Thread(target=fetch)
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive()  # nothing decoded yet: the fetch waits
    handoff.end("internal_error: the decoder broke")
    waiting.join(timeout=5)
    assert isinstance(outcome[0], PiecesEnded) and outcome[0].message == "internal_error: the decoder broke"

    failed = PieceHandoff(capacity=1)
    failed.put(_piece(0), _never, timeout_s=1.0)
    failed.end("cancelled: by the client")
    assert failed.waiting == 0
    with pytest.raises(PiecesEnded, match="cancelled: by the client"):
        failed.take(_never)


def test_cancellation_frees_a_blocked_pipeline_and_a_blocked_fetch() -> None:
    cancelled = threading.Event()
    full = PieceHandoff(capacity=1)
    full.put(_piece(0), _never, timeout_s=1.0)
    threading.Timer(0.2, cancelled.set).start()
    with pytest.raises(Cancelled):
        full.put(_piece(2), cancelled.is_set, timeout_s=30.0)
    with pytest.raises(Cancelled):
        PieceHandoff(capacity=1).take(cancelled.is_set)


def test_the_registry_refuses_a_second_running_request_with_one_id_and_replaces_an_ended_one() -> None:
    handoffs = PieceHandoffs(capacity=1, keep_ended_s=60.0)
    first = handoffs.open("job-1")
    with pytest.raises(ValueError, match="already in flight"):
        handoffs.open("job-1")
    first.end("internal_error: boom")
    assert handoffs.get("job-1") is first  # a fetch crossing the failure still finds the error
    assert handoffs.open("job-1") is not first  # a job retried with its id starts afresh

    forgetful = PieceHandoffs(capacity=1, keep_ended_s=0.0)
    forgetful.open("job-2").end()
    forgetful.open("job-3")
    assert forgetful.get("job-2") is None and len(forgetful) == 1


class _Result:
    """What tritonclient's InferResult offers TritonEngine: outputs by name, the response's id and flags."""

    def __init__(self, request_id: str, final: bool = False, **outputs: np.ndarray) -> None:
        self.outputs = outputs
        flag = SimpleNamespace(bool_param=final)
        self.response = SimpleNamespace(id=request_id, parameters={"triton_final_response": flag})

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)

    def get_response(self) -> Any:
        return self.response


class _Events(queue.Queue[Any]):
    """The client's event queue, counting the frames pieces that arrived and were not yet read."""

    unread_pieces = 0

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        event = super().get(block, timeout)
        if event[0] is not None and event[0].as_numpy(contract.FRAMES) is not None:
            self.unread_pieces -= 1
        return event


class _FakePipeline:
    """Plays ltx_pipeline on one stream: it answers each fetch with the next piece of `frames`, and its
    FINAL result crosses the first piece (the pipeline may end before its last pieces are fetched)."""

    def __init__(self, events: _Events, frames: np.ndarray, per_piece: int) -> None:
        self.events = events
        self.frames = frames
        self.per_piece = per_piece
        self.fetched: list[str] = []

    def async_stream_infer(self, model: str, inputs: list[Any], request_id: str) -> None:
        assert model == contract.PIPELINE_MODEL and inputs[0].name() == contract.FETCH_FRAMES
        assert self.events.unread_pieces == 0, "a fetch sent while a piece was still on its way"
        start = len(self.fetched) * self.per_piece
        self.fetched.append(request_id)
        piece = self.frames[start : start + self.per_piece]
        outputs: dict[str, np.ndarray] = {
            contract.FRAMES: piece,
            contract.FRAME_START: np.array([start], dtype=np.int64),
            contract.TOTAL_FRAMES: np.array([len(self.frames)], dtype=np.int64),
        }
        self.events.unread_pieces += 1
        self.events.put((_Result(request_id, final=True, **outputs), None))
        if len(self.fetched) == 1:
            result: dict[str, np.ndarray] = {
                contract.FRAME_RATE: np.array([24.0], dtype=np.float32),
                contract.SEED: np.array([7], dtype=np.int64),
                contract.PROMPT: np.array([b"a cat"], dtype=np.object_),
            }
            self.events.put((_Result("job-9", final=True, **result), None))


def _accepted() -> tuple[_Result, None]:
    progress: dict[str, np.ndarray] = {
        contract.STAGE: np.array([b"waiting"], dtype=np.object_),
        contract.STEP: np.array([0], dtype=np.int32),
        contract.TOTAL: np.array([0], dtype=np.int32),
        contract.MESSAGE: np.array([b"accepted"], dtype=np.object_),
    }
    return _Result("job-9", False, **progress), None


def test_the_engine_fetches_one_piece_at_a_time_until_the_video_is_complete() -> None:
    frames = np.random.default_rng(3).integers(0, 256, size=(9, 4, 6, 3), dtype=np.uint8)
    events = _Events()
    pipeline = _FakePipeline(events, frames, per_piece=2)
    events.put(_accepted())
    engine = TritonEngine(ServiceConfig(), poll_interval_s=0.01)

    video = engine._collect(events, JobContext.create("job-9"), FrameFetches(pipeline, "job-9"))

    assert np.array_equal(video.frames, frames) and video.seed == 7 and video.prompt == "a cat"
    assert pipeline.fetched == [f"job-9.frames.{n}" for n in range(5)]  # 2 + 2 + 2 + 2 + 1: none extra


def test_a_fetch_error_fails_the_job_as_the_pipeline_reported_it() -> None:
    events = _Events()
    events.put(_accepted())

    class Failing:
        def async_stream_infer(self, model: str, inputs: list[Any], request_id: str) -> None:
            error = SimpleNamespace(
                status=lambda: None,
                message=lambda: "runner_unavailable: vae_decoder did not answer within 4 s",
            )
            events.put((None, error))

    engine = TritonEngine(ServiceConfig(), poll_interval_s=0.01)
    with pytest.raises(RunnerUnavailable, match="vae_decoder did not answer"):
        engine._collect(events, JobContext.create("job-9"), FrameFetches(Failing(), "job-9"))


def test_tritonserver_starts_with_a_fixed_mmap_threshold_unless_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.engines import tritonserver_process

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert tritonserver_process.allocator_env()["MALLOC_MMAP_THRESHOLD_"] == str(1024**2)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "33554432")  # a benchmark's own choice is kept
    assert tritonserver_process.allocator_env()["MALLOC_MMAP_THRESHOLD_"] == "33554432"
