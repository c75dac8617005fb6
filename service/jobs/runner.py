"""Runs one job end to end in a worker thread: engine -> MP4 encode -> storage -> output JSON."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from service.domain.errors import Cancelled
from service.domain.outputs import GeneratedVideo, JobOutput, StoredFile
from service.domain.progress import Progress, Stage
from service.domain.specs import spec_from_json
from service.engines.base import Engine
from service.jobs.records import JobRecord
from service.media.encode import encode_mp4
from service.storage.factory import ResultStorage

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, engine: Engine, storage: ResultStorage) -> None:
        self._engine = engine
        self._storage = storage

    def __call__(
        self, record: JobRecord, on_progress: Callable[[Progress], None], is_cancelled: Callable[[], bool]
    ) -> str:
        spec = spec_from_json(record.endpoint, record.spec_json)
        video = self._engine.generate(spec, on_progress, is_cancelled)
        if is_cancelled():  # cancelled during the decode: the client was told CANCELLATION_REQUESTED
            raise Cancelled("cancelled by the client")
        on_progress(Progress(Stage.ENCODING_VIDEO, message=f"encoding {len(video.frames)} frames as H.264"))
        stored = self._store(record.job_id, video)
        on_progress(Progress(Stage.STORING, message=f"stored {stored.file_name} ({stored.file_size} bytes)"))
        frames, height, width = video.frames.shape[:3]
        output = JobOutput(
            prompt=video.prompt,
            seed=video.seed,
            video=stored,
            width=int(width),
            height=int(height),
            num_frames=int(frames),
            frame_rate=float(video.frame_rate),
        )
        return output_to_json(output)

    def _store(self, job_id: str, video: GeneratedVideo) -> StoredFile:
        path = self._storage.job_dir(job_id) / f"{job_id}.mp4"
        # Written under a temporary name and renamed when complete: neither a crash mid-encode nor a
        # re-run ever leaves a truncated file where the results server (or an upload) would find it.
        partial = path.with_name(path.name + ".part")
        encode_mp4(video, partial)
        os.replace(partial, path)
        return self._storage.publish(job_id, path, "video/mp4")


def output_to_json(output: JobOutput) -> str:
    return json.dumps(dataclasses.asdict(output), sort_keys=True)


def output_from_json(text: str) -> JobOutput:
    data: dict[str, Any] = json.loads(text)
    data["video"] = StoredFile(**data["video"])
    return JobOutput(**data)
