"""`JobContext`: what every layer below the queue needs about the job it works for, passed whole.

The request id (on every log line, and the Triton request id), progress reports, the cancel check, a
logger that stamps the request id, and the torch generator the pipeline draws its noise from. The job
runner makes one per job (service/jobs/runner.py); inside Triton, `ltx_pipeline` makes one per request
from the request's id. Tests use `JobContext.detached()`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.domain.errors import Cancelled
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage

if TYPE_CHECKING:  # annotations only: the domain imports no torch at run time
    import torch

_LOGGER = logging.getLogger("service.job")


def _ignore(_report: Progress) -> None:
    return None


def _never() -> bool:
    return False


class RequestLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds `request_id` to every record (service/logs.py prints it), keeping the caller's `extra`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


@dataclass(frozen=True, eq=False)
class JobContext:
    request_id: str
    on_progress: ProgressCallback = _ignore
    is_cancelled: CancelCheck = _never
    # The pipeline's noise source; None until the engine seeds one for the spec (`with_generator`).
    generator: torch.Generator | None = None
    log: RequestLogger = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", RequestLogger(_LOGGER, {"request_id": self.request_id}))

    @classmethod
    def detached(cls, request_id: str = "local") -> JobContext:
        """A context that reports nowhere and is never cancelled (tests, benchmarks, tools)."""
        return cls(request_id)

    def with_generator(self, generator: torch.Generator) -> JobContext:
        return dataclasses.replace(self, generator=generator)

    def with_progress(self, on_progress: ProgressCallback) -> JobContext:
        """The same job reporting to `on_progress` instead (e.g. a chunk prefixing its messages)."""
        return dataclasses.replace(self, on_progress=on_progress)

    def report(self, stage: Stage, message: str = "", step: int = 0, total: int = 0) -> None:
        self.on_progress(Progress(stage, step=step, total=total, message=message))

    def progress(self, report: Progress) -> None:
        self.on_progress(report)

    def raise_if_cancelled(self) -> None:
        """Raise `Cancelled` once the job has been cancelled (pipelines call it between steps)."""
        if self.is_cancelled():
            raise Cancelled()

    def require_generator(self) -> torch.Generator:
        if self.generator is None:
            raise ValueError(f"job {self.request_id}: the pipeline needs a seeded generator (with_generator)")
        return self.generator
