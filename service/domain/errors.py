"""Errors that end a job, with the `error_type` the API reports (see ARCHITECTURE.md, Errors)."""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    RUNNER_UNAVAILABLE = "runner_unavailable"
    INPUT_FETCH_FAILED = "input_fetch_failed"
    LORA_LOAD_FAILED = "lora_load_failed"
    CONTENT_POLICY_VIOLATION = "content_policy_violation"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"
    START_TIMEOUT = "start_timeout"  # waited in the queue past its start timeout; never started
    RETRIES_EXHAUSTED = "retries_exhausted"  # interrupted more often than queue.max_retries


class JobError(Exception):
    """A job failed for a reason the client can understand; `message` is shown to the client."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class Cancelled(JobError):
    """Raised by a pipeline at the first cancel check after the job was cancelled."""

    def __init__(self, message: str = "cancelled by the client") -> None:
        super().__init__(ErrorType.CANCELLED, message)


class RunnerUnavailable(JobError):
    """The backend (Triton) cannot be reached."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorType.RUNNER_UNAVAILABLE, message)
