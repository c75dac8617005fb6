"""`JobContext`: what every layer below the queue needs to know about the job it runs, passed whole.

One value instead of an `on_progress, is_cancelled` pair threaded through two dozen signatures (and a
request id fished out of a context variable): the job queue builds it for each job it runs (the job id as
request id, progress into the store, the job's cancel flag) and hands it to the job runner,
`ltx_pipeline` builds one for each Triton request, and it goes down unchanged through the runner's stages,
`Engine.generate`, `run_endpoint` and the pipelines' entry functions.

`frame_output` says where a pipeline writes its output frames as they are decoded, chunk by chunk:
None (in-process) lets the pipeline keep them (in memory, or a temporary file for a long video);
`ltx_pipeline` passes one that sends each chunk to the client at once, so no process holds the video.

The generator is not in it, on purpose. The domain layer imports no torch, and a `torch.Generator` is
mutable state (one pipeline draws from several, e.g. one per long-video window seeded `seed + start`),
which a frozen value should not carry. The seed already lives in the normalized spec (validated, stored
with the job, reported in the output), so the pipelines build their generators from it through one
helper, `service.pipelines.seeding.seeded_generator`: one place that says how a seed becomes noise,
and the context stays a plain, torch-free, hashable-by-identity value.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from service.domain.errors import Cancelled
from service.domain.geometry import FrameSize
from service.domain.progress import CancelCheck, Progress, ProgressCallback

JOB_LOGGER = "service.job"


def _ignore_progress(_progress: Progress) -> None:
    return None


def _never_cancelled() -> bool:
    return False


class FrameOutput(Protocol):
    """A video's output frames, written as they become final (in any order, each frame once)."""

    def write(self, start: int, frames: np.ndarray) -> None:
        """uint8 frames [n, H, W, 3] at output frames start..start + n; those past the end are dropped."""
        ...

    def result(self) -> np.ndarray:
        """The whole video [F, H, W, 3], once every frame was written."""
        ...


# (number of frames, frame size) -> where they go
FrameOutputFactory = Callable[[int, FrameSize], FrameOutput]


def job_logger(request_id: str, name: str = JOB_LOGGER) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose every record carries `request_id` (service/logs.py prints it on each line)."""
    return logging.LoggerAdapter(logging.getLogger(name), {"request_id": request_id})


@dataclass(frozen=True)
class JobContext:
    """The job's request id, its progress callback, its cancel check, a logger carrying the id and
    where its frames go (None: the pipeline keeps them)."""

    request_id: str
    on_progress: ProgressCallback
    is_cancelled: CancelCheck
    logger: logging.LoggerAdapter[logging.Logger]
    frame_output: FrameOutputFactory | None = None

    @classmethod
    def create(
        cls,
        request_id: str | None = None,
        on_progress: ProgressCallback = _ignore_progress,
        is_cancelled: CancelCheck = _never_cancelled,
        frame_output: FrameOutputFactory | None = None,
    ) -> JobContext:
        """A context for `request_id` (a fresh one when None: tools, tests, benchmarks); by default
        progress goes nowhere and the job is never cancelled."""
        request_id = request_id or uuid.uuid4().hex
        return cls(request_id, on_progress, is_cancelled, job_logger(request_id), frame_output)

    def report(self, progress: Progress) -> None:
        self.on_progress(progress)

    def raise_if_cancelled(self) -> None:
        """`Cancelled` once the job has been cancelled (call it between steps)."""
        if self.is_cancelled():
            raise Cancelled()

    def with_progress(self, on_progress: ProgressCallback) -> JobContext:
        """The same job reporting through `on_progress` (e.g. to relabel a pass's steps)."""
        return replace(self, on_progress=on_progress)
