"""Times each job's stages and counts its outcome by wrapping the job runner (no edit to the runner).

The stage is read from the progress reports the pipeline already sends: everything before the first
denoising report is `prepare`, denoising/upsampling/decoding is `generate` (the accelerator is busy),
video encoding and storing is `finish`.
"""

from __future__ import annotations

import time

from service.domain.errors import ErrorType, JobError
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.jobs.queue import JobRunner
from service.jobs.records import JobRecord
from service.observability import metrics

StageName = str
_STAGE_OF: dict[Stage, StageName] = {
    Stage.LOADING: "prepare",
    Stage.ENCODING_PROMPT: "prepare",
    Stage.PREPARING_CONDITIONS: "prepare",
    Stage.DENOISING: "generate",
    Stage.UPSAMPLING: "generate",
    Stage.DECODING: "generate",
    Stage.ENCODING_VIDEO: "finish",
    Stage.STORING: "finish",
}


class _StageClock:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.stage: StageName = "prepare"
        self.since = time.monotonic()
        self.busy_token: int | None = None

    def enter(self, stage: StageName) -> None:
        if stage == self.stage:
            return
        self._close()
        self.stage, self.since = stage, time.monotonic()
        if stage == "generate":
            self.busy_token = metrics.BUSY.begin()

    def _close(self) -> None:
        metrics.STAGE_SECONDS.labels(self.endpoint, self.stage).observe(time.monotonic() - self.since)
        if self.busy_token is not None:
            metrics.BUSY.end(self.busy_token)
            self.busy_token = None

    def stop(self) -> None:
        self._close()


def _outcome(error: BaseException | None) -> tuple[str, str]:
    if error is None:
        return "succeeded", ""
    if isinstance(error, JobError):
        status = "cancelled" if error.error_type is ErrorType.CANCELLED else "failed"
        return status, str(error.error_type)
    return "failed", str(ErrorType.INTERNAL_ERROR)


def instrumented(runner: JobRunner) -> JobRunner:
    def run(record: JobRecord, ctx: JobContext) -> str:
        clock = _StageClock(record.endpoint)

        def report(progress: Progress) -> None:
            clock.enter(_STAGE_OF.get(progress.stage, clock.stage))
            ctx.on_progress(progress)

        error: BaseException | None = None
        try:
            return runner(record, ctx.with_progress(report))
        except BaseException as caught:
            error = caught
            raise
        finally:
            clock.stop()
            metrics.JOBS_FINISHED.labels(record.endpoint, *_outcome(error)).inc()

    return run
