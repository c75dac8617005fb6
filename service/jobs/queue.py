"""The job queue: submit, cancel, follow; workers that claim jobs under a lease and run them.

The store (SQLite in one process, PostgreSQL across many) is the truth for everything a client sees:
state, queue position, progress, logs, output. This object adds the process-local parts: the workers of
this process, their cancel flags, and a change counter that wakes watchers when the store notifies.
Nothing here depends on which store it is: the same code runs a single process and a fleet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.config import QueueConfig
from service.domain.errors import ErrorType, JobError
from service.domain.progress import Progress, Stage
from service.jobs.records import JobRecord, JobState, LogEntry
from service.jobs.sql_store import NewJob, SqlJobStore

log = logging.getLogger(__name__)

# Runs one job to its output JSON in a worker thread: (record, on_progress, is_cancelled) -> output_json.
JobRunner = Callable[[JobRecord, Callable[[Progress], None], Callable[[], bool]], str]
IDLE_POLL_S = 1.0  # a claim attempt at least this often, in case a notification was missed
MAX_TRACKED_JOBS = 100_000
QUEUED_REFRESH_S = 0.2  # a queued job's watcher re-reads its position at most this often


class QueueFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full ({limit} requests waiting); retry later")


class IdempotencyConflict(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency_key {key!r} was already used for a different input")


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
    webhook: dict[str, Any] | None = None  # the delivery's state, for jobs with a webhook_url


def input_hash(serialized_input: bytes) -> str:
    """What idempotent submits compare: the request's input, not the spec (whose unset seed is random)."""
    return hashlib.sha256(serialized_input).hexdigest()


def progress_to_dict(progress: Progress) -> dict[str, Any]:
    return dataclasses.asdict(progress)


def progress_from_dict(data: dict[str, Any]) -> Progress:
    return Progress(Stage(data["stage"]), data["step"], data["total"], data["message"])


class JobQueue:
    def __init__(
        self,
        store: SqlJobStore,
        config: QueueConfig,
        runner: JobRunner | None,
        *,
        endpoints: Iterable[str] | None = None,
        worker_id: str | None = None,
    ) -> None:
        """`runner` None: a gateway (serves the queue, runs nothing). `endpoints`: what this process's
        workers claim (None = any)."""
        self._store = store
        self._config = config
        self._runner = runner
        self._endpoints = sorted(endpoints) if endpoints is not None else None
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._cancel_flags: dict[str, threading.Event] = {}  # jobs running in this process
        self._changed = asyncio.Condition()
        # Change counters that watchers compare with what they last saw: per job, and for the queue as a
        # whole (a claim or an ending elsewhere moves the queue positions of every waiting job).
        self._job_versions: dict[str, int] = {}
        self._queue_version = 0
        self._work_available = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def store(self) -> SqlJobStore:
        return self._store

    # ---- lifecycle ----

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._store.listen(self._on_store_event)
        if self._runner is not None:
            if not self._store.shared:
                self._recover_interrupted()
            self._work_available.set()
            for i in range(self._config.workers):
                self._tasks.append(asyncio.create_task(self._worker(), name=f"job-worker-{i}"))
            self._tasks.append(asyncio.create_task(self._heartbeat(), name="job-heartbeat"))
        self._tasks.append(asyncio.create_task(self._sweep(), name="job-sweeper"))

    async def stop(self) -> None:
        for flag in self._cancel_flags.values():
            flag.set()  # running jobs stop at their next step; they are re-queued by lease expiry or restart
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await asyncio.to_thread(self._store.unregister_worker, self.worker_id)

    def _recover_interrupted(self) -> None:
        """One process owns this store: jobs RUNNING now belonged to a process that died. They are
        re-queued (counting a retry, as an expired lease is on a shared store) or failed if configured."""
        for job_id in self._store.ids_in_state(JobState.RUNNING):
            record = self._store.get(job_id)
            if record is not None and record.retries >= self._config.max_retries:
                message = f"the job was interrupted more than {self._config.max_retries} times (queue.max_retries)"
                self._store.finish(job_id, JobState.FAILED, error_type=ErrorType.RETRIES_EXHAUSTED,
                                   error_message=message)
                self._store.add_log(job_id, f"retries_exhausted: {message}", "error")
            elif self._config.requeue_interrupted:
                self._store.requeue(job_id, count_retry=True)
                self._store.add_log(job_id, "the service restarted while this job ran; it was re-queued", "warning")
            else:
                message = "the service restarted while this job ran; it was not re-run (queue.requeue_interrupted)"
                self._store.finish(job_id, JobState.FAILED, error_type=ErrorType.INTERNAL_ERROR, error_message=message)
                self._store.add_log(job_id, message, "error")
            log.info("recovered interrupted job", extra={"request_id": job_id})

    # ---- API ----

    async def submit(self, endpoint: str, spec_json: str, new: NewJob | None = None) -> tuple[str, int]:
        """Queue a job: (its id, its queue position). With an idempotency key already used for the same
        input, the first job's id instead (IdempotencyConflict for a different input).

        The store's round trips run in a thread: on PostgreSQL they wait on the network, and the event
        loop keeps serving other calls meanwhile."""
        return await asyncio.to_thread(self._submit_blocking, endpoint, spec_json, new or NewJob())

    def _submit_blocking(self, endpoint: str, spec_json: str, new: NewJob) -> tuple[str, int]:
        if new.idempotency_key:
            existing = self._store.by_idempotency_key(new.idempotency_key)
            if existing is not None:
                return self._same_input_or_conflict(existing, new)
        queued = self._store.queued_count()
        if queued >= self._config.max_queued:
            raise QueueFull(self._config.max_queued)
        job_id = str(uuid.uuid4())
        record = self._store.insert(job_id, endpoint, spec_json, new)
        if record is None:  # another replica took the key between our look-up and the insert
            existing = self._store.by_idempotency_key(new.idempotency_key or "")
            assert existing is not None
            return self._same_input_or_conflict(existing, new)
        self._store.add_log(job_id, f"queued for {endpoint} (priority {new.priority})")
        log.info("job queued", extra={"request_id": job_id})
        self._store.notify("new")
        return job_id, self._store.queue_position(job_id)

    def _same_input_or_conflict(self, existing: JobRecord, new: NewJob) -> tuple[str, int]:
        if existing.input_hash != new.input_hash:
            raise IdempotencyConflict(new.idempotency_key or "")
        position = self._store.queue_position(existing.job_id) if existing.state is JobState.QUEUED else 0
        return existing.job_id, position

    def view(self, job_id: str) -> JobView | None:
        record = self._store.get(job_id)
        if record is None:
            return None
        position = self._store.queue_position(job_id) if record.state is JobState.QUEUED else 0
        latest = self._store.latest_progress(job_id, record.runs) if record.state is JobState.RUNNING else None
        webhook = self._store.webhook(job_id) if record.webhook_url else None
        return JobView(record, position, progress_from_dict(latest) if latest else None, webhook)

    def logs(self, job_id: str, skip: int = 0) -> list[LogEntry]:
        return self._store.logs(job_id, skip)

    def progress_since(self, job_id: str, skip: int = 0) -> list[Progress]:
        """Progress reports of the job's current run, from the `skip`-th on."""
        record = self._store.get(job_id)
        if record is None:
            return []
        return [progress_from_dict(p) for p in self._store.progress(job_id, record.runs, skip)]

    async def cancel(self, job_id: str) -> CancelOutcome:
        return await asyncio.to_thread(self._cancel_blocking, job_id)

    def _cancel_blocking(self, job_id: str) -> CancelOutcome:
        record = self._store.get(job_id)
        if record is None:
            return CancelOutcome.NOT_FOUND
        if record.state.finished:
            return CancelOutcome.ALREADY_COMPLETED
        if record.state is JobState.QUEUED and self._store.finish_if_queued(
            job_id, JobState.CANCELLED, ErrorType.CANCELLED, "cancelled by the client while queued"
        ):
            self._store.add_log(job_id, "cancelled while queued")
            self._store.notify("state", job_id)
            return CancelOutcome.CANCELLED
        # Running (or claimed a moment ago), here or on another worker: it stops at the next step.
        self._store.mark_cancel_requested(job_id)
        if job_id in self._cancel_flags:  # running in this process: no need to wait for the notification
            self._cancel_flags[job_id].set()
        self._store.add_log(job_id, "cancellation requested; stopping at the next step")
        self._store.notify("cancel", job_id)
        return CancelOutcome.REQUESTED

    async def follow(self, job_id: str) -> AsyncIterator[JobView]:
        """Yield the job's view now and after every change, ending once it has finished.

        A running job's watcher wakes for that job's own events; a queued job's watcher also for queue
        moves, at most every QUEUED_REFRESH_S (hundreds of waiting watchers would otherwise re-read the
        store on every claim)."""
        last: JobView | None = None
        while True:
            seen = (self._job_versions.get(job_id, 0), self._queue_version)
            view = await asyncio.to_thread(self.view, job_id)
            if view is None:
                return
            if view != last:
                yield view
                last = view
            if view.record.state.finished:
                return
            queued = view.record.state is JobState.QUEUED
            await self._wait_for_change(job_id, seen, queued)
            if queued and self._job_versions.get(job_id, 0) == seen[0]:
                await asyncio.sleep(QUEUED_REFRESH_S)

    async def _wait_for_change(self, job_id: str, seen: tuple[int, int], queued: bool) -> None:
        def changed() -> bool:
            return self._job_versions.get(job_id, 0) != seen[0] or (queued and self._queue_version != seen[1])

        async with self._changed:
            try:  # the timeout is a safety net, not the normal path
                await asyncio.wait_for(self._changed.wait_for(changed), 5.0)
            except TimeoutError:
                pass

    def purge_expired(self, retention_s: float) -> list[str]:
        """Delete jobs finished longer than `retention_s` ago; each id goes to one replica only."""
        return self._store.purge_expired(time.time() - retention_s)

    # ---- notifications ----

    def _on_store_event(self, kind: str, job_id: str) -> None:
        """Called by the store, from any thread, for changes made by any process."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._apply_event, kind, job_id)

    def _apply_event(self, kind: str, job_id: str) -> None:
        if kind == "new":
            self._work_available.set()
        elif kind == "cancel" and job_id in self._cancel_flags:
            self._cancel_flags[job_id].set()
        if job_id:
            if len(self._job_versions) > MAX_TRACKED_JOBS:  # bounded: a reset only wakes watchers once
                self._job_versions.clear()
            self._job_versions[job_id] = self._job_versions.get(job_id, 0) + 1
        if kind in ("new", "state"):
            self._queue_version += 1
        asyncio.ensure_future(self._wake_watchers())

    async def _wake_watchers(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---- workers ----

    async def _worker(self) -> None:
        while True:
            try:
                record = self._store.claim_next(self.worker_id, self._config.lease_s, self._endpoints)
            except Exception:  # the store is unreachable for a moment: try again, never die
                log.exception("claiming a job failed; retrying")
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if record is None:
                self._work_available.clear()
                try:
                    await asyncio.wait_for(self._work_available.wait(), IDLE_POLL_S)
                except TimeoutError:
                    pass
                continue
            await self._run(record)

    async def _run(self, record: JobRecord) -> None:
        job_id = record.job_id
        flag = self._cancel_flags.setdefault(job_id, threading.Event())
        if record.cancel_requested:
            flag.set()
        self._store.add_log(job_id, f"started on {self.worker_id} (run {record.runs})")
        self._store.notify("state", job_id)
        loop = asyncio.get_running_loop()

        def on_progress(progress: Progress) -> None:  # called from the worker thread
            loop.call_soon_threadsafe(self._record_progress, job_id, record.runs, progress)

        assert self._runner is not None
        try:
            output_json = await asyncio.to_thread(self._runner, record, on_progress, flag.is_set)
        except JobError as error:
            state = JobState.CANCELLED if error.error_type is ErrorType.CANCELLED else JobState.FAILED
            self._end(job_id, state, f"{error.error_type}: {error.message}", "error",
                      error_type=error.error_type, error_message=error.message)
        except asyncio.CancelledError:
            raise  # shutting down: the job stays RUNNING until its lease expires (or the next start)
        except Exception:
            log.exception("job failed with a bug", extra={"request_id": job_id})
            message = f"internal error (request id {job_id}); the service log has the details"
            self._end(job_id, JobState.FAILED, message, "error", error_type=ErrorType.INTERNAL_ERROR,
                      error_message=message)
        else:
            self._end(job_id, JobState.SUCCEEDED, "completed", "info", output_json=output_json)
        finally:
            self._cancel_flags.pop(job_id, None)

    def _end(self, job_id: str, state: JobState, line: str, level: str, **fields: Any) -> None:
        """Finish the job if this worker still holds it; a worker whose lease was taken over drops its
        result, so every job completes exactly once."""
        if self._store.finish(job_id, state, worker_id=self.worker_id, **fields):
            self._store.add_log(job_id, line, level)
        else:
            log.warning("job was taken over by another worker; dropping this run's ending (%s)", state,
                        extra={"request_id": job_id})
        self._store.notify("state", job_id)

    def _record_progress(self, job_id: str, run: int, progress: Progress) -> None:
        self._store.add_progress(job_id, run, progress_to_dict(progress))
        if progress.message:
            self._store.add_log(job_id, progress.message)
        self._store.notify("progress", job_id)

    async def _heartbeat(self) -> None:
        """Renew the leases of this process's running jobs; stop those it lost or that were cancelled."""
        while True:
            try:
                running = list(self._cancel_flags)
                owned = await asyncio.to_thread(
                    self._store.renew_leases, self.worker_id, running, self._config.lease_s
                )
                for job_id in running:
                    if job_id not in owned or owned[job_id]:
                        self._cancel_flags[job_id].set()
                await asyncio.to_thread(self._store.register_worker, self.worker_id, self._endpoints or ["*"])
            except Exception:
                log.exception("renewing leases failed; retrying")
            await asyncio.sleep(self._config.heartbeat_s)

    async def _sweep(self) -> None:
        """Start timeouts and expired leases, on every replica (each row is ended by exactly one)."""
        while True:
            try:
                await asyncio.to_thread(self.sweep_once)
            except Exception:
                log.exception("sweeping the queue failed; retrying")
            await asyncio.sleep(self._config.heartbeat_s)

    def sweep_once(self) -> None:
        for job_id in self._store.expire_start_timeouts():
            self._store.add_log(job_id, "start_timeout: waited in the queue past its start timeout", "error")
            self._store.notify("state", job_id)
        requeued, exhausted = self._store.reap_expired_leases(self._config.max_retries)
        for job_id in requeued:
            self._store.add_log(job_id, "its worker stopped renewing the lease; re-queued", "warning")
            self._store.notify("new")
        for job_id in exhausted:
            self._store.add_log(job_id, "retries_exhausted: interrupted too many times", "error")
        for job_id in requeued + exhausted:
            self._store.notify("state", job_id)
