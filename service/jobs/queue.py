"""The bounded job queue: submit, cancel, follow; workers that run jobs one at a time per worker.

The SQLite store is the durable truth (state, logs, output); this object adds what need not survive a
restart (latest progress, cancel flags) and wakes up watchers on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from service.config import QueueConfig
from service.domain.errors import ErrorType, JobError
from service.domain.progress import Progress
from service.jobs.records import JobRecord, JobState, LogEntry
from service.jobs.store import JobStore
from service.media.fetch import current_cancel_check

log = logging.getLogger(__name__)

# Runs one job to its output JSON in a worker thread: (record, on_progress, is_cancelled) -> output_json.
JobRunner = Callable[[JobRecord, Callable[[Progress], None], Callable[[], bool]], str]


T = TypeVar("T")

# Store writes that fail (a full disk, a locked database) are retried with this backoff, forever while
# the service runs: a worker never dies of them, and readiness says why it is stuck meanwhile.
STORE_RETRY_FIRST_S = 0.2
STORE_RETRY_MAX_S = 10.0
# After the drain's grace period a cancelled job gets this long to stop at its next step.
DRAIN_CANCEL_WAIT_S = 2.0


class StoreUnavailable(Exception):
    """The job store refused a write (e.g. the disk is full): the API answers UNAVAILABLE."""


class Draining(Exception):
    """The service is shutting down and takes no new jobs: the API answers UNAVAILABLE."""


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
    def __init__(self, store: JobStore, config: QueueConfig, runner: JobRunner) -> None:
        self._store = store
        self._config = config
        self._runner = runner
        self._progress: dict[str, list[Progress]] = {}  # every report, so watchers miss no step
        self._cancel_flags: dict[str, threading.Event] = {}
        self._drain_cancelled: set[str] = set()  # stopped by the drain, not the client: re-queue them
        self._changed = asyncio.Condition()
        self._version = 0  # bumped on every change; watchers compare it to what they last saw
        self._work_available = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stuck: dict[str, str] = {}  # worker name -> why it cannot take jobs right now
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ----

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._persist(self._recover_interrupted, "recovering interrupted jobs")
        self._work_available.set()
        for i in range(self._config.workers):
            name = f"job-worker-{i}"
            self._tasks.append(asyncio.create_task(self._worker(name), name=name))

    async def stop(self) -> None:
        """Stop at once: running jobs stop at their next step and are re-queued on the next start."""
        self._draining = True
        for flag in self._cancel_flags.values():
            flag.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: take no new job; running jobs get `grace_s` to finish, then are cancelled and
        re-queued (a result that completes meanwhile is still stored). Returns within about
        grace_s + DRAIN_CANCEL_WAIT_S, whatever the jobs do."""
        self._draining = True
        self._work_available.set()  # idle workers wake up and exit
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(grace_s, 0.0))
            pending = list(still)
        if pending:
            for job_id, flag in list(self._cancel_flags.items()):
                self._drain_cancelled.add(job_id)
                flag.set()
            _, still = await asyncio.wait(pending, timeout=DRAIN_CANCEL_WAIT_S)
            pending = list(still)
        for task in pending:  # a job stuck past every bound: it stays RUNNING and is re-run on restart
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job_id in list(self._cancel_flags):
            self._best_effort(functools.partial(self._store.requeue, job_id, refund_attempt=True))
            log.warning("job did not stop within the drain; re-queued", extra={"request_id": job_id})

    @property
    def draining(self) -> bool:
        return self._draining

    def unavailable_reason(self) -> str | None:
        """Why no worker can take a job right now (None while at least one can)."""
        if self._draining:
            return "the service is shutting down"
        if self._tasks and len(self._stuck) >= len([t for t in self._tasks if not t.done()]):
            return "; ".join(sorted(set(self._stuck.values())))
        return None

    def _recover_interrupted(self) -> None:
        """Jobs that were running when the service died are run again, up to `max_retries` re-runs
        (or failed at once, if configured)."""
        for job_id in self._store.ids_in_state(JobState.RUNNING):
            record = self._store.get(job_id)
            attempts = record.attempts if record is not None else 0
            if not self._config.requeue_interrupted:
                message = "the service restarted while this job ran; it was not re-run (queue.requeue_interrupted)"
                self._fail_interrupted(job_id, ErrorType.INTERNAL_ERROR, message)
            elif attempts > self._config.max_retries:
                message = (
                    f"the service stopped while this job ran {attempts} times; it is not run again "
                    f"(queue.max_retries = {self._config.max_retries})"
                )
                self._fail_interrupted(job_id, ErrorType.RETRIES_EXHAUSTED, message)
            else:
                self._store.requeue(job_id)
                self._store.add_log(job_id, "the service restarted while this job ran; it was re-queued", "warning")
            log.info("recovered interrupted job (attempts %d)", attempts, extra={"request_id": job_id})

    def _fail_interrupted(self, job_id: str, error_type: ErrorType, message: str) -> None:
        self._store.finish(job_id, JobState.FAILED, error_type=error_type, error_message=message)
        self._store.add_log(job_id, message, "error")

    # ---- API ----

    async def submit(self, endpoint: str, spec_json: str) -> tuple[str, int]:
        if self._draining:
            raise Draining("the service is shutting down; retry on another replica or later")
        try:
            queued = self._store.queued_ids()
            if len(queued) >= self._config.max_queued:
                raise QueueFull(self._config.max_queued)
            job_id = str(uuid.uuid4())
            self._store.insert(job_id, endpoint, spec_json)
        except (sqlite3.Error, OSError) as exc:
            log.error("job store refused a new job: %s", exc)
            raise StoreUnavailable("the job store cannot record new jobs right now; retry later") from exc
        self._best_effort(lambda: self._store.add_log(job_id, f"queued for {endpoint}"))
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
        try:
            outcome = self._cancel(job_id)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable("the job store cannot record the cancellation right now; retry") from exc
        if outcome is CancelOutcome.REQUESTED:
            self._cancel_flags.setdefault(job_id, threading.Event()).set()
        if outcome in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED):
            await self._notify()
        return outcome

    def _cancel(self, job_id: str) -> CancelOutcome:
        record = self._store.get(job_id)
        if record is None:
            return CancelOutcome.NOT_FOUND
        if record.state.finished:
            return CancelOutcome.ALREADY_COMPLETED
        if record.state is JobState.QUEUED and self._store.finish_if_queued(
            job_id, JobState.CANCELLED, ErrorType.CANCELLED, "cancelled by the client while queued"
        ):
            self._best_effort(lambda: self._store.add_log(job_id, "cancelled while queued"))
            return CancelOutcome.CANCELLED
        # Running (or claimed by a worker a moment ago): stop at the next step.
        self._store.mark_cancel_requested(job_id)
        self._best_effort(lambda: self._store.add_log(job_id, "cancellation requested; stopping at the next step"))
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

    async def _persist(self, write: Callable[[], T], what: str, worker: str | None = None) -> T:
        """Run a store write, retrying with backoff while it fails (full disk, locked database).

        While it fails the worker counts as stuck, so readiness turns NOT_SERVING with the reason.
        """
        delay = STORE_RETRY_FIRST_S
        while True:
            try:
                result = write()
            except (sqlite3.Error, OSError) as exc:
                reason = f"the job store rejects writes ({exc}) while {what}"
                if worker is not None:
                    self._stuck[worker] = reason
                log.error("%s; retrying in %.1f s", reason, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)
                continue
            if worker is not None and self._stuck.pop(worker, None) is not None:
                log.info("%s: the job store accepts writes again", worker)
            return result

    def _best_effort(self, write: Callable[[], object]) -> None:
        """A write whose loss costs only a log line (e.g. a progress message)."""
        try:
            write()
        except (sqlite3.Error, OSError) as exc:
            log.warning("job store write dropped: %s", exc)

    async def _worker(self, name: str) -> None:
        """Claims and runs jobs until the drain; nothing a job does can end this loop."""
        while not self._draining:
            try:
                record = await self._persist(self._store.claim_next, "claiming the next job", name)
                if record is None:
                    self._work_available.clear()
                    await self._work_available.wait()
                    continue
                await self._run(record, name)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the queue itself: log it, keep the worker alive
                log.exception("%s: unexpected error; continuing", name)
                self._stuck[name] = "a job worker hit an unexpected error"
                await asyncio.sleep(STORE_RETRY_FIRST_S)
                self._stuck.pop(name, None)

    async def _run(self, record: JobRecord, worker: str) -> None:
        job_id = record.job_id
        flag = self._cancel_flags.setdefault(job_id, threading.Event())
        self._progress[job_id] = []
        if record.cancel_requested:
            flag.set()
        self._best_effort(lambda: self._store.add_log(job_id, f"started (attempt {record.attempts})"))
        await self._notify()
        loop = asyncio.get_running_loop()

        def on_progress(progress: Progress) -> None:  # called from the worker thread
            loop.call_soon_threadsafe(self._record_progress, job_id, progress)

        try:
            outcome = await _in_daemon_thread(self._runner, record, on_progress, flag.is_set)
        except asyncio.CancelledError:
            raise  # stopped hard: the job stays RUNNING and is recovered (and counted) on the next start
        except BaseException as error:  # noqa: BLE001 - every failure of a job ends that job, not the worker
            await self._record_failure(job_id, error, worker)
        else:
            await self._persist(
                lambda: self._store.finish(job_id, JobState.SUCCEEDED, output_json=outcome), "storing a result", worker
            )
            self._best_effort(lambda: self._store.add_log(job_id, "completed"))
        self._cancel_flags.pop(job_id, None)
        self._drain_cancelled.discard(job_id)
        await self._notify()

    async def _record_failure(self, job_id: str, error: BaseException, worker: str) -> None:
        if isinstance(error, JobError) and error.error_type is ErrorType.CANCELLED and job_id in self._drain_cancelled:
            await self._persist(
                lambda: self._store.requeue(job_id, refund_attempt=True), "re-queueing a drained job", worker
            )
            self._best_effort(lambda: self._store.add_log(job_id, "the service is shutting down; re-queued", "warning"))
            log.info("drained job re-queued", extra={"request_id": job_id})
            return
        if isinstance(error, JobError):
            error_type, message = error.error_type, error.message
        elif isinstance(error, OSError) and error.errno == errno.ENOSPC:
            log.error("job failed: the disk is full", extra={"request_id": job_id})
            error_type = ErrorType.INTERNAL_ERROR
            message = f"the service ran out of disk space (request id {job_id}); retry later"
        else:
            log.error("job failed with a bug", exc_info=error, extra={"request_id": job_id})
            error_type = ErrorType.INTERNAL_ERROR
            message = f"internal error (request id {job_id}); the service log has the details"
        state = JobState.CANCELLED if error_type is ErrorType.CANCELLED else JobState.FAILED
        await self._persist(
            lambda: self._store.finish(job_id, state, error_type=error_type, error_message=message),
            "recording a failed job",
            worker,
        )
        self._best_effort(lambda: self._store.add_log(job_id, f"{error_type}: {message}", "error"))

    def _record_progress(self, job_id: str, progress: Progress) -> None:
        self._progress.setdefault(job_id, []).append(progress)
        if progress.message:
            self._best_effort(lambda: self._store.add_log(job_id, progress.message or ""))
        self._version += 1
        asyncio.ensure_future(self._notify())


def _in_daemon_thread(
    runner: JobRunner, record: JobRecord, on_progress: Callable[[Progress], None], is_cancelled: Callable[[], bool]
) -> asyncio.Future[str]:
    """Run a job in a daemon thread: unlike `asyncio.to_thread`, a job stuck in a fetch or a codec
    cannot hold the process past its shutdown deadline."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(result: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or "")

    def body() -> None:
        result: str | None = None
        failure: BaseException | None = None
        current_cancel_check.set(is_cancelled)  # every fetch of this job stops on Cancel
        try:
            result = runner(record, on_progress, is_cancelled)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting worker
            failure = error
        with contextlib.suppress(RuntimeError):  # the loop is gone: the process is exiting
            loop.call_soon_threadsafe(settle, result, failure)

    threading.Thread(target=body, name=f"job-{record.job_id[:8]}", daemon=True).start()
    return future
