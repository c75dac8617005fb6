"""The interface every engine (in-process or Triton) offers to the job worker."""

from __future__ import annotations

from typing import Any, Protocol

from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, ProgressCallback


class Engine(Protocol):
    """Runs one normalized spec to decoded frames. Blocking; the worker calls it in a thread."""

    def generate(self, spec: Any, on_progress: ProgressCallback, is_cancelled: CancelCheck) -> GeneratedVideo:
        """Raise `service.domain.errors.Cancelled` at the first cancel check after cancellation, and
        `JobError` for failures the client caused or can act on."""
        ...

    def ready(self) -> bool:
        """Whether the engine can take a job now (health checks report this)."""
        ...
