"""The busy ratio, the stage clock of the job metrics, and fetch counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.domain.errors import ErrorType, JobError
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.jobs.job_metrics import instrumented
from service.jobs.records import JobRecord, JobState
from service.observability import metrics
from service.observability.metrics import BusyTracker


def test_busy_ratio_over_the_window() -> None:
    now = [0.0]
    tracker = BusyTracker(window_s=10, slots=2, clock=lambda: now[0])
    token = tracker.begin()
    now[0] = 5.0
    assert tracker.ratio() == pytest.approx(5 / 20)
    tracker.end(token)
    now[0] = 12.0  # the window is 2..12: seconds 2..5 of the busy interval are still in it
    assert tracker.ratio() == pytest.approx(3 / 20)
    now[0] = 30.0
    assert tracker.ratio() == 0.0


def _record(endpoint: str) -> JobRecord:
    return JobRecord("j1", endpoint, "{}", JobState.RUNNING, created_at=0.0)


def _count(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_stage_clock_and_outcomes() -> None:
    endpoint = "test-endpoint-metrics"

    def runner(record: JobRecord, ctx: JobContext) -> str:
        for stage in (Stage.ENCODING_PROMPT, Stage.DENOISING, Stage.DECODING, Stage.ENCODING_VIDEO):
            ctx.report(Progress(stage))
        return "{}"

    def failing(record: JobRecord, ctx: JobContext) -> str:
        raise JobError(ErrorType.INPUT_FETCH_FAILED, "nope")

    seen: list[Progress] = []
    assert instrumented(runner)(_record(endpoint), JobContext.create("j1", seen.append)) == "{}"
    assert len(seen) == 4  # progress still reaches the queue
    with pytest.raises(JobError):
        instrumented(failing)(_record(endpoint), JobContext.create("j1", seen.append))
    for stage in ("prepare", "generate", "finish"):
        assert _count("ltx_job_stage_duration_seconds_count", {"endpoint": endpoint, "stage": stage}) >= 1
    ok = {"endpoint": endpoint, "status": "succeeded", "error_type": ""}
    failed = {"endpoint": endpoint, "status": "failed", "error_type": "input_fetch_failed"}
    assert _count("ltx_jobs_total", ok) == 1 and _count("ltx_jobs_total", failed) == 1


def test_fetches_count_bytes_and_failures() -> None:
    import base64
    import io

    from PIL import Image

    from service.media.fetch import FetchLimits, fetch_media

    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    before_bytes = _count("ltx_fetched_bytes_total", {"kind": "media"})
    before_failures = _count("ltx_fetch_failures_total", {"kind": "media"})
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    fetch_media(uri, field="image_url", limits=FetchLimits())
    assert _count("ltx_fetched_bytes_total", {"kind": "media"}) == before_bytes + len(png.getvalue())
    with pytest.raises(JobError):
        fetch_media(
            "data:text/plain;base64," + base64.b64encode(b"hello").decode(), field="x", limits=FetchLimits()
        )
    assert _count("ltx_fetch_failures_total", {"kind": "media"}) == before_failures + 1


def test_queue_depth_does_not_outlive_its_store(tmp_path: Path) -> None:
    """A stopped service's closed store is no longer read by a scrape (it used to raise there)."""
    import math

    from service.jobs.store import SqliteJobStore

    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    unbind = metrics.bind_queue_depth(store.queued_count, lambda: len(store.ids_in_state(JobState.RUNNING)))
    assert metrics.REGISTRY.get_sample_value("ltx_jobs_queued") == 0.0
    later = SqliteJobStore(tmp_path / "later.sqlite3")
    unbind_later = metrics.bind_queue_depth(later.queued_count, lambda: 2)
    unbind()  # the first service stops after a second one bound: the second's binding stays
    store.close()
    assert metrics.REGISTRY.get_sample_value("ltx_jobs_running") == 2.0
    unbind_later()
    later.close()
    assert metrics.REGISTRY.get_sample_value("ltx_jobs_queued") == 0.0  # unbound: nothing to read

    def unreachable() -> int:
        raise ConnectionError("store down")

    unbind = metrics.bind_queue_depth(unreachable, unreachable)
    try:  # a store that fails to answer reads NaN; the other metrics are still scraped
        assert math.isnan(metrics.REGISTRY.get_sample_value("ltx_jobs_queued") or 0.0)
        assert metrics.REGISTRY.get_sample_value("ltx_accelerator_busy_ratio") is not None
    finally:
        unbind()
