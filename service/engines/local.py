"""The in-process engine: the pipelines on torch modules in this process (tiny presets on a CPU, or real
weights from a local directory on a GPU).

Every endpoint goes through the same steps (`generate`):
  1. the job frame (service/engines/job_frame.py) expands the prompt and picks the safety checker;
  2. conditioning media are fetched, decoded, checked and re-compressed (service/engines/endpoint_pipelines.py,
     the same step TritonEngine runs), which also resolves `aspect_ratio: auto`;
  3. LoRAs are applied to the shared transformer for the job and removed afterwards, under the model lock;
  4. the endpoint's pipeline runs (`run_endpoint`, the same call Triton's `ltx_pipeline` makes);
  5. the job frame checks the output frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from service.config import ServiceConfig
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import Endpoint
from service.engines.endpoint_pipelines import endpoints_served, prepare_endpoint_inputs, run_endpoint
from service.engines.job_frame import JobFrame
from service.engines.torch_bindings import bind_components
from service.models.loading import load_models
from service.models.lora import applied_loras

logger = logging.getLogger(__name__)


class LocalEngine:
    """Engine Protocol on in-process torch modules; the models load once, at construction."""

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self._models = load_models(config.model, config.fast_path)
        self._components = bind_components(self._models)
        self._frame = JobFrame(config)
        self._served = endpoints_served(self._components)
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

    def ready(self) -> bool:
        return True  # the models were loaded by the constructor

    def generate(self, spec: Any, on_progress: ProgressCallback, is_cancelled: CancelCheck) -> GeneratedVideo:
        if not self.supports(spec.endpoint):
            # The API checks `supports` before queueing, so getting here is a bug, not a client mistake.
            raise ValueError(f"the local engine does not serve endpoint {spec.endpoint}")
        spec, checker = self._frame.prepare(spec, on_progress)
        # Fetching happens outside the model lock: it may wait on the network.
        inputs = prepare_endpoint_inputs(spec, self._config.media, checker, on_progress)
        video = self._run_locked(
            inputs.spec,
            on_progress,
            lambda: run_endpoint(self._components, inputs, on_progress, is_cancelled),
        )
        self._frame.check_output(video, checker, on_progress)
        return video

    def _run_locked(
        self, spec: Any, on_progress: ProgressCallback, run: Callable[[], GeneratedVideo]
    ) -> GeneratedVideo:
        # One job at a time on these modules: LoRAs are applied to the shared transformer in place.
        loras = getattr(spec, "loras", ())
        with self._models.lock:
            if loras:
                on_progress(Progress(Stage.LOADING, message=f"applying {len(loras)} LoRA(s)"))
            with applied_loras(self._models.transformer, loras, self._config.lora):
                return run()
