"""Progress events that flow from a pipeline up to `Watch` and the job log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where a job is in its pipeline, in the order they happen."""

    WAITING = "waiting"  # prepared, waiting for the accelerator (or queued inside Triton)
    LOADING = "loading"
    ENCODING_PROMPT = "encoding_prompt"
    PREPARING_CONDITIONS = "preparing_conditions"
    DENOISING = "denoising"
    UPSAMPLING = "upsampling"
    DECODING = "decoding"
    ENCODING_VIDEO = "encoding_video"
    STORING = "storing"


@dataclass(frozen=True)
class Progress:
    """One progress report: a stage, optionally `step` of `total` within it, and a log line."""

    stage: Stage
    step: int = 0
    total: int = 0
    message: str = ""


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]  # True once the job has been cancelled
