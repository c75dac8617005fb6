"""The finish stage: the output's safety check, the H.264 encode and storage, off the accelerator.

The extend spec has no `enable_safety_checker` field, so its output is checked whenever the service
has a checker (InputPreparer picked it).

A cancel still counts here, up to the moment the result is stored: it is checked after the safety
check and before every chunk the encoder takes, and an encode cut short leaves no file behind (its
temporary file is removed). A client told CANCELLATION_REQUESTED sees the job end CANCELLED.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from service.domain.errors import Cancelled
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo, JobOutput, StoredFile
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.jobs.ltx2_output import chooses_container, store_video
from service.media.encode import encode_mp4
from service.safety.checker import SafetyChecker
from service.storage.factory import ResultStorage

OUTPUT_FIELD = "video"  # the field a flagged output is reported under
SAFETY_PASSED_MESSAGE = "safety checker: the output video passed"


def check_output(video: GeneratedVideo, checker: SafetyChecker | None, on_progress: ProgressCallback) -> None:
    """Raise JobError(content_policy_violation) if the checker flags the output."""
    if checker is None:
        return
    checker.check_frames(video.frames, field=OUTPUT_FIELD)
    on_progress(Progress(Stage.DECODING, message=SAFETY_PASSED_MESSAGE))


def until_cancelled(chunks: Iterable[np.ndarray], is_cancelled: CancelCheck) -> Iterator[np.ndarray]:
    """`chunks`, raising Cancelled before the next one once the job is cancelled (the encoder stops
    between chunks)."""
    for chunk in chunks:
        if is_cancelled():
            raise Cancelled("cancelled by the client while encoding")
        yield chunk


@contextlib.contextmanager
def removed_on_failure(partial: Path) -> Iterator[Path]:
    """A write that fails (or is cancelled) leaves no temporary file behind."""
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class Finisher:
    """Checks, encodes and stores one job's frames; the result is the job's output."""

    def __init__(self, storage: ResultStorage) -> None:
        self._storage = storage

    def finish(
        self, video: GeneratedVideo, checker: SafetyChecker | None, ctx: JobContext, spec: Any
    ) -> JobOutput:
        check_output(video, checker, ctx.on_progress)
        ctx.raise_if_cancelled()
        frames, height, width = video.frames.shape[:3]
        ctx.report(Progress(Stage.ENCODING_VIDEO, message=f"encoding {frames} frames as H.264"))
        if chooses_container(spec):  # LTX-2.3: the request picks the container, codec and quality
            stored = store_video(self._storage, ctx.request_id, spec, video, ctx.is_cancelled)
        else:
            stored = self._store(ctx.request_id, video, ctx.is_cancelled)
        ctx.report(Progress(Stage.STORING, message=f"stored {stored.file_name} ({stored.file_size} bytes)"))
        return JobOutput(
            prompt=video.prompt,
            seed=video.seed,
            video=stored,
            width=int(width),
            height=int(height),
            num_frames=int(frames),
            frame_rate=float(video.frame_rate),  # a GIF's 4/5 cs delays average to it too (media/gif.py)
        )

    def _store(self, job_id: str, video: GeneratedVideo, is_cancelled: CancelCheck) -> StoredFile:
        path = self._storage.job_dir(job_id) / f"{job_id}.mp4"
        # Written under a temporary name and renamed when complete: neither a crash mid-encode nor a
        # re-run ever leaves a truncated file where the results server (or an upload) would find it.
        with removed_on_failure(path.with_name(path.name + ".part")) as partial:
            encode_mp4(video, partial, chunk_filter=lambda chunks: until_cancelled(chunks, is_cancelled))
            os.replace(partial, path)
        return self._storage.publish(job_id, path, "video/mp4")
