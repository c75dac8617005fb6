"""The in-process engine: the pipelines on torch modules in this process (tiny presets on a CPU, or real
weights from a local directory on a GPU).

Every endpoint goes through the same steps (`generate`):
  1. the job frame (service/engines/job_frame.py) expands the prompt and picks the safety checker;
  2. conditioning media are fetched, decoded, checked and re-compressed (service/pipelines/media_inputs.py),
     which also resolves `aspect_ratio: auto`; input images are safety-checked when the request asks;
  3. LoRAs are applied to the shared transformer for the job and removed afterwards, under the model lock;
  4. the endpoint's pipeline runs;
  5. the job frame checks the output frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from service.config import ServiceConfig
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import (
    DistilledMulticonditioningSpec,
    Endpoint,
    ExtendSpec,
    MulticonditioningSpec,
    TextToVideoSpec,
)
from service.engines.job_frame import JobFrame
from service.models.loading import bind_components, load_models
from service.models.lora import applied_loras
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.distilled import generate_distilled
from service.pipelines.extend import generate_extension
from service.pipelines.media_inputs import prepare_conditioning_inputs, prepare_extend_input
from service.pipelines.multiconditioning import generate_multiconditioning
from service.pipelines.text_to_video import generate_text_to_video
from service.safety.checker import SafetyChecker

logger = logging.getLogger(__name__)

# A conditioned endpoint's pipeline: (components, spec with its prompt expanded and size resolved, the
# decoded conditioning media, progress, cancel check) -> frames.
ConditionedPipeline = Callable[
    [Components, Any, Sequence[ConditioningMedia], ProgressCallback, CancelCheck], GeneratedVideo
]

# The conditioned endpoints this engine serves, by endpoint. The distilled two-pass pipeline needs a
# latent upsampler and is added by `_conditioned_pipelines` when the model has one.
CONDITIONED_PIPELINES: dict[Endpoint, ConditionedPipeline] = {
    Endpoint.MULTICONDITIONING: generate_multiconditioning,
}

# An endpoint's job body: (spec, the safety checker if the request asks for one, progress, cancel check).
_Body = Callable[[Any, SafetyChecker | None, ProgressCallback, CancelCheck], GeneratedVideo]


class LocalEngine:
    """Engine Protocol on in-process torch modules; the models load once, at construction."""

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self._models = load_models(config.model)
        self._components = bind_components(self._models)
        self._frame = JobFrame(config)
        self._bodies: dict[Endpoint, _Body] = {
            Endpoint.TEXT_TO_VIDEO: self._text_to_video,
            Endpoint.EXTEND: self._extend,
        }
        for endpoint, pipeline in _conditioned_pipelines(self._components).items():
            self._bodies[endpoint] = self._conditioned(pipeline)
        logger.info(
            "local engine ready: preset %s on %s, endpoints %s",
            config.model.preset,
            config.model.device,
            ", ".join(sorted(self._bodies)),
        )

    def supports(self, endpoint: Endpoint | str) -> bool:
        """Whether this engine serves `endpoint` (others are answered FAILED_PRECONDITION by the API)."""
        try:
            return Endpoint(endpoint) in self._bodies
        except ValueError:
            return False

    def ready(self) -> bool:
        return True  # the models were loaded by the constructor

    def generate(self, spec: Any, on_progress: ProgressCallback, is_cancelled: CancelCheck) -> GeneratedVideo:
        if not self.supports(spec.endpoint):
            # The API checks `supports` before queueing, so getting here is a bug, not a client mistake.
            raise ValueError(f"the local engine does not serve endpoint {spec.endpoint}")
        spec, checker = self._frame.prepare(spec, on_progress)
        video = self._bodies[Endpoint(spec.endpoint)](spec, checker, on_progress, is_cancelled)
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

    def _text_to_video(
        self,
        spec: TextToVideoSpec,
        _checker: SafetyChecker | None,
        on_progress: ProgressCallback,
        is_cancelled: CancelCheck,
    ) -> GeneratedVideo:
        return self._run_locked(
            spec,
            on_progress,
            lambda: generate_text_to_video(self._components, spec, on_progress, is_cancelled),
        )

    def _conditioned(self, pipeline: ConditionedPipeline) -> _Body:
        def body(
            spec: MulticonditioningSpec | DistilledMulticonditioningSpec,
            checker: SafetyChecker | None,
            on_progress: ProgressCallback,
            is_cancelled: CancelCheck,
        ) -> GeneratedVideo:
            # Fetching happens outside the model lock: it may wait on the network.
            inputs = prepare_conditioning_inputs(spec, self._config.media, checker, on_progress)
            return self._run_locked(
                inputs.spec,
                on_progress,
                lambda: pipeline(self._components, inputs.spec, inputs.media, on_progress, is_cancelled),
            )

        return body

    def _extend(
        self,
        spec: ExtendSpec,
        checker: SafetyChecker | None,
        on_progress: ProgressCallback,
        is_cancelled: CancelCheck,
    ) -> GeneratedVideo:
        kept = prepare_extend_input(spec, self._config.media, checker, on_progress)
        return self._run_locked(
            spec,
            on_progress,
            lambda: generate_extension(self._components, spec, kept, on_progress, is_cancelled),
        )


def _conditioned_pipelines(components: Components) -> dict[Endpoint, ConditionedPipeline]:
    """CONDITIONED_PIPELINES, plus the distilled endpoint when the model has a latent upsampler."""
    pipelines = dict(CONDITIONED_PIPELINES)
    if components.upsampler is not None:
        pipelines[Endpoint.DISTILLED_MULTICONDITIONING] = generate_distilled
    else:
        logger.info("no latent upsampler: %s not served", Endpoint.DISTILLED_MULTICONDITIONING)
    return pipelines
