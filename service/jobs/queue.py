"""The bounded job queue: submit, cancel, follow; workers that run jobs one at a time per worker.

The SQLite store is the durable truth (state, logs, output); this object adds what need not survive a
restart (latest progress, cancel flags) and wakes up watchers on every change.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from service.config import QueueConfig
from service.domain.errors import ErrorType, JobError
from service.domain.progress import Progress
from service.jobs.records import JobRecord, JobState, LogEntry
from service.jobs.store import JobStore

log = logging.getLogger(__name__)

# Runs one job to its output JSON in a worker thread: (record, on_progress, is_cancelled) -> output_json.
JobRunner = Callable[[JobRecord, Callable[[Progress], None], Callable[[], bool]], str]


class QueueFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full ({limit} requests waiting); retry later")


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # was queued: done at once
    REQUESTED = "requested"  # is running: stops at the next denoising step
    ALREADY_COMPLETED = "already_completed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class JobView:
    """A job as the API shows it: its record plus queue position and latest progress."""

    record: JobRecord
    queue_position: int
    progress: Progress | None


class JobQueue:
    def __init__(
        self, store: JobStore, config: QueueConfig, runner: JobRunner, workers: int | None = None
    ) -> None:
        self._store = store
        self._config = config
        self._runner = runner
        # Jobs in flight at once: the stage runner's slots in all stages (prepare, generate, finish), so
        # the next job is prepared while one generates; `config.workers` when the runner has no stages.
        self._workers = workers or config.workers
        # Their own threads: jobs never wait on, nor starve, the loop's default executor.
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="job")
        self._progress: dict[str, list[Progress]] = {}  # every report, so watchers miss no step
        self._cancel_flags: dict[str, threading.Event] = {}
        self._changed = asyncio.Condition()
        self._version = 0  # bumped on every change; watchers compare it to what they last saw
        self._work_available = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ----

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._recover_interrupted()
        self._work_available.set()
        for i in range(self._workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"job-worker-{i}"))

    async def stop(self) -> None:
        for flag in self._cancel_flags.values():
            flag.set()  # running jobs stop at their next step; they are re-queued on the next start
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False)  # running jobs end at their next cancel check

    def _recover_interrupted(self) -> None:
        """Jobs that were running when the service died are run again (or failed, if configured)."""
        for job_id in self._store.ids_in_state(JobState.RUNNING):
            if self._config.requeue_interrupted:
                self._store.requeue(job_id)
                self._store.add_log(job_id, "the service restarted while this job ran; it was re-queued", "warning")
            else:
                message = "the service restarted while this job ran; it was not re-run (queue.requeue_interrupted)"
                self._store.finish(job_id, JobState.FAILED, error_type=ErrorType.INTERNAL_ERROR, error_message=message)
                self._store.add_log(job_id, message, "error")
            log.info("recovered interrupted job", extra={"request_id": job_id})

    # ---- API ----

    async def submit(self, endpoint: str, spec_json: str) -> tuple[str, int]:
        queued = self._store.queued_ids()
        if len(queued) >= self._config.max_queued:
            raise QueueFull(self._config.max_queued)
        job_id = str(uuid.uuid4())
        self._store.insert(job_id, endpoint, spec_json)
        self._store.add_log(job_id, f"queued for {endpoint}")
        log.info("job queued", extra={"request_id": job_id})
        self._work_available.set()
        await self._notify()
        return job_id, len(queued)

    def view(self, job_id: str) -> JobView | None:
        record = self._store.get(job_id)
        if record is None:
            return None
        position = 0
        if record.state is JobState.QUEUED:
            queued = self._store.queued_ids()
            position = queued.index(job_id) if job_id in queued else 0
        history = self._progress.get(job_id)
        return JobView(record, position, history[-1] if history else None)

    def logs(self, job_id: str, skip: int = 0) -> list[LogEntry]:
        return self._store.logs(job_id, skip)

    def progress_since(self, job_id: str, skip: int = 0) -> list[Progress]:
        """Progress reports of this run of the job, from the `skip`-th on."""
        return self._progress.get(job_id, [])[skip:]

    async def cancel(self, job_id: str) -> CancelOutcome:
        record = self._store.get(job_id)
        if record is None:
            return CancelOutcome.NOT_FOUND
        if record.state.finished:
            return CancelOutcome.ALREADY_COMPLETED
        if record.state is JobState.QUEUED and self._store.finish_if_queued(
            job_id, JobState.CANCELLED, ErrorType.CANCELLED, "cancelled by the client while queued"
        ):
            self._store.add_log(job_id, "cancelled while queued")
            await self._notify()
            return CancelOutcome.CANCELLED
        # Running (or claimed by a worker a moment ago): stop at the next denoising step.
        self._store.mark_cancel_requested(job_id)
        self._cancel_flags.setdefault(job_id, threading.Event()).set()
        self._store.add_log(job_id, "cancellation requested; stopping at the next step")
        await self._notify()
        return CancelOutcome.REQUESTED

    async def follow(self, job_id: str) -> AsyncIterator[JobView]:
        """Yield the job's view now and after every change, ending once it has finished."""
        last: JobView | None = None
        while True:
            version = self._version
            view = self.view(job_id)
            if view is None:
                return
            if view != last:
                yield view
                last = view
            if view.record.state.finished:
                return
            await self._wait_for_change(version)

    async def _wait_for_change(self, seen_version: int) -> None:
        def changed() -> bool:
            return self._version != seen_version

        async with self._changed:
            try:  # the timeout is a safety net, not the normal path
                await asyncio.wait_for(self._changed.wait_for(changed), 5.0)
            except TimeoutError:
                pass

    def purge_expired(self, retention_s: float) -> list[str]:
        expired = self._store.expired(time.time() - retention_s)
        for job_id in expired:
            self._store.delete(job_id)
            self._progress.pop(job_id, None)
        return expired

    # ---- workers ----

    async def _notify(self) -> None:
        self._version += 1
        async with self._changed:
            self._changed.notify_all()

    async def _worker(self) -> None:
        while True:
            record = self._store.claim_next()
            if record is None:
                self._work_available.clear()
                await self._work_available.wait()
                continue
            await self._run(record)

    async def _run(self, record: JobRecord) -> None:
        job_id = record.job_id
        flag = self._cancel_flags.setdefault(job_id, threading.Event())
        self._progress[job_id] = []
        if record.cancel_requested:
            flag.set()
        self._store.add_log(job_id, "started")
        await self._notify()
        loop = asyncio.get_running_loop()

        def on_progress(progress: Progress) -> None:  # called from the worker thread
            loop.call_soon_threadsafe(self._record_progress, job_id, progress)

        try:
            output_json = await loop.run_in_executor(self._executor, self._runner, record, on_progress, flag.is_set)
        except JobError as error:
            state = JobState.CANCELLED if error.error_type is ErrorType.CANCELLED else JobState.FAILED
            self._store.finish(job_id, state, error_type=error.error_type, error_message=error.message)
            self._store.add_log(job_id, f"{error.error_type}: {error.message}", "error")
        except asyncio.CancelledError:
            raise  # service shutting down: the job stays RUNNING and is recovered on the next start
        except Exception:
            log.exception("job failed with a bug", extra={"request_id": job_id})
            message = f"internal error (request id {job_id}); the service log has the details"
            self._store.finish(job_id, JobState.FAILED, error_type=ErrorType.INTERNAL_ERROR, error_message=message)
            self._store.add_log(job_id, message, "error")
        else:
            self._store.finish(job_id, JobState.SUCCEEDED, output_json=output_json)
            self._store.add_log(job_id, "completed")
        finally:
            self._cancel_flags.pop(job_id, None)
        await self._notify()

    def _record_progress(self, job_id: str, progress: Progress) -> None:
        self._progress.setdefault(job_id, []).append(progress)
        if progress.message:
            self._store.add_log(job_id, progress.message)
        self._version += 1
        asyncio.ensure_future(self._notify())
