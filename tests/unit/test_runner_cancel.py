"""A Cancel that arrives while the video is decoded or encoded ends the job cancelled: the client was
told CANCELLATION_REQUESTED (issue 8: the job used to succeed)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from service.config import ServiceConfig
from service.domain.errors import Cancelled
from service.domain.outputs import GeneratedVideo
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
        runner(record, lambda _: None, cancel.is_set)
    assert not (tmp_path / "job" / "job.mp4").exists()  # nothing was encoded or stored


def _text_to_video_spec_json(spec_to_json) -> str:
    import json
    import random

    from service.api.endpoints import input_from_json, to_spec

    example = Path(__file__).resolve().parents[1] / "data/spec_examples/ltx-video-lora.json"
    message = input_from_json("ltx-video-lora", json.loads(example.read_text()))
    return spec_to_json(to_spec(message, rng=random.Random(0)))
