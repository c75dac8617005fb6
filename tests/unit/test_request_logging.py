"""Every log line below the queue carries the job's request id, whichever module writes it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from service.domain.context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import Spec, TextToVideoSpec, spec_to_json
from service.jobs.records import JobRecord, JobState
from service.jobs.runner import JobRunner
from service.logs import RequestIdFilter, current_request_id, request_scope
from service.storage.local import LocalStorage

SPEC = TextToVideoSpec(
    prompt="a cat", negative_prompt="", width=32, height=32, num_frames=9, num_inference_steps=1,
    frame_rate=8, seed=1,
)


class Recording(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LoggingEngine:
    """Logs from a module logger of its own and through the context, as engines and pipelines do."""

    def __init__(self) -> None:
        self.contexts: list[JobContext] = []

    def generate(self, spec: Spec, ctx: JobContext) -> GeneratedVideo:
        self.contexts.append(ctx)
        logging.getLogger("service.pipelines.somewhere").info("denoising")
        ctx.log.info("through the context")
        ctx.report(Stage.DENOISING, step=1, total=1)
        return GeneratedVideo(frames=np.zeros((9, 32, 32, 3), np.uint8), frame_rate=8.0, prompt="a cat", seed=1)


def test_the_runner_stamps_every_record_and_passes_the_context(tmp_path: Path) -> None:
    handler = Recording()
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.INFO)
    engine = LoggingEngine()
    reports: list[Progress] = []
    record = JobRecord("job-42", SPEC.endpoint.value, spec_to_json(SPEC), JobState.RUNNING, created_at=0.0)
    try:
        JobRunner(engine, LocalStorage(tmp_path, "http://127.0.0.1:1"))(record, reports.append, lambda: False)  # type: ignore[arg-type]
        logging.getLogger("service.after").info("outside the job")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    inside = [r for r in handler.records if r.name != "service.after"]
    assert {r.getMessage() for r in inside} >= {"denoising", "through the context"}
    assert {getattr(r, "request_id", None) for r in inside} == {"job-42"}
    (outside,) = [r for r in handler.records if r.name == "service.after"]
    assert outside.request_id is None  # type: ignore[attr-defined]
    assert engine.contexts[0].request_id == "job-42"
    assert [r.stage for r in reports][:1] == [Stage.DENOISING]


def test_a_scope_is_per_thread_and_an_explicit_id_wins() -> None:
    seen: list[str | None] = []
    with request_scope("outer"):
        worker = threading.Thread(target=lambda: seen.append(current_request_id()))
        worker.start()
        worker.join()
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.request_id = "explicit"
        RequestIdFilter().filter(record)
        assert current_request_id() == "outer"
    assert seen == [None]  # a plain thread does not inherit the scope (the docstring says so)
    assert getattr(record, "request_id", None) == "explicit"
    assert current_request_id() is None
