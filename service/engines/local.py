"""The in-process engine: the pipelines on torch modules in this process (tiny presets on a CPU, or real
weights from a local directory on a GPU)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from service.config import ServiceConfig
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import Endpoint, TextToVideoSpec
from service.models.loading import bind_components, load_models
from service.models.lora import applied_loras
from service.pipelines.text_to_video import generate_text_to_video

logger = logging.getLogger(__name__)

NO_PROMPT_EXPANDER = "expand_prompt requested but no prompt expander is configured; using the prompt as given"
NO_SAFETY_CHECKER = (
    "enable_safety_checker requested but no safety checker is installed yet; output was not checked"
)

Runner = Callable[[Any, ProgressCallback, CancelCheck], GeneratedVideo]


class LocalEngine:
    """Engine Protocol on in-process torch modules; the models load once, at construction."""

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self._models = load_models(config.model)
        self._components = bind_components(self._models)
        self._runners: dict[Endpoint, Runner] = {Endpoint.TEXT_TO_VIDEO: self._text_to_video}
        logger.info("local engine ready: preset %s on %s", config.model.preset, config.model.device)

    def supports(self, endpoint: Endpoint | str) -> bool:
        """Whether this engine serves `endpoint` (others are answered FAILED_PRECONDITION by the API)."""
        try:
            return Endpoint(endpoint) in self._runners
        except ValueError:
            return False

    def ready(self) -> bool:
        return True  # the models were loaded by the constructor

    def generate(self, spec: Any, on_progress: ProgressCallback, is_cancelled: CancelCheck) -> GeneratedVideo:
        if not self.supports(spec.endpoint):
            # The API checks `supports` before queueing, so getting here is a bug, not a client mistake.
            raise ValueError(f"the local engine does not serve endpoint {spec.endpoint}")
        return self._runners[Endpoint(spec.endpoint)](spec, on_progress, is_cancelled)

    def _text_to_video(
        self, spec: TextToVideoSpec, on_progress: ProgressCallback, is_cancelled: CancelCheck
    ) -> GeneratedVideo:
        if spec.expand_prompt:
            on_progress(Progress(Stage.ENCODING_PROMPT, message=NO_PROMPT_EXPANDER))
        # One job at a time on these modules: LoRAs are applied to the shared transformer in place.
        with self._models.lock:
            if spec.loras:
                on_progress(Progress(Stage.LOADING, message=f"applying {len(spec.loras)} LoRA(s)"))
            with applied_loras(self._models.transformer, spec.loras, self._config.lora):
                video = generate_text_to_video(self._components, spec, on_progress, is_cancelled)
        if spec.enable_safety_checker:
            on_progress(Progress(Stage.DECODING, message=NO_SAFETY_CHECKER))
        return video
