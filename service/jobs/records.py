"""Job records: what the store keeps about each request."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    endpoint: str
    spec_json: str
    state: JobState
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    output_json: str | None = None
    cancel_requested: bool = False
    attempts: int = 0  # runs started, the current one included


@dataclass(frozen=True)
class LogEntry:
    timestamp: float
    level: str
    message: str
