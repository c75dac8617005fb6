"""The finish stage: the output's safety check, the H.264 encode and storage, off the accelerator.

The extend spec has no `enable_safety_checker` field, so its output is checked whenever the service
has a checker (InputPreparer picked it).
"""

from __future__ import annotations

import os
from typing import Any

from service.domain.outputs import GeneratedVideo, JobOutput, StoredFile
from service.domain.progress import Progress, ProgressCallback, Stage
from service.jobs.ltx2_output import chooses_container, store_video, stored_frame_rate
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


class Finisher:
    """Checks, encodes and stores one job's frames; the result is the job's output."""

    def __init__(self, storage: ResultStorage) -> None:
        self._storage = storage

    def finish(
        self,
        job_id: str,
        video: GeneratedVideo,
        checker: SafetyChecker | None,
        on_progress: ProgressCallback,
        spec: Any = None,
    ) -> JobOutput:
        check_output(video, checker, on_progress)
        frames, height, width = video.frames.shape[:3]
        on_progress(Progress(Stage.ENCODING_VIDEO, message=f"encoding {frames} frames as H.264"))
        if chooses_container(spec):  # LTX-2.3: the request picks the container, codec and quality
            stored = store_video(self._storage, job_id, spec, video)
        else:
            stored = self._store(job_id, video)
        on_progress(Progress(Stage.STORING, message=f"stored {stored.file_name} ({stored.file_size} bytes)"))
        return JobOutput(
            prompt=video.prompt,
            seed=video.seed,
            video=stored,
            width=int(width),
            height=int(height),
            num_frames=int(frames),
            frame_rate=stored_frame_rate(spec.output_type, video.frame_rate)
            if chooses_container(spec)
            else float(video.frame_rate),
        )

    def _store(self, job_id: str, video: GeneratedVideo) -> StoredFile:
        path = self._storage.job_dir(job_id) / f"{job_id}.mp4"
        # Written under a temporary name and renamed when complete: neither a crash mid-encode nor a
        # re-run ever leaves a truncated file where the results server (or an upload) would find it.
        partial = path.with_name(path.name + ".part")
        encode_mp4(video, partial)
        os.replace(partial, path)
        return self._storage.publish(job_id, path, "video/mp4")
