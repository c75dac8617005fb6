"""Encoding and storing an endpoint's video when its spec chooses the container (LTX-2.3's
`video_output_type`, `video_quality`, `video_write_mode`, `sync_mode`).

`sync_mode`: the file is read back as a `data:` URI for the result and deleted from storage at once, so
the service keeps no downloadable copy (the result itself lives in the job record until retention ends).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from service.domain.errors import Cancelled
from service.domain.outputs import GeneratedVideo, StoredFile
from service.domain.progress import CancelCheck
from service.domain.specs import VideoOutputType
from service.media.container import AudioTrack, EncodeSettings, write_video
from service.storage.factory import ResultStorage

CHUNK_FRAMES = 16  # frames handed to the encoder at a time


def chooses_container(spec: Any) -> bool:
    return hasattr(spec, "output_type") and isinstance(spec.output_type, VideoOutputType)


def encode_settings(spec: Any) -> EncodeSettings:
    return EncodeSettings(spec.output_type, spec.video_quality, spec.video_write_mode)


def store_video(
    storage: ResultStorage,
    job_id: str,
    spec: Any,
    video: GeneratedVideo,
    is_cancelled: CancelCheck = lambda: False,
) -> StoredFile:
    settings = encode_settings(spec)
    path = storage.job_dir(job_id) / f"{job_id}{settings.container.extension}"
    audio = None
    if video.audio is not None and settings.output_type is not VideoOutputType.GIF:
        audio = AudioTrack(video.audio, video.audio_sample_rate)
    # Written under a temporary name and renamed when complete, as the MP4 path does; a cancel stops the
    # encoder between chunks and leaves no file.
    partial = path.with_name(path.name + ".part")
    try:
        write_video(partial, _chunks(video.frames, is_cancelled), video.frame_rate, settings, audio)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    stored = storage.publish(job_id, path, settings.container.content_type)
    if getattr(spec, "sync_mode", False):
        stored = _inline(stored, path)
        storage.delete(job_id)
    return stored


def _chunks(frames: np.ndarray, is_cancelled: CancelCheck) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), CHUNK_FRAMES):
        if is_cancelled():
            raise Cancelled("cancelled by the client while encoding")
        yield frames[start : start + CHUNK_FRAMES]


def _inline(stored: StoredFile, path: Path) -> StoredFile:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return StoredFile(
        url=f"data:{stored.content_type};base64,{data}",
        content_type=stored.content_type,
        file_name=stored.file_name,
        file_size=stored.file_size,
    )
