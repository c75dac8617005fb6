"""The in-process engine: the pipelines on torch modules in this process (tiny presets on a CPU, or real
weights from a local directory on a GPU).

The generate stage only: the job's inputs were prepared (prompt expanded, media fetched and checked,
LoRA files local: service/inputs/) before it got here, and the output is checked, encoded and stored
after it (service/jobs/finish.py). Under the model lock the job's LoRAs are applied to the shared
transformer and removed afterwards, and the endpoint's pipeline runs (`run_endpoint`, the same call
Triton's `ltx_pipeline` makes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import CameraLora, Endpoint, Ltx2TextToVideoSpec, Spec
from service.engines.endpoint_pipelines import EndpointInputs, endpoints_served, run_endpoint
from service.engines.ltx2_local import Ltx2LocalRunner
from service.engines.torch_bindings import bind_components
from service.models.loading import load_models
from service.models.lora import FetchedLora, applied_loras

logger = logging.getLogger(__name__)


class LocalEngine:
    """Engine Protocol on in-process torch modules; the models load once, at construction."""

    applies_loras = True  # the prepare stage fetches LoRA files for this engine

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self._models = load_models(config.model, config.fast_path)
        self._components = bind_components(self._models)
        self._served = endpoints_served(self._components)
        # The LTX-2.3 family has its own models (`[ltx2]`), served beside the LTX-Video ones.
        self._ltx2 = Ltx2LocalRunner(config) if config.ltx2.preset != "none" else None
        if self._ltx2 is not None:
            self._served |= {Endpoint.LTX2_TEXT_TO_VIDEO}
        if Endpoint.DISTILLED_MULTICONDITIONING not in self._served:
            logger.info("no latent upsampler: %s not served", Endpoint.DISTILLED_MULTICONDITIONING)
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
        camera = getattr(spec, "camera_lora", CameraLora.NONE)
        if self._ltx2 is not None and not self._ltx2.camera_lora_installed(camera):
            return f"camera_lora {camera.value}: not installed on this deployment (ltx2.camera_lora_dir)"
        return None

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
        if self._ltx2 is not None and isinstance(inputs.spec, Ltx2TextToVideoSpec):
            return self._ltx2.generate(inputs.spec, loras, ctx)
        # One job at a time on these modules: LoRAs are applied to the shared transformer in place.
        with self._models.lock:
            if loras:
                ctx.on_progress(Progress(Stage.LOADING, message=f"applying {len(loras)} LoRA(s)"))
            with applied_loras(self._models.transformer, loras):
                return run_endpoint(self._components, inputs, ctx)
