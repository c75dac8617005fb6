"""The job queue: submit, cancel, follow; workers that claim jobs under a lease and run them.

The store (SQLite in one process, PostgreSQL across many) is the truth for everything a client sees:
state, queue position, progress, logs, output. This object adds the process-local parts: the workers of
this process, their cancel flags, and a change counter that wakes watchers when the store notifies.
Nothing here depends on which store it is: the same code runs a single process and a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import hashlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from service.config import QueueConfig
from service.domain.errors import ErrorType, JobError
from service.domain.job_context import JobContext, job_logger
from service.domain.progress import Progress, Stage
from service.jobs.records import JobRecord, JobState, LogEntry
from service.jobs.sql_store import NewJob, SqlJobStore
from service.media.fetch import current_cancel_check

log = logging.getLogger(__name__)

# Runs one job to its output JSON in a worker thread: (record, its JobContext) -> output_json. The queue
# builds the context (service/domain/job_context.py): the job id as request id, progress into the store,
# the job's cancel flag, a logger that carries the id.
JobRunner = Callable[[JobRecord, JobContext], str]
IDLE_POLL_S = 1.0  # a claim attempt at least this often, in case a notification was missed
T = TypeVar("T")

# Store writes that fail (a full disk, a database down) are retried with this backoff for as long as
# the service runs: a worker never dies of them, and readiness says why it is stuck meanwhile.
STORE_RETRY_FIRST_S = 0.2
STORE_RETRY_MAX_S = 10.0
# After the drain's grace period a cancelled job gets this long to stop at its next step.
DRAIN_CANCEL_WAIT_S = 2.0


def _is_store_error(error: BaseException) -> bool:
    """A failure of the store itself (SQLite full or locked, PostgreSQL unreachable), not of a job."""
    if isinstance(error, sqlite3.Error | OSError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, psycopg.Error)


class StoreUnavailable(Exception):
    """The job store refused a write (e.g. the disk is full): the API answers UNAVAILABLE."""


class Draining(Exception):
    """The service is shutting down and takes no new jobs: the API answers UNAVAILABLE."""


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
        workers: int | None = None,
        before_accelerator: Callable[[str], bool] | None = None,
    ) -> None:
        """`runner` None: a gateway (serves the queue, runs nothing). `endpoints`: what this process's
        workers claim (None = any). `workers`: jobs in flight at once, the stage runner's slots in all
        its stages (prepare, generate, finish) so the next job is prepared while one generates; default
        `queue.workers`. `before_accelerator(job_id)`: whether a job of this process is still preparing
        or waiting for the accelerator (queued, to the client: a cancel ends it at once)."""
        self._store = store
        self._config = config
        self._runner = runner
        self._endpoints = sorted(endpoints) if endpoints is not None else None
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._worker_count = workers or config.workers
        self._runner_before_accelerator = before_accelerator
        self._cancel_flags: dict[str, threading.Event] = {}  # jobs running in this process
        # Submits run in threads: the bound is checked and the job inserted under one lock, so concurrent
        # Submits to this process cannot overshoot `max_queued` (across replicas it stays approximate).
        self._submit_lock = threading.Lock()
        self._changed = asyncio.Condition()
        # Change counters that watchers compare with what they last saw: per job, and for the queue as a
        # whole (a claim or an ending elsewhere moves the queue positions of every waiting job).
        self._job_versions: dict[str, int] = {}
        self._queue_version = 0
        self._work_available = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeups: set[asyncio.Future[None]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._drain_cancelled: set[str] = set()  # stopped by the drain, not the client: re-queue them
        self._stuck: dict[str, str] = {}  # worker name -> why it cannot take jobs right now
        self._draining = False
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
                await self._persist(self._recover_interrupted, "recovering interrupted jobs")
            self._work_available.set()
            for i in range(self._worker_count):
                name = f"job-worker-{i}"
                self._workers.append(asyncio.create_task(self._worker(name), name=name))
            self._tasks.extend(self._workers)
            self._tasks.append(asyncio.create_task(self._heartbeat(), name="job-heartbeat"))
        self._tasks.append(asyncio.create_task(self._sweep(), name="job-sweeper"))

    async def stop(self) -> None:
        """Stop at once; jobs running here go back to the queue now (an orderly stop is not a failure, so
        no retry is counted, and only while this worker still holds them), stopping at their next step."""
        self._draining = True
        running = list(self._cancel_flags)
        for task in self._tasks:
            task.cancel()
        for job_id in running:
            self._best_effort(functools.partial(self._requeue_on_stop, job_id))
        for flag in self._cancel_flags.values():
            flag.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            with contextlib.suppress(Exception):  # the store may be the reason we stop
                await asyncio.to_thread(self._store.unregister_worker, self.worker_id)

    def _requeue_on_stop(self, job_id: str) -> None:
        if self._store.requeue(job_id, count_retry=False, worker_id=self.worker_id):
            self._store.add_log(job_id, f"{self.worker_id} stopped while running it; re-queued", "warning")
            self._store.notify("new")

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: take no new job; running jobs get `grace_s` to finish, then are cancelled and
        re-queued without counting a retry (a result that completes meanwhile is still stored).
        Returns within about grace_s + DRAIN_CANCEL_WAIT_S, whatever the jobs do."""
        self._draining = True
        self._work_available.set()  # idle workers wake up and exit
        pending = [t for t in self._workers if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(grace_s, 0.0))
            pending = list(still)
        if pending:
            for job_id, flag in list(self._cancel_flags.items()):
                self._drain_cancelled.add(job_id)
                flag.set()
            _, still = await asyncio.wait(pending, timeout=DRAIN_CANCEL_WAIT_S)
            pending = list(still)
        for task in pending:  # stuck past every bound (e.g. in a codec): re-queue it from here
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for job_id in list(self._cancel_flags):
            self._best_effort(functools.partial(self._store.requeue, job_id, count_retry=False))
            self._cancel_flags.pop(job_id, None)
            log.warning("job did not stop within the drain; re-queued", extra={"request_id": job_id})

    @property
    def draining(self) -> bool:
        return self._draining

    def unavailable_reason(self) -> str | None:
        """Why this process cannot take jobs right now (None while at least one worker can)."""
        if self._draining:
            return "the service is shutting down"
        alive = [t for t in self._workers if not t.done()]
        if self._workers and len(self._stuck) >= len(alive):
            return "; ".join(sorted(set(self._stuck.values()))) or "no job worker is running"
        return None

    def _recover_interrupted(self) -> None:
        """One process owns this store: jobs RUNNING now belonged to a process that died. They are
        re-queued (counting a retry, as an expired lease is on a shared store) or failed if configured."""
        for job_id in self._store.ids_in_state(JobState.RUNNING):
            record = self._store.get(job_id)
            if record is not None and record.retries >= self._config.max_retries:
                message = (
                    f"the job was interrupted more than {self._config.max_retries} times (queue.max_retries)"
                )
                self._store.finish(
                    job_id, JobState.FAILED, error_type=ErrorType.RETRIES_EXHAUSTED, error_message=message
                )
                self._store.add_log(job_id, f"retries_exhausted: {message}", "error")
            elif self._config.requeue_interrupted:
                self._store.requeue(job_id, count_retry=True)
                self._store.add_log(
                    job_id, "the service restarted while this job ran; it was re-queued", "warning"
                )
            else:
                message = (
                    "the service restarted while this job ran; it was not re-run (queue.requeue_interrupted)"
                )
                self._store.finish(
                    job_id, JobState.FAILED, error_type=ErrorType.INTERNAL_ERROR, error_message=message
                )
                self._store.add_log(job_id, message, "error")
            log.info("recovered interrupted job", extra={"request_id": job_id})

    # ---- API ----

    async def submit(self, endpoint: str, spec_json: str, new: NewJob | None = None) -> tuple[str, int]:
        """Queue a job: (its id, its queue position). With an idempotency key already used for the same
        input, the first job's id instead (IdempotencyConflict for a different input).

        The store's round trips run in a thread: on PostgreSQL they wait on the network, and the event
        loop keeps serving other calls meanwhile."""
        if self._draining:
            raise Draining("the service is shutting down; retry on another replica or later")
        try:
            return await asyncio.to_thread(self._submit_blocking, endpoint, spec_json, new or NewJob())
        except (QueueFull, IdempotencyConflict):
            raise
        except Exception as exc:
            if not _is_store_error(exc):
                raise
            log.error("job store refused a new job: %s", exc)
            raise StoreUnavailable("the job store cannot record new jobs right now; retry later") from exc

    def _submit_blocking(self, endpoint: str, spec_json: str, new: NewJob) -> tuple[str, int]:
        if new.idempotency_key:
            existing = self._store.by_idempotency_key(new.idempotency_key)
            if existing is not None:
                return self._same_input_or_conflict(existing, new)
        job_id = str(uuid.uuid4())
        with self._submit_lock:
            if self._store.queued_count() >= self._config.max_queued:
                raise QueueFull(self._config.max_queued)
            record = self._store.insert(job_id, endpoint, spec_json, new)
        if record is None:  # another replica took the key between our look-up and the insert
            existing = self._store.by_idempotency_key(new.idempotency_key or "")
            assert existing is not None
            return self._same_input_or_conflict(existing, new)
        self._best_effort(
            lambda: self._store.add_log(job_id, f"queued for {endpoint} (priority {new.priority})")
        )
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
        latest = (
            self._store.latest_progress(job_id, record.runs) if record.state is JobState.RUNNING else None
        )
        webhook = self._store.webhook(job_id) if record.webhook_url else None
        return JobView(record, position, progress_from_dict(latest) if latest else None, webhook)

    def logs(self, job_id: str, skip: int = 0) -> list[LogEntry]:
        return self._store.logs(job_id, skip)

    def progress_since(self, job_id: str, skip: int = 0, run: int | None = None) -> list[Progress]:
        """Progress reports of the job's run `run` (default: its current run), from the `skip`-th on."""
        if run is None:
            record = self._store.get(job_id)
            if record is None:
                return []
            run = record.runs
        return [progress_from_dict(p) for p in self._store.progress(job_id, run, skip)]

    async def cancel(self, job_id: str) -> CancelOutcome:
        try:
            return await asyncio.to_thread(self._cancel_blocking, job_id)
        except Exception as exc:
            if not _is_store_error(exc):
                raise
            raise StoreUnavailable("the job store cannot record the cancellation right now; retry") from exc

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
        if self._before_accelerator(job_id) and self._store.finish(
            job_id,
            JobState.CANCELLED,
            worker_id=self.worker_id,
            error_type=ErrorType.CANCELLED,
            error_message="cancelled by the client while queued",
        ):
            # Claimed here but still preparing or waiting for the accelerator: queued, as the client sees
            # it, so it ends now; its thread stops at its next cancel check and finds it ended.
            self._cancel_flags[job_id].set()
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
        wakeup = asyncio.ensure_future(self._wake_watchers())
        self._wakeups.add(wakeup)  # a reference until it ran: the loop keeps only weak ones
        wakeup.add_done_callback(self._wakeups.discard)

    async def _wake_watchers(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---- workers ----

    async def _persist(self, write: Callable[[], T], what: str, worker: str | None = None) -> T:
        """Run a store write, retrying with backoff while the store fails (full disk, database down).

        Meanwhile the worker counts as stuck, so readiness turns NOT_SERVING with the reason.
        """
        delay = STORE_RETRY_FIRST_S
        while True:
            try:
                result = write()
            except Exception as exc:
                if not _is_store_error(exc):
                    raise
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
        """A write whose loss costs only a log line or a progress report."""
        try:
            write()
        except Exception as exc:
            if not _is_store_error(exc):
                raise
            log.warning("job store write dropped: %s", exc)

    async def _worker(self, name: str) -> None:
        """Claims and runs jobs until the drain; nothing a job or the store does ends this loop."""
        while not self._draining:
            try:
                record = await self._persist(
                    lambda: self._store.claim_next(self.worker_id, self._config.lease_s, self._endpoints),
                    "claiming the next job",
                    name,
                )
                if record is None:
                    self._work_available.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._work_available.wait(), IDLE_POLL_S)
                    continue
                await self._run(record, name)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the queue itself: log it, keep the worker alive
                log.exception("%s: unexpected error; continuing", name)
                self._stuck[name] = "a job worker hit an unexpected error"
                await asyncio.sleep(IDLE_POLL_S)
                self._stuck.pop(name, None)

    async def _run(self, record: JobRecord, worker: str) -> None:
        job_id = record.job_id
        flag = self._cancel_flags.setdefault(job_id, threading.Event())
        if record.cancel_requested:
            flag.set()
        self._best_effort(
            lambda: self._store.add_log(job_id, f"started on {self.worker_id} (run {record.runs})")
        )
        self._best_effort(lambda: self._store.notify("state", job_id))
        loop = asyncio.get_running_loop()

        def on_progress(progress: Progress) -> None:  # called from the worker thread
            loop.call_soon_threadsafe(self._record_progress, job_id, record.runs, progress)

        assert self._runner is not None
        ctx = JobContext(job_id, on_progress, flag.is_set, job_logger(job_id))
        try:
            output_json = await _in_daemon_thread(self._runner, record, ctx)
        except asyncio.CancelledError:
            raise  # stopped hard: the job stays RUNNING until its lease expires (or the next start)
        except BaseException as error:  # noqa: BLE001 - every failure of a job ends that job, not the worker
            await self._record_failure(job_id, error, worker)
        else:
            await self._end(job_id, JobState.SUCCEEDED, "completed", "info", worker, output_json=output_json)
        self._cancel_flags.pop(job_id, None)
        self._drain_cancelled.discard(job_id)

    async def _record_failure(self, job_id: str, error: BaseException, worker: str) -> None:
        if (
            isinstance(error, JobError)
            and error.error_type is ErrorType.CANCELLED
            and job_id in self._drain_cancelled
        ):
            await self._persist(
                lambda: self._store.requeue(job_id, count_retry=False, worker_id=self.worker_id),
                "re-queueing a drained job",
                worker,
            )
            self._best_effort(
                lambda: self._store.add_log(job_id, "the service is shutting down; re-queued", "warning")
            )
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
        await self._end(
            job_id,
            state,
            f"{error_type}: {message}",
            "error",
            worker,
            error_type=error_type,
            error_message=message,
        )

    def _before_accelerator(self, job_id: str) -> bool:
        """A job of this process's stage runner that has not reached the accelerator yet."""
        check = self._runner_before_accelerator
        return check is not None and job_id in self._cancel_flags and check(job_id)

    def _ended_here(self, job_id: str) -> bool:
        try:
            record = self._store.get(job_id)
        except Exception:  # noqa: BLE001 - any failure to read the record: report the takeover as before
            return False
        return record is not None and record.state.finished and record.worker_id == self.worker_id

    async def _end(
        self, job_id: str, state: JobState, line: str, level: str, worker: str, **fields: Any
    ) -> None:
        """Finish the job if this worker still holds it; a worker whose lease was taken over drops its
        result, so every job completes exactly once. The write is retried until the store takes it."""
        owned = await self._persist(
            lambda: self._store.finish(job_id, state, worker_id=self.worker_id, **fields),
            "recording a job's end",
            worker,
        )
        if owned:
            self._best_effort(lambda: self._store.add_log(job_id, line, level))
        elif await asyncio.to_thread(self._ended_here, job_id):
            pass  # e.g. cancelled while it waited for the accelerator: already ended, by this process
        else:
            log.warning(
                "job was taken over by another worker; dropping this run's ending (%s)",
                state,
                extra={"request_id": job_id},
            )
        self._best_effort(lambda: self._store.notify("state", job_id))

    def _record_progress(self, job_id: str, run: int, progress: Progress) -> None:
        def write() -> None:
            self._store.add_progress(job_id, run, progress_to_dict(progress))
            if progress.message:
                self._store.add_log(job_id, progress.message)
            self._store.notify("progress", job_id)

        self._best_effort(write)

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


def _in_daemon_thread(runner: JobRunner, record: JobRecord, ctx: JobContext) -> asyncio.Future[str]:
    """Run a job in a daemon thread: unlike `asyncio.to_thread`, a job stuck in a fetch or a codec
    cannot hold the process past its shutdown deadline. Its fetches see its cancel check."""
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
        current_cancel_check.set(ctx.is_cancelled)
        result: str | None = None
        failure: BaseException | None = None
        try:
            result = runner(record, ctx)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting worker
            failure = error
        with contextlib.suppress(RuntimeError):  # the loop is gone: the process is exiting
            loop.call_soon_threadsafe(settle, result, failure)

    threading.Thread(target=body, name=f"job-{record.job_id[:8]}", daemon=True).start()
    return future
