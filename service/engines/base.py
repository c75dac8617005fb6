"""The interface every engine (in-process or Triton) offers to the job worker."""

from __future__ import annotations

from typing import Protocol

from service.domain.context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.specs import Spec


class Engine(Protocol):
    """Runs one normalized spec to decoded frames. Blocking; the worker calls it in a thread."""

    def generate(self, spec: Spec, ctx: JobContext) -> GeneratedVideo:
        """Report progress and log through `ctx`; raise `service.domain.errors.Cancelled` at the first
        cancel check after cancellation, and `JobError` for failures the client caused or can act on."""
        ...

    def ready(self) -> bool:
        """Whether the engine can take a job now (health checks report this)."""
        ...
