"""An engine behind its prepare stage and output check, called with a spec as the job runner does
(without the queue, the encode and storage): what the engine tests exercise."""

from __future__ import annotations

from typing import Any

from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.engines.base import Engine
from service.inputs import InputPreparer
from service.jobs.runner import generate_in_line


class EngineInLine:
    def __init__(self, engine: Engine, config: ServiceConfig) -> None:
        self.engine = engine
        self.preparer = InputPreparer(config, fetch_lora_files=engine.applies_loras)

    def generate(self, spec: Any, ctx: JobContext) -> GeneratedVideo:
        return generate_in_line(self.preparer, self.engine, spec, ctx)

    def supports(self, endpoint: Any) -> bool:
        return bool(self.engine.supports(endpoint))  # type: ignore[attr-defined]

    def ready(self) -> bool:
        return self.engine.ready()
