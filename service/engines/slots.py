"""A fixed number of slots, taken first come first served by worker threads: one stage's pool."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from service.domain.errors import Cancelled
from service.domain.progress import CancelCheck


class Slots:
    """Like a semaphore, but FIFO (jobs take the accelerator in the order they reached it) and a waiter
    that is cancelled leaves the line with `Cancelled`."""

    def __init__(self, count: int, poll_s: float = 0.1) -> None:
        if count < 1:
            raise ValueError(f"a stage needs at least one slot, got {count}")
        self.count = count
        self._free = count
        self._line: deque[object] = deque()
        self._changed = threading.Condition()
        self._poll_s = poll_s  # how often a waiter looks at its cancel flag

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._line)

    def free(self) -> bool:
        with self._changed:
            return self._free > 0 and not self._line

    @contextmanager
    def held(self, is_cancelled: CancelCheck | None = None) -> Iterator[None]:
        self._take(is_cancelled)
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()

    def _take(self, is_cancelled: CancelCheck | None) -> None:
        ticket = object()
        with self._changed:
            self._line.append(ticket)
            try:
                while True:  # the cancel check comes first: a cancelled waiter never takes the slot
                    if is_cancelled is not None and is_cancelled():
                        raise Cancelled()
                    if self._line[0] is ticket and self._free > 0:
                        break
                    self._changed.wait(self._poll_s)
            except BaseException:
                self._line.remove(ticket)
                self._changed.notify_all()
                raise
            self._line.popleft()
            self._free -= 1
            self._changed.notify_all()  # the next in line may take another free slot
