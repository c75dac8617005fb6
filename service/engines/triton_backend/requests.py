"""The request-handling parts of the decoupled `ltx_pipeline` model that need no Triton: a sender that
several threads may use, heartbeats, in-flight tracking, how many frames one response carries, the
frames streamed out as the pipeline decodes them and the bounded handoff of those frames to the
client's fetch requests.

Kept apart from pipeline_model.py (which imports `triton_python_backend_utils`) so they are unit-tested
without a server.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from service.domain.errors import Cancelled


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

    def __init__(
        self,
        num_frames: int,
        height: int,
        width: int,
        max_bytes: int,
        send: SendFrames,
        after_chunk: Callable[[], None] = lambda: None,
    ) -> None:
        self.shape = (num_frames, height, width, 3)
        self._per_response = frames_per_response(height * width * 3, max_bytes)
        self._send = send
        self._after_chunk = after_chunk  # e.g. wait until the chunk's pieces are gone
        self.sent = 0  # frames sent so far

    def write(self, start: int, frames: np.ndarray) -> None:
        frames = frames[: max(0, self.shape[0] - start)]
        for offset in range(0, len(frames), self._per_response):
            piece = np.ascontiguousarray(frames[offset : offset + self._per_response], dtype=np.uint8)
            self._send(start + offset, piece, self.shape[0])
            self.sent += len(piece)
        self._after_chunk()

    def result(self) -> np.ndarray:
        if self.sent != self.shape[0]:
            raise RuntimeError(f"the pipeline wrote {self.sent} of its {self.shape[0]} frames")
        return np.broadcast_to(np.zeros((1, 1, 1, 3), dtype=np.uint8), self.shape)


# One frames piece: (first frame, frames [n, H, W, 3] uint8, the video's frame count).
Piece = tuple[int, np.ndarray, int]
IsCancelled = Callable[[], bool]
POLL_S = 0.25  # how often a blocked put or take looks at its request's cancel flag


class PiecesEnded(Exception):
    """No more pieces will come: `message` is the pipeline's error text (contract.error_message_for),
    or empty when it ended well and every piece was taken."""

    def __init__(self, message: str) -> None:
        super().__init__(message or "no frames left: every piece was already taken")
        self.message = message


class PieceHandoff:
    """The frames pieces of one `ltx_pipeline` request, handed one at a time to the client's fetch
    requests. Why: tritonserver 2.51's gRPC frontend keeps every response of a request until that request
    ends, so frames sent as responses of the long pipeline request pile up in tritonserver, the whole
    video by the end. Each piece goes out instead as the only response of a short fetch request, and at
    most `capacity` pieces are waiting or being sent: the pipeline blocks (cancellably) until the client
    has fetched one, so every process holds a bounded number of pieces, whatever the video's length."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._pieces: deque[Piece] = deque()
        self._sending = 0  # taken by a fetch whose response is not sent yet
        self._changed = threading.Condition()
        self._ended: str | None = None  # None while the pipeline runs; then its error text ("" if none)
        self.ended_at = 0.0

    def put(self, piece: Piece, is_cancelled: IsCancelled, timeout_s: float) -> None:
        """Queue `piece`, waiting while `capacity` pieces wait or are being sent. Raises Cancelled when
        the request is cancelled, TimeoutError when no piece was fetched for `timeout_s` (a client gone)."""
        self._wait_until(lambda: len(self._pieces) + self._sending < self._capacity, is_cancelled, timeout_s)
        with self._changed:
            self._pieces.append(piece)
            self._changed.notify_all()

    def take(self, is_cancelled: IsCancelled) -> Piece:
        """The next piece, waiting until the pipeline has one; call `sent` once its response is gone.
        Raises Cancelled when the fetch request is cancelled, PiecesEnded when the pipeline has ended and
        nothing is left."""
        with self._changed:
            while not self._pieces:
                if self._ended is not None:
                    raise PiecesEnded(self._ended)
                if is_cancelled():
                    raise Cancelled()
                self._changed.wait(POLL_S)
            piece = self._pieces.popleft()
            self._sending += 1
            return piece

    def sent(self) -> None:
        """A piece that `take` returned has been sent (or its fetch failed): room for the next."""
        with self._changed:
            self._sending -= 1
            self._changed.notify_all()

    def wait_sent(self, is_cancelled: IsCancelled, timeout_s: float) -> None:
        """Wait until every piece put was sent: after each decode chunk, so the next chunk is not decoded
        beside a piece in flight (both would sit in the stub's shared memory), and before the FINAL."""
        self._wait_until(lambda: not self._pieces and not self._sending, is_cancelled, timeout_s)

    def end(self, error_message: str = "") -> None:
        """No more pieces: waiting fetches end with PiecesEnded(`error_message`) once the queue is empty;
        after an error the untaken pieces are dropped."""
        with self._changed:
            if self._ended is None:
                self._ended = error_message
                self.ended_at = time.monotonic()
            if error_message:
                self._pieces.clear()
            self._changed.notify_all()

    @property
    def waiting(self) -> int:
        """Pieces put and not yet sent."""
        with self._changed:
            return len(self._pieces) + self._sending

    def _wait_until(self, ready: Callable[[], bool], is_cancelled: IsCancelled, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not ready():
                if is_cancelled():
                    raise Cancelled()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the client fetched no frames for {timeout_s:.0f} s")
                self._changed.wait(min(POLL_S, remaining))


class PieceHandoffs:
    """The handoff of each pipeline request in flight, by request id. An ended handoff stays findable
    for `keep_ended_s`, so a fetch that crosses the pipeline's failure gets that failure, not an
    unknown-request error."""

    def __init__(self, capacity: int = 1, keep_ended_s: float = 60.0) -> None:
        self._capacity = capacity
        self._keep_ended_s = keep_ended_s
        self._handoffs: dict[str, PieceHandoff] = {}
        self._lock = threading.Lock()

    def open(self, request_id: str) -> PieceHandoff:
        with self._lock:
            self._forget_ended()
            running = self._handoffs.get(request_id)
            if running is not None and not running.ended_at:  # an ended one is replaced (a job retried)
                raise ValueError(f"a request with id {request_id!r} is already in flight")
            handoff = self._handoffs[request_id] = PieceHandoff(self._capacity)
            return handoff

    def get(self, request_id: str) -> PieceHandoff | None:
        with self._lock:
            return self._handoffs.get(request_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._handoffs)

    def _forget_ended(self) -> None:
        now = time.monotonic()
        for request_id, handoff in list(self._handoffs.items()):
            if handoff.ended_at and now - handoff.ended_at >= self._keep_ended_s:
                del self._handoffs[request_id]
