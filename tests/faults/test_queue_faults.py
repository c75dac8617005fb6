"""The queue under faults, with a real SQLite store: a full disk (a real tmpfs), crashes past the
retry cap, and the SIGTERM drain. The runner is fake (no models); everything else is real."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from service.config import QueueConfig
from service.domain.errors import Cancelled, ErrorType
from service.domain.progress import Progress, Stage
from service.jobs.queue import DRAIN_CANCEL_WAIT_S, JobQueue, StoreUnavailable
from service.jobs.records import JobState
from service.jobs.store import JobStore
from tests.faults.tmpfs import fill, small_tmpfs


class DiskWritingRunner:
    """Writes a 256 KB "video" into `out_dir` once released: ENOSPC when that disk is full."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, record, ctx) -> str:
        self.started.set()
        self.release.wait(timeout=30)
        (self.out_dir / f"{record.job_id}.mp4").write_bytes(b"\0" * 256 * 1024)
        return '{"done": true}'


async def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_a_full_disk_never_kills_the_worker(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        store = JobStore(disk / "jobs.sqlite3")
        runner = DiskWritingRunner(disk)
        queue = JobQueue(store, QueueConfig(), runner)

        async def scenario() -> None:
            await queue.start()
            job_a, _ = await queue.submit("ltx-video-lora", "{}")
            await asyncio.to_thread(runner.started.wait, 10)
            filler = fill(disk)
            runner.release.set()  # the "encode" hits ENOSPC, then so does the store write recording it
            await _wait_for(lambda: queue.unavailable_reason() is not None)
            assert "job store rejects writes" in (queue.unavailable_reason() or "")
            try:
                await queue.submit("ltx-video-lora", "{}")
                raise AssertionError("Submit accepted a job the store could not record")
            except StoreUnavailable:
                pass
            filler.unlink()  # space again: the worker records the failure and carries on
            await _wait_for(lambda: store.get(job_a).state.finished)  # type: ignore[union-attr]
            record_a = store.get(job_a)
            assert record_a is not None and record_a.state is JobState.FAILED
            assert record_a.error_type == ErrorType.INTERNAL_ERROR
            assert "out of disk space" in (record_a.error_message or "")
            assert queue.unavailable_reason() is None
            job_b, _ = await queue.submit("ltx-video-lora", "{}")
            await _wait_for(lambda: store.get(job_b).state.finished)  # type: ignore[union-attr]
            assert store.get(job_b).state is JobState.SUCCEEDED  # type: ignore[union-attr]
            await queue.stop()

        try:
            asyncio.run(scenario())
        finally:
            store.close()


def _crash_while_running(path: Path, times: int) -> None:
    """Claim the job and 'die' (close without finishing), as a process killed mid-job does."""
    for _ in range(times):
        store = JobStore(path)
        for job_id in store.ids_in_state(JobState.RUNNING):  # what the restart's recovery does
            store.requeue(job_id, count_retry=True)
        assert store.claim_next("crashing-worker", 30.0) is not None
        store.close()


class InstantRunner:
    def __call__(self, record, ctx) -> str:
        return '{"done": true}'


def _recovered_state(path: Path, max_retries: int) -> tuple[JobState, str | None, int]:
    async def scenario() -> tuple[JobState, str | None, int]:
        store = JobStore(path)
        queue = JobQueue(store, QueueConfig(max_retries=max_retries), InstantRunner())
        await queue.start()
        await _wait_for(lambda: store.get("poison").state.finished)  # type: ignore[union-attr]
        await queue.stop()
        record = store.get("poison")
        store.close()
        assert record is not None
        return record.state, record.error_type, record.retries

    return asyncio.run(scenario())


def test_a_job_interrupted_past_the_retry_cap_fails_with_retries_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).insert("poison", "ltx-video-lora", "{}")
    _crash_while_running(path, 3)  # the first run and two re-runs all died
    state, error_type, retries = _recovered_state(path, max_retries=2)
    assert (state, error_type, retries) == (JobState.FAILED, ErrorType.RETRIES_EXHAUSTED, 2)


def test_a_job_interrupted_within_the_cap_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).insert("poison", "ltx-video-lora", "{}")
    _crash_while_running(path, 2)
    state, error_type, retries = _recovered_state(path, max_retries=2)
    assert (state, error_type, retries) == (JobState.SUCCEEDED, None, 2)


class SteppingRunner:
    """`steps` steps of `step_s` each, honouring cancel between steps (or not at all: `stubborn`)."""

    def __init__(self, steps: int, step_s: float, stubborn: bool = False) -> None:
        self.steps, self.step_s, self.stubborn = steps, step_s, stubborn
        self.started = threading.Event()

    def __call__(self, record, ctx) -> str:
        self.started.set()
        for step in range(self.steps):
            if ctx.is_cancelled() and not self.stubborn:
                raise Cancelled()
            ctx.on_progress(Progress(Stage.DENOISING, step + 1, self.steps))
            time.sleep(self.step_s)
        return '{"done": true}'


def _drain(tmp_path: Path, runner: SteppingRunner, grace_s: float) -> tuple[JobState, int, float]:
    async def scenario() -> tuple[JobState, int, float]:
        store = JobStore(tmp_path / "jobs.sqlite3")
        queue = JobQueue(store, QueueConfig(), runner)
        await queue.start()
        job_id, _ = await queue.submit("ltx-video-lora", "{}")
        await asyncio.to_thread(runner.started.wait, 10)
        started = time.monotonic()
        await queue.drain(grace_s)
        elapsed = time.monotonic() - started
        record = store.get(job_id)
        store.close()
        assert record is not None
        return record.state, record.retries, elapsed

    return asyncio.run(scenario())


def test_drain_lets_a_job_finish_within_the_grace_period(tmp_path: Path) -> None:
    state, _, elapsed = _drain(tmp_path, SteppingRunner(steps=5, step_s=0.1), grace_s=10)
    assert state is JobState.SUCCEEDED
    assert elapsed < 5


def test_drain_cancels_and_requeues_a_job_past_the_grace_period(tmp_path: Path) -> None:
    state, retries, elapsed = _drain(tmp_path, SteppingRunner(steps=100, step_s=0.1), grace_s=0.5)
    assert state is JobState.QUEUED
    assert retries == 0  # a drain is not the job's fault: it does not count towards the retry cap
    assert elapsed < 0.5 + DRAIN_CANCEL_WAIT_S


def test_drain_returns_on_time_even_when_the_job_ignores_cancel(tmp_path: Path) -> None:
    state, _, elapsed = _drain(tmp_path, SteppingRunner(steps=100, step_s=0.1, stubborn=True), grace_s=0.5)
    assert state is JobState.QUEUED
    assert elapsed < 0.5 + DRAIN_CANCEL_WAIT_S + 1
