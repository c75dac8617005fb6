"""A Cancel that arrives while the video is decoded or encoded ends the job cancelled: the client was
told CANCELLATION_REQUESTED (issue 8: the job used to succeed)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from service.config import ServiceConfig
from service.domain.errors import Cancelled
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.specs import VideoOutputType, VideoQuality, VideoWriteMode
from service.jobs.finish import Finisher
from service.jobs.records import JobRecord, JobState
from service.jobs.runner import JobRunner
from service.storage.local import LocalStorage


class DecodingEngine:
    """Returns a video; the client cancels while it is being decoded (after the last step check)."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    applies_loras = True

    def generate(self, inputs, loras, ctx) -> GeneratedVideo:
        self.cancel.set()
        return GeneratedVideo(np.zeros((9, 32, 32, 3), np.uint8), 24.0, "p", 1)


def test_a_cancel_during_the_decode_ends_the_job_cancelled(tmp_path: Path) -> None:
    from service.domain.specs import spec_to_json

    cancel = threading.Event()
    storage = LocalStorage(tmp_path, "http://x")
    runner = JobRunner(DecodingEngine(cancel), storage, ServiceConfig())  # type: ignore[arg-type]
    spec_json = _text_to_video_spec_json(spec_to_json)
    record = JobRecord("job", "ltx-video-lora", spec_json, JobState.RUNNING, 0.0)
    with pytest.raises(Cancelled):
        runner(record, JobContext.create("job", is_cancelled=cancel.is_set))
    assert not (tmp_path / "job" / "job.mp4").exists()  # nothing was encoded or stored


def _text_to_video_spec_json(spec_to_json) -> str:
    import json
    import random

    from service.api.endpoints import input_from_json, to_spec

    example = Path(__file__).resolve().parents[1] / "data/spec_examples/ltx-video-lora.json"
    message = input_from_json("ltx-video-lora", json.loads(example.read_text()))
    return spec_to_json(to_spec(message, rng=random.Random(0)))


class EncodingEngine:
    """Returns 40 frames (three encoder chunks); the test cancels once the encode has begun."""

    applies_loras = True

    def generate(self, inputs, loras, ctx) -> GeneratedVideo:
        frames = np.random.default_rng(0).integers(0, 255, (40, 64, 64, 3), dtype=np.uint8)
        return GeneratedVideo(frames, 24.0, "p", 1)


class CancelOnceEncoding:
    """The client's Cancel, arriving once the encoder has opened its temporary file."""

    def __init__(self, partial: Path) -> None:
        self.partial = partial
        self.fired = False

    def __call__(self) -> bool:
        self.fired = self.fired or self.partial.exists()
        return self.fired


def test_a_cancel_during_the_encode_ends_the_job_cancelled_and_leaves_no_file(tmp_path: Path) -> None:
    from service.domain.specs import spec_to_json

    storage = LocalStorage(tmp_path, "http://x")
    runner = JobRunner(EncodingEngine(), storage, ServiceConfig())  # type: ignore[arg-type]
    record = JobRecord("job", "ltx-video-lora", _text_to_video_spec_json(spec_to_json), JobState.RUNNING, 0.0)
    cancel = CancelOnceEncoding(tmp_path / "job" / "job.mp4.part")
    with pytest.raises(Cancelled, match="encoding"):
        runner(record, JobContext.create("job", is_cancelled=cancel))
    assert cancel.fired  # the encode had begun: its temporary file existed
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == []  # abandoned and removed


def test_a_cancel_before_the_encode_reports_no_encoding(tmp_path: Path) -> None:
    finisher = Finisher(LocalStorage(tmp_path, "http://x"))
    video = EncodingEngine().generate(None, (), None)
    reports: list[object] = []
    ctx = JobContext.create("job", reports.append, lambda: True)
    with pytest.raises(Cancelled):
        finisher.finish(video, None, ctx, spec=None)
    assert reports == []
    assert not (tmp_path / "job").exists() or not any((tmp_path / "job").iterdir())


class ContainerSpec:
    """The LTX-2.3 output fields the container path reads."""

    output_type = VideoOutputType.VP9_WEBM
    video_quality = VideoQuality.LOW
    video_write_mode = VideoWriteMode.FAST
    sync_mode = False


def test_a_cancel_during_a_chosen_container_encode_leaves_no_file(tmp_path: Path) -> None:
    finisher = Finisher(LocalStorage(tmp_path, "http://x"))
    video = EncodingEngine().generate(None, (), None)
    cancel = CancelOnceEncoding(tmp_path / "job" / "job.webm.part")
    with pytest.raises(Cancelled, match="encoding"):
        finisher.finish(video, None, JobContext.create("job", is_cancelled=cancel), ContainerSpec())
    assert cancel.fired
    assert list((tmp_path / "job").iterdir()) == []


def test_without_a_cancel_the_finish_stores_the_video(tmp_path: Path) -> None:
    finisher = Finisher(LocalStorage(tmp_path, "http://x"))
    output = finisher.finish(EncodingEngine().generate(None, (), None), None, JobContext.create("job"), None)
    assert output.num_frames == 40
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["job.mp4"]
