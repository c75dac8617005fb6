"""Watch/Generate event streams: each progress report and log line is delivered once and in order,
even when a report reaches the store before the notification that announces it (issue 8, item 14)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ltx.v1 import video_generation_pb2 as pb
from service.api.servicer import VideoGenerationServicer
from service.domain.progress import Progress, Stage
from service.jobs.queue import JobView
from service.jobs.records import JobRecord, JobState, LogEntry

JOB = "job-1"


def _record(state: JobState = JobState.RUNNING, runs: int = 1) -> JobRecord:
    return JobRecord(
        job_id=JOB, endpoint="ltx-video-lora", spec_json="{}", state=state, created_at=0.0, runs=runs
    )


def _step(step: int) -> Progress:
    return Progress(Stage.DENOISING, step=step, total=4)


class RacingQueue:
    """Views and store reads in the order a live job produces them: each `progress_since` call sees
    the store as it is by then (`store_at_read`), one report ahead of the view just taken."""

    def __init__(self, views: list[JobView], store_at_read: list[dict[int, list[Progress]]]) -> None:
        self._views = views
        self._store_at_read = store_at_read
        self.reads = 0

    async def follow(self, job_id: str) -> AsyncIterator[JobView]:
        for view in self._views:
            yield view

    def logs(self, job_id: str, skip: int = 0) -> list[LogEntry]:
        return []

    def progress_since(self, job_id: str, skip: int = 0, run: int | None = None) -> list[Progress]:
        store = self._store_at_read[self.reads]
        self.reads += 1
        return store.get(run if run is not None else max(store), [])[skip:]


async def _collect(queue: RacingQueue) -> list[pb.JobEvent]:
    servicer = VideoGenerationServicer(queue, lambda endpoint: True, lambda: None)  # type: ignore[arg-type]
    return [event async for event in servicer._events(JOB)]


def _denoising_steps(events: list[pb.JobEvent]) -> list[int]:
    return [e.progress.step for e in events if e.HasField("progress") and e.progress.stage == "denoising"]


def test_a_report_read_before_its_notification_is_not_sent_twice() -> None:
    views = [
        JobView(_record(), 0, _step(1)),  # the view sees step 1; step 2 lands before the reports are read
        JobView(_record(), 0, _step(2)),  # the notification of step 2: the view now carries it
        JobView(_record(), 0, _step(3)),
        JobView(_record(JobState.SUCCEEDED), 0, None),
    ]
    store = [
        {1: [_step(1), _step(2)]},
        {1: [_step(1), _step(2)]},
        {1: [_step(1), _step(2), _step(3)]},
        {1: [_step(1), _step(2), _step(3)]},
    ]
    events = asyncio.run(_collect(RacingQueue(views, store)))
    assert _denoising_steps(events) == [1, 2, 3]
    assert events[-1].status == pb.COMPLETED


def test_a_rerun_starts_its_reports_again() -> None:
    views = [
        JobView(_record(runs=1), 0, _step(2)),
        JobView(_record(JobState.QUEUED, runs=1), 0, None),  # interrupted and re-queued
        JobView(_record(runs=2), 0, _step(1)),
        JobView(_record(JobState.SUCCEEDED, runs=2), 0, None),
    ]
    first_run = [_step(1), _step(2)]
    store = [
        {1: first_run},
        {1: first_run},
        {1: first_run, 2: [_step(1)]},
        {1: first_run, 2: [_step(1), _step(2)]},
    ]
    events = asyncio.run(_collect(RacingQueue(views, store)))
    assert _denoising_steps(events) == [1, 2, 1, 2]
    assert [e.status for e in events].count(pb.IN_QUEUE) == 1
