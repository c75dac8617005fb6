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


class Priority(StrEnum):
    """The specs' queue priority: `low` jobs are claimed after every waiting `normal` one."""

    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:  # stored; claims order by it, then by arrival
        return 0 if self is Priority.NORMAL else 1

    @classmethod
    def from_rank(cls, rank: int | None) -> Priority:
        return Priority.LOW if rank else Priority.NORMAL


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
    priority: Priority = Priority.NORMAL
    worker_id: str | None = None  # the worker holding the lease while RUNNING
    lease_expires_at: float | None = None
    runs: int = 0  # times a worker claimed it (progress reports are kept per run)
    retries: int = 0  # times it was re-queued after its worker was interrupted
    webhook_url: str | None = None
    idempotency_key: str | None = None
    input_hash: str | None = None
    start_deadline: float | None = None


@dataclass(frozen=True)
class LogEntry:
    timestamp: float
    level: str
    message: str
