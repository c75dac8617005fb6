"""`JobContext`: the job's request id, progress, cancel check and a logger carrying the id, passed whole."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from service.config import ServiceConfig
from service.domain.errors import Cancelled
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.jobs.records import JobRecord, JobState
from service.jobs.runner import JobRunner
from service.pipelines.seeding import seeded_generator
from service.storage.local import LocalStorage


def test_its_logger_puts_the_request_id_on_every_record(caplog: pytest.LogCaptureFixture) -> None:
    ctx = JobContext.create("job-42")
    with caplog.at_level(logging.INFO):
        ctx.logger.info("hello")
        ctx.logger.warning("again", extra={"other": 1})
    assert [getattr(record, "request_id", None) for record in caplog.records] == ["job-42", "job-42"]


def test_cancel_and_progress_go_through_the_callbacks_it_was_given() -> None:
    cancelled = threading.Event()
    seen: list[Progress] = []
    ctx = JobContext.create("job", on_progress=seen.append, is_cancelled=cancelled.is_set)
    ctx.raise_if_cancelled()  # not yet
    ctx.report(Progress(Stage.DENOISING, 1, 2))
    cancelled.set()
    with pytest.raises(Cancelled):
        ctx.raise_if_cancelled()
    assert seen == [Progress(Stage.DENOISING, 1, 2)]


def test_it_is_frozen_and_a_fresh_one_gets_a_fresh_id() -> None:
    ctx = JobContext.create()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.request_id = "other"  # type: ignore[misc]
    assert ctx.request_id and ctx.request_id != JobContext.create().request_id
    relabelled = ctx.with_progress(lambda _p: None)
    assert relabelled.request_id == ctx.request_id and relabelled.on_progress is not ctx.on_progress


def test_seeded_generator_offset_zero_is_the_plain_seed() -> None:
    import torch

    plain = torch.Generator("cpu").manual_seed(7)
    assert torch.equal(torch.randn(4, generator=seeded_generator(7)), torch.randn(4, generator=plain))
    assert not torch.equal(
        torch.randn(4, generator=seeded_generator(7, 1)), torch.randn(4, generator=seeded_generator(7))
    )


class RecordingEngine:
    applies_loras = False

    def __init__(self) -> None:
        self.contexts: list[JobContext] = []

    def generate(self, inputs: object, loras: object, ctx: JobContext) -> GeneratedVideo:
        self.contexts.append(ctx)
        ctx.logger.info("generating")
        return GeneratedVideo(np.zeros((9, 32, 32, 3), np.uint8), 24.0, "p", 1)

    def ready(self) -> bool:
        return True


def test_the_runner_hands_the_engine_one_context_for_the_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from service.domain.specs import TextToVideoSpec, spec_to_json

    engine = RecordingEngine()
    runner = JobRunner(engine, LocalStorage(tmp_path, "http://x"), ServiceConfig())
    spec = TextToVideoSpec("a cat", "", 32, 32, 9, 2, 24, seed=1, enable_safety_checker=False)
    record = JobRecord("job-7", "ltx-video-lora", spec_to_json(spec), JobState.RUNNING, 0.0)
    seen: list[Progress] = []
    with caplog.at_level(logging.INFO):
        runner(record, JobContext.create("job-7", seen.append))
    (ctx,) = engine.contexts
    assert ctx.request_id == "job-7"
    ctx.report(Progress(Stage.DECODING))
    assert seen[-1] == Progress(Stage.DECODING)
    generating = [record for record in caplog.records if record.getMessage() == "generating"]
    assert [getattr(record, "request_id", None) for record in generating] == ["job-7"]
