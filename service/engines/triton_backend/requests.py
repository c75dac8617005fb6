"""The request-handling parts of the decoupled `ltx_pipeline` model that need no Triton: a sender that
several threads may use, heartbeats, in-flight tracking and how many frames one response carries.

Kept apart from pipeline_model.py (which imports `triton_python_backend_utils`) so they are unit-tested
without a server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self


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
