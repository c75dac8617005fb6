"""Runs one job through its three stages in a worker thread: prepare -> generate -> finish.

  prepare   (service/inputs/): prompt expansion, media fetch/decode/safety/CRF, LoRA files;
  generate  (the engine): prepared inputs in, frames out, holding one of the accelerator's slots;
  finish    (service/jobs/finish.py): the output's safety check, the H.264 encode, storage.

Each stage has its own bounded pool of slots (`queue.workers` accelerator slots, `stages.prepare_workers`,
`stages.finish_workers`), taken first come first served, and the queue keeps as many jobs in flight as
there are slots in all three. So while the accelerator runs one job, the next is prepared and the previous
finished, and the accelerator never waits on the network or a codec. A job waiting for a slot is cancelled
at once when the client cancels it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Any

from service.config import ServiceConfig
from service.domain.errors import Cancelled
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo, JobOutput, StoredFile
from service.domain.progress import Progress, Stage
from service.domain.specs import spec_from_json
from service.engines.base import Engine
from service.engines.slots import Slots
from service.inputs import InputPreparer, PreparedJob
from service.jobs.finish import Finisher, check_output
from service.jobs.records import JobRecord
from service.logs import request_scope
from service.storage.factory import ResultStorage

log = logging.getLogger(__name__)

WAITING_MESSAGE = "prepared; waiting for the accelerator"


class JobRunner:
    def __init__(
        self,
        engine: Engine,
        storage: ResultStorage,
        config: ServiceConfig,
        preparer: InputPreparer | None = None,
    ) -> None:
        self._engine = engine
        self._preparer = preparer or InputPreparer(config, fetch_lora_files=engine.applies_loras)
        self._finisher = Finisher(storage)
        self._prepare_slots = Slots(config.stages.prepare_workers)
        # `queue.workers = 0` is a queue that runs nothing (e.g. Submit load tests): `max_in_flight` is 0,
        # no job reaches the runner, and its accelerator pool may as well have one slot.
        self._runs_jobs = config.queue.workers > 0
        self._generate_slots = Slots(max(config.queue.workers, 1))
        self._finish_slots = Slots(config.stages.finish_workers)
        self._before_accelerator: set[str] = set()  # jobs preparing or waiting for a generate slot
        self._lock = threading.Lock()

    @property
    def max_in_flight(self) -> int:
        """Jobs the queue should run at once: one per slot of every stage (none with `queue.workers = 0`)."""
        if not self._runs_jobs:
            return 0
        return self._prepare_slots.count + self._generate_slots.count + self._finish_slots.count

    def before_accelerator(self, job_id: str) -> bool:
        """Whether the job is still preparing or waiting for the accelerator: to the client it is queued,
        so a cancel ends it at once (the queue asks)."""
        with self._lock:
            return job_id in self._before_accelerator

    def __call__(self, record: JobRecord, ctx: JobContext) -> str:
        """Run `record` to its output JSON; `ctx` is the job's, built by the queue (request id = job id)."""
        if ctx.request_id != record.job_id:
            raise ValueError(f"context for request {ctx.request_id} handed job {record.job_id}")
        # Every log line of this job, from any module and stage, carries its request id (service/logs.py);
        # TritonEngine sends it as the Triton request id.
        with request_scope(record.job_id):
            return self._run(record, ctx)

    def _run(self, record: JobRecord, ctx: JobContext) -> str:
        spec = spec_from_json(record.endpoint, record.spec_json)
        with self._lock:
            self._before_accelerator.add(record.job_id)
        try:
            with self._prepare_slots.held(ctx.is_cancelled):
                prepared = self._preparer.prepare(spec, ctx)
            video = self._generate(prepared, ctx)
        finally:
            with self._lock:
                self._before_accelerator.discard(record.job_id)
        if ctx.is_cancelled():  # cancelled during the decode: the client was told CANCELLATION_REQUESTED
            raise Cancelled("cancelled by the client")
        # Cancel is checked through the finish stage too (the safety check, between encode chunks) until
        # the result is stored: a job the client was told would stop never ends SUCCEEDED.
        with self._finish_slots.held(ctx.is_cancelled):
            output = self._finisher.finish(video, prepared.checker, ctx, prepared.inputs.spec)
        return output_to_json(output)

    def _generate(self, prepared: PreparedJob, ctx: JobContext) -> GeneratedVideo:
        if not self._generate_slots.free():
            ctx.on_progress(Progress(Stage.WAITING, message=WAITING_MESSAGE))
        with self._generate_slots.held(ctx.is_cancelled):
            with self._lock:
                self._before_accelerator.discard(ctx.request_id)
            started = time.perf_counter()
            video = self._engine.generate(prepared.inputs, prepared.loras, ctx)
            ctx.logger.info("generated %d frames in %.2f s", len(video.frames), time.perf_counter() - started)
            return video


def generate_in_line(
    preparer: InputPreparer,
    engine: Engine,
    spec: Any,
    ctx: JobContext,
) -> GeneratedVideo:
    """One job's prepare and generate stages and its output check, back to back in this thread (tests,
    benchmarks and tools that want frames without the queue)."""
    prepared = preparer.prepare(spec, ctx)
    video = engine.generate(prepared.inputs, prepared.loras, ctx)
    check_output(video, prepared.checker, ctx.on_progress)
    return video


def output_to_json(output: JobOutput) -> str:
    return json.dumps(dataclasses.asdict(output), sort_keys=True)


def output_from_json(text: str) -> JobOutput:
    data: dict[str, Any] = json.loads(text)
    data["video"] = StoredFile(**data["video"])
    return JobOutput(**data)
