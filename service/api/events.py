"""Job views -> protobuf status and event messages."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ltx.v1 import video_generation_pb2 as pb
from service.api.convert import output_to_json
from service.api.endpoints import api_endpoint
from service.domain.progress import Progress
from service.jobs.queue import JobView
from service.jobs.records import JobRecord, JobState, LogEntry
from service.jobs.runner import output_from_json

_STATUS = {
    JobState.QUEUED: pb.IN_QUEUE,
    JobState.RUNNING: pb.IN_PROGRESS,
    JobState.SUCCEEDED: pb.COMPLETED,
    JobState.FAILED: pb.COMPLETED,
    JobState.CANCELLED: pb.COMPLETED,
}


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def log_lines(entries: list[LogEntry]) -> list[pb.LogLine]:
    return [pb.LogLine(message=e.message, level=e.level, timestamp=timestamp(e.timestamp)) for e in entries]


def job_error(record: JobRecord) -> pb.JobError | None:
    if record.state in (JobState.FAILED, JobState.CANCELLED):
        return pb.JobError(error_type=record.error_type or "", message=record.error_message or "")
    return None


def generation_output(record: JobRecord) -> pb.GenerationOutput | None:
    if record.state is not JobState.SUCCEEDED or record.output_json is None:
        return None
    entry = api_endpoint(record.endpoint)
    return entry.output_container(entry.output(output_from_json(record.output_json)))


def webhook_payload(record: JobRecord) -> dict[str, object] | None:
    """A succeeded job's output in the spec's JSON form (the webhook's `payload`)."""
    message = generation_output(record)
    if message is None:
        return None
    return output_to_json(getattr(message, api_endpoint(record.endpoint).oneof_field))


def webhook_delivery(record: JobRecord, delivery: dict[str, Any] | None) -> pb.WebhookDelivery | None:
    if not record.webhook_url:
        return None
    if delivery is None:
        return pb.WebhookDelivery(url=record.webhook_url, state="waiting")
    return pb.WebhookDelivery(
        url=delivery["url"],
        state=delivery["state"],
        attempts=delivery["attempts"],
        last_error=delivery["last_error"] or "",
        next_attempt_at=timestamp(delivery["next_attempt_at"]) if delivery["state"] == "pending" else None,
        delivered_at=timestamp(delivery["delivered_at"]),
    )


def progress(report: Progress | None) -> pb.Progress | None:
    if report is None:
        return None
    return pb.Progress(stage=report.stage.value, step=report.step, total_steps=report.total)


def status_response(view: JobView, logs: list[LogEntry]) -> pb.StatusResponse:
    record = view.record
    return pb.StatusResponse(
        request_id=record.job_id,
        endpoint_id=record.endpoint,
        status=_STATUS[record.state],
        queue_position=view.queue_position,
        progress=progress(view.progress),
        logs=log_lines(logs),
        error=job_error(record),
        created_at=timestamp(record.created_at),
        started_at=timestamp(record.started_at),
        completed_at=timestamp(record.completed_at),
        retries=record.retries,
        webhook=webhook_delivery(record, view.webhook),
    )


def job_event(view: JobView, new_logs: list[LogEntry], report: Progress | None) -> pb.JobEvent:
    """The event for `view`, with `report` as its progress."""
    record = view.record
    return pb.JobEvent(
        request_id=record.job_id,
        status=_STATUS[record.state],
        queue_position=view.queue_position,
        progress=progress(report),
        logs=log_lines(new_logs),
        error=job_error(record),
        result=generation_output(record),
    )


def step_event(job_id: str, report: Progress) -> pb.JobEvent:
    """An intermediate progress event, for reports that arrived between two views of the job."""
    return pb.JobEvent(request_id=job_id, status=pb.IN_PROGRESS, progress=progress(report))


class EventCursor:
    """What one Watch/Generate stream has sent of a job, so that each log line and each progress report
    goes out exactly once and in order.

    A progress report is written to the store before its notification arrives, so a stream that reads
    the reports right after a view often gets the new report before the notification that announces it;
    the next view then carries that same report as its latest progress. Counting what was sent (per run:
    a re-queued job's reports start again) and leaving a view's own progress out once a report has been
    sent is what keeps a denoising step from being delivered twice."""

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._run: int | None = None
        self.sent_logs = 0
        self.sent_reports = 0
        self._last_key: tuple[object, ...] | None = None

    def reports_to_skip(self, run: int) -> int:
        """The progress reports of `run` already sent (0 for a run not seen before)."""
        return self.sent_reports if run == self._run else 0

    def events(self, view: JobView, new_logs: list[LogEntry], reports: list[Progress]) -> list[pb.JobEvent]:
        """The events for `view`, given the log lines and this run's reports not yet sent."""
        first = self._last_key is None
        if view.record.runs != self._run:
            self._run, self.sent_reports = view.record.runs, 0
        self.sent_logs += len(new_logs)
        self.sent_reports += len(reports)
        key = (view.record.state, view.queue_position, view.record.error_type, view.record.output_json)
        if not reports and not new_logs and key == self._last_key:
            return []  # nothing this stream has not sent already
        self._last_key = key
        out = [step_event(self._job_id, report) for report in reports[:-1]]
        latest = reports[-1] if reports else (view.progress if first else None)
        out.append(job_event(view, new_logs, latest))
        return out
