"""The request-handling parts of the decoupled `ltx_pipeline` model that need no Triton: a sender that
several threads may use, heartbeats, in-flight tracking, how many frames one response carries and the
frames streamed out as the pipeline decodes them.

Kept apart from pipeline_model.py (which imports `triton_python_backend_utils`) so they are unit-tested
without a server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

import numpy as np


def frames_per_response(frame_bytes: int, max_bytes: int) -> int:
    """How many frames of `frame_bytes` one response of at most `max_bytes` carries (at least one)."""
    if frame_bytes <= 0 or max_bytes <= 0:
        raise ValueError(f"frame_bytes and max_bytes must be positive, got {frame_bytes} and {max_bytes}")
    return max(1, max_bytes // frame_bytes)


class SerialSender:
    """A request's response sender, used by its own thread and by its heartbeat thread: one send at a time,
    and nothing after the FINAL response."""

    def __init__(self, sender: Any, final_flag: int) -> None:
        self._sender = sender
        self._final_flag = final_flag
        self._lock = threading.Lock()
        self.closed = False

    def send(self, response: Any, final: bool = False) -> bool:
        """Send `response` (with the FINAL flag when `final`); False if the request had already ended."""
        with self._lock:
            if self.closed:
                return False
            if final:
                self.closed = True
                self._sender.send(response, flags=self._final_flag)
            else:
                self._sender.send(response)
            return True


class Heartbeat:
    """Sends `make_response()` every `interval_s` until stopped, so the client can tell a request that is
    queued behind others or in a long step from a lost server without a silence timeout of its own."""

    def __init__(self, sender: SerialSender, make_response: Callable[[], Any], interval_s: float) -> None:
        self._sender = sender
        self._make_response = make_response
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ltx_pipeline-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            # Blind on purpose: what send raises (pb_utils.TritonModelException) exists only in tritonserver.
            try:
                if not self._sender.send(self._make_response()):
                    return
            except Exception:  # noqa: BLE001 - the client is gone: the request thread finds out and ends
                return


class InFlight:
    """Requests being served, so `finalize` can wait for them instead of unloading under them."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    def add(self) -> None:
        with self._changed:
            self._count += 1

    def done(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout_s)


# (first frame, frames [n, H, W, 3] uint8, the video's frame count) -> one response sent
SendFrames = Callable[[int, np.ndarray, int], None]


class StreamedFrames:
    """A request's output frames sent to the client as the pipeline writes them (the pipeline's
    `FrameOutput`, through `JobContext.frame_output`): each chunk split into responses of at most
    `max_bytes` and sent at once, nothing kept, so the stub holds one chunk of a long video, not the
    video. `result()` is a placeholder of the video's shape that owns no memory (all its frames read
    as zero): the frames have gone to the client already."""

    def __init__(self, num_frames: int, height: int, width: int, max_bytes: int, send: SendFrames) -> None:
        self.shape = (num_frames, height, width, 3)
        self._per_response = frames_per_response(height * width * 3, max_bytes)
        self._send = send
        self.sent = 0  # frames sent so far

    def write(self, start: int, frames: np.ndarray) -> None:
        frames = frames[: max(0, self.shape[0] - start)]
        for offset in range(0, len(frames), self._per_response):
            piece = np.ascontiguousarray(frames[offset : offset + self._per_response], dtype=np.uint8)
            self._send(start + offset, piece, self.shape[0])
            self.sent += len(piece)

    def result(self) -> np.ndarray:
        if self.sent != self.shape[0]:
            raise RuntimeError(f"the pipeline wrote {self.sent} of its {self.shape[0]} frames")
        return np.broadcast_to(np.zeros((1, 1, 1, 3), dtype=np.uint8), self.shape)
