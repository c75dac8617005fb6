"""One model family's models in this process, as LocalEngine runs them: a small object per family.

LocalEngine itself knows no endpoint and no family. It looks up the endpoint's `PipelineEndpoint`
(service/engines/endpoint_pipelines.py), takes the model set of that descriptor's `family`, and calls
`run_endpoint` on what the set's `job` yields. What differs between families lives here, as one object
each:
  served               the endpoints its loaded models can run;
  precondition_failure why a spec it serves cannot run on this deployment (FAILED_PRECONDITION at Submit);
  job                  the job's hold on the models: their lock taken, the job's LoRAs applied (and removed
                       when it ends), the inputs as the pipeline takes them (LTX-2.3 expands its prompt
                       here, with its resident Gemma), and the bound components to run on.
`LtxvModelSet` is LTX-Video's; `Ltx2ModelSet` (service/engines/ltx2_local.py) is LTX-2.3's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import NamedTuple, Protocol

from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.domain.specs import Endpoint, Spec
from service.engines.endpoint_pipelines import BoundComponents, EndpointInputs, endpoints_served
from service.engines.torch_bindings import bind_components
from service.models.loading import load_models
from service.models.lora import FetchedLora, applied_loras
from service.pipelines.components import Components
from service.pipelines.ltx2.components import Ltx2Components

logger = logging.getLogger(__name__)

Family = type[Components] | type[Ltx2Components]  # PipelineEndpoint.family


class BoundJob(NamedTuple):
    """What `run_endpoint` runs one job on: its inputs and the bound components."""

    inputs: EndpointInputs
    components: BoundComponents


class LocalModelSet(Protocol):
    """One family's loaded models (see the module docstring)."""

    @property
    def family(self) -> Family: ...

    @property
    def served(self) -> frozenset[Endpoint]: ...

    def precondition_failure(self, spec: Spec) -> str | None: ...

    def job(
        self, inputs: EndpointInputs, loras: Sequence[FetchedLora], ctx: JobContext
    ) -> AbstractContextManager[BoundJob]: ...


class LtxvModelSet:
    """LTX-Video 0.9.7 (`[model]`): one job at a time, its LoRAs merged into the shared transformer."""

    family: Family = Components

    def __init__(self, config: ServiceConfig) -> None:
        self._models = load_models(config.model, config.fast_path)
        self.components = bind_components(self._models)
        self.served = endpoints_served(self.components)
        if Endpoint.DISTILLED_MULTICONDITIONING not in self.served:
            logger.info("no latent upsampler: %s not served", Endpoint.DISTILLED_MULTICONDITIONING)

    def precondition_failure(self, spec: Spec) -> str | None:
        return None  # every spec of a served endpoint runs on these models

    @contextmanager
    def job(
        self, inputs: EndpointInputs, loras: Sequence[FetchedLora], ctx: JobContext
    ) -> Iterator[BoundJob]:
        # One job at a time on these modules: LoRAs are applied to the shared transformer in place.
        with self._models.lock:
            if loras:
                ctx.on_progress(Progress(Stage.LOADING, message=f"applying {len(loras)} LoRA(s)"))
            with applied_loras(self._models.transformer, loras):
                yield BoundJob(inputs, self.components)
