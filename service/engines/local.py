"""The in-process engine: the pipelines on torch modules in this process (tiny presets on a CPU, or real
weights from a local directory on a GPU).

The generate stage only: the job's inputs were prepared (prompt expanded, media fetched and checked,
LoRA files local: service/inputs/) before it got here, and the output is checked, encoded and stored
after it (service/jobs/finish.py). Every endpoint runs the same way: its `PipelineEndpoint` names the
model family, that family's model set (service/engines/local_models.py) takes its lock and applies the
job's LoRAs, and `run_endpoint` (the same call Triton's `ltx_pipeline` makes) runs the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.specs import Endpoint, Spec
from service.engines.endpoint_pipelines import EndpointInputs, pipeline_endpoint, run_endpoint
from service.engines.local_models import Family, LocalModelSet, LtxvModelSet
from service.engines.ltx2_local import Ltx2ModelSet
from service.models.lora import FetchedLora

logger = logging.getLogger(__name__)

# Each model family this process can load, from its config section (None: not configured). A new
# family adds its model set here and its `PipelineEndpoint`s in endpoint_pipelines.py.
MODEL_SET_LOADERS: tuple[Callable[[ServiceConfig], LocalModelSet | None], ...] = (
    LtxvModelSet,
    Ltx2ModelSet.configured,
)


class LocalEngine:
    """Engine Protocol on in-process torch modules; the models load once, at construction."""

    applies_loras = True  # the prepare stage fetches LoRA files for this engine

    def __init__(self, config: ServiceConfig) -> None:
        loaded = (load(config) for load in MODEL_SET_LOADERS)
        self._model_sets: Mapping[Family, LocalModelSet] = {m.family: m for m in loaded if m is not None}
        self._served = frozenset().union(*(m.served for m in self._model_sets.values()))
        logger.info(
            "local engine ready: preset %s on %s, endpoints %s",
            config.model.preset,
            config.model.device,
            ", ".join(sorted(self._served)),
        )

    def supports(self, endpoint: Endpoint | str) -> bool:
        """Whether this engine serves `endpoint` (others are answered FAILED_PRECONDITION by the API)."""
        try:
            return Endpoint(endpoint) in self._served
        except ValueError:
            return False

    def precondition_failure(self, spec: Spec) -> str | None:
        """Why this deployment cannot run `spec` although it serves its endpoint (FAILED_PRECONDITION)."""
        if not self.supports(spec.endpoint):
            return None  # the API answers an endpoint not served on its own
        return self._model_set(spec.endpoint).precondition_failure(spec)

    def ready(self) -> bool:
        return True  # the models were loaded by the constructor

    def generate(
        self,
        inputs: EndpointInputs,
        loras: Sequence[FetchedLora],
        ctx: JobContext,
    ) -> GeneratedVideo:
        if not self.supports(inputs.spec.endpoint):
            # The API checks `supports` before queueing, so getting here is a bug, not a client mistake.
            raise ValueError(f"the local engine does not serve endpoint {inputs.spec.endpoint}")
        with self._model_set(inputs.spec.endpoint).job(inputs, loras, ctx) as job:
            return run_endpoint(job.components, job.inputs, ctx)

    def _model_set(self, endpoint: Endpoint | str) -> LocalModelSet:
        return self._model_sets[pipeline_endpoint(endpoint).family]
