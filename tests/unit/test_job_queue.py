"""The job queue and its SQLite store, with a fake runner (no models)."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from service.config import QueueConfig
from service.domain.errors import Cancelled, ErrorType
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.jobs.queue import CancelOutcome, JobQueue, QueueFull
from service.jobs.records import JobState
from service.jobs.store import JobStore


class FakeRunner:
    """Runs `steps` steps, reporting each, until released; honours cancellation between steps."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.release = threading.Event()
        self.started = threading.Event()
        self.contexts: list[JobContext] = []

    def __call__(self, record, ctx: JobContext) -> str:
        self.contexts.append(ctx)
        self.started.set()
        for step in range(1, self.steps + 1):
            if ctx.is_cancelled():
                raise Cancelled()
            ctx.on_progress(Progress(Stage.DENOISING, step, self.steps))
            self.release.wait(timeout=10)
        return '{"done": true}'


def make_queue(tmp_path: Path, runner: FakeRunner, **queue: object) -> tuple[JobQueue, JobStore]:
    store = JobStore(tmp_path / "jobs.sqlite3")
    return JobQueue(store, QueueConfig(**queue), runner), store  # type: ignore[arg-type]


async def finished(queue: JobQueue, job_id: str) -> JobState:
    async for view in queue.follow(job_id):
        last = view
    return last.record.state


def test_runs_a_job_and_reports_every_step(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = FakeRunner(steps=4)
        runner.release.set()
        queue, store = make_queue(tmp_path, runner)
        await queue.start()
        job_id, position = await queue.submit("ltx-video-lora", "{}")
        assert position == 0
        assert await finished(queue, job_id) is JobState.SUCCEEDED
        assert [p.step for p in queue.progress_since(job_id)] == [1, 2, 3, 4]
        assert store.get(job_id).output_json == '{"done": true}'  # type: ignore[union-attr]
        await queue.stop()

    asyncio.run(scenario())


def test_the_queue_hands_the_runner_the_jobs_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        runner = FakeRunner(steps=2)
        queue, _store = make_queue(tmp_path, runner)
        await queue.start()
        job_id, _ = await queue.submit("ltx-video-lora", "{}")
        await asyncio.to_thread(runner.started.wait, 10)
        (ctx,) = runner.contexts
        assert ctx.request_id == job_id
        assert not ctx.is_cancelled()
        assert await queue.cancel(job_id) is CancelOutcome.REQUESTED
        assert ctx.is_cancelled()  # the job's own cancel flag, not a copy
        with caplog.at_level(logging.INFO):
            ctx.logger.info("from the runner")
        (line,) = [r for r in caplog.records if r.getMessage() == "from the runner"]
        assert getattr(line, "request_id", None) == job_id
        runner.release.set()
        assert await finished(queue, job_id) is JobState.CANCELLED
        await queue.stop()

    asyncio.run(scenario())


def test_queue_is_bounded_and_cancel_of_queued_job_is_immediate(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = FakeRunner()
        queue, store = make_queue(tmp_path, runner, max_queued=2)
        await queue.start()
        running, _ = await queue.submit("ltx-video-lora", "{}")
        await asyncio.to_thread(runner.started.wait, 10)
        waiting = [(await queue.submit("ltx-video-lora", "{}"))[0] for _ in range(2)]
        with pytest.raises(QueueFull, match="2 requests waiting"):
            await queue.submit("ltx-video-lora", "{}")
        assert [queue.view(j).queue_position for j in waiting] == [0, 1]  # type: ignore[union-attr]

        assert await queue.cancel(waiting[0]) is CancelOutcome.CANCELLED
        assert store.get(waiting[0]).state is JobState.CANCELLED  # type: ignore[union-attr]
        assert queue.view(waiting[1]).queue_position == 0  # type: ignore[union-attr]

        assert await queue.cancel(running) is CancelOutcome.REQUESTED
        runner.release.set()
        assert await finished(queue, running) is JobState.CANCELLED
        assert store.get(running).error_type == ErrorType.CANCELLED  # type: ignore[union-attr]
        assert await queue.cancel(running) is CancelOutcome.ALREADY_COMPLETED
        assert await queue.cancel("nope") is CancelOutcome.NOT_FOUND
        await queue.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("requeue", [True, False])
def test_jobs_running_at_a_crash_are_requeued_or_failed(tmp_path: Path, requeue: bool) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.insert("a", "ltx-video-lora", "{}")
    store.insert("b", "ltx-video-lora", "{}")
    assert store.claim_next("old-process", 30.0).job_id == "a"  # type: ignore[union-attr]  # "a" was running at the crash
    store.close()

    async def scenario() -> None:
        runner = FakeRunner()
        runner.release.set()
        queue, reopened = make_queue(tmp_path, runner, requeue_interrupted=requeue)
        await queue.start()
        states = {job_id: await finished(queue, job_id) for job_id in ("a", "b")}
        expected_a = JobState.SUCCEEDED if requeue else JobState.FAILED
        assert states == {"a": expected_a, "b": JobState.SUCCEEDED}
        assert any("restarted" in e.message for e in reopened.logs("a"))
        await queue.stop()

    asyncio.run(scenario())


def test_finished_jobs_are_purged_after_retention(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = FakeRunner(steps=1)
        runner.release.set()
        queue, store = make_queue(tmp_path, runner)
        await queue.start()
        job_id, _ = await queue.submit("ltx-video-lora", "{}")
        await finished(queue, job_id)
        assert queue.purge_expired(retention_s=3600) == []  # still within retention
        assert queue.purge_expired(retention_s=0) == [job_id]
        assert store.get(job_id) is None and store.logs(job_id) == []
        await queue.stop()

    asyncio.run(scenario())


def test_stopping_a_worker_requeues_its_running_job_without_a_retry(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = FakeRunner(steps=50)
        queue, store = make_queue(tmp_path, runner)
        await queue.start()
        job_id, _ = await queue.submit("ltx-video-lora", "{}")
        await asyncio.to_thread(runner.started.wait, 10)
        await queue.stop()
        runner.release.set()
        record = store.get(job_id)
        assert record is not None and record.state is JobState.QUEUED and record.retries == 0
        assert any("re-queued" in e.message for e in store.logs(job_id))

    asyncio.run(scenario())
