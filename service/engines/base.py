"""The interface every engine (in-process or Triton) offers to the job runner's generate stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.models.lora import FetchedLora
from service.pipelines.endpoint_inputs import EndpointInputs


class Engine(Protocol):
    """Runs one prepared job to decoded frames, holding the accelerator. Blocking; the runner calls it
    in a worker thread, with the inputs already prepared (service/inputs/)."""

    applies_loras: bool  # whether the prepare stage should fetch LoRA files for it

    def generate(
        self,
        inputs: EndpointInputs,
        loras: Sequence[FetchedLora],
        ctx: JobContext,
    ) -> GeneratedVideo:
        """Report progress through `ctx` and raise `service.domain.errors.Cancelled` at the first cancel
        check after `ctx.is_cancelled()` turns true, and
        `JobError` for failures the client caused or can act on."""
        ...

    def ready(self) -> bool:
        """Whether the engine can take a job now (health checks report this)."""
        ...
