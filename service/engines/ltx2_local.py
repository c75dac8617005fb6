"""The LTX-2.3 family in this process: `ltx-2.3-22b/text-to-video/lora` on the `[ltx2]` models.

Served beside the LTX-Video models by the same LocalEngine; each family has its own models and lock.
A job: prompt expansion (the resident Gemma-3 with the LTX-2.3 system prompt when it can generate, else
the configured expander), then under the model lock the job's LoRAs are loaded and mixed per stage with
the camera and distilled ones, the pipeline runs, and the job's LoRAs are removed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from service.config import ServiceConfig
from service.contract.ltx2_components import (
    Ltx2AudioDecoderDecl,
    Ltx2LatentUpsamplerDecl,
    Ltx2TextEncoderDecl,
    Ltx2TransformerDecl,
    Ltx2VaeDecoderDecl,
)
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import CameraLora, Ltx2TextToVideoSpec
from service.models.lora import FetchedLora
from service.models.ltx2 import Ltx2Models, Ltx2Preset, load_ltx2_models
from service.models.ltx2_bindings import (
    TorchLtx2AudioDecoder,
    TorchLtx2LatentUpsampler,
    TorchLtx2TextEncoder,
    TorchLtx2Transformer,
    TorchLtx2VaeDecoder,
)
from service.models.ltx2_component_modules import ltx2_component_module, ltx2_geometry
from service.models.ltx2_loras import (
    camera_lora_path,
    install_distilled,
    ltx2_helper_pipeline,
    ltx2_job_adapters,
    set_stage_adapters,
)
from service.pipelines.ltx2.components import Ltx2Components
from service.pipelines.ltx2.text_to_video import generate_ltx2
from service.prompting import build_prompt_expander
from service.prompting.expander import PromptExpander, expand_or_explain
from service.prompting.ltx2_gemma import ResidentGemmaExpander

logger = logging.getLogger(__name__)

TINY_EXPANSION_TOKENS = 24  # random weights: a short reply keeps the tiny preset's CPU runs fast


class Ltx2LocalRunner:
    """Loads the LTX-2.3 models once; `generate` runs one spec to frames and audio."""

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self.models: Ltx2Models = load_ltx2_models(config.ltx2)
        self._pipe = ltx2_helper_pipeline(self.models)
        self.components = bind_ltx2_components(self.models)
        tiny = config.ltx2.preset == Ltx2Preset.TINY
        with self.models.lock:
            install_distilled(self._pipe, self.models, config.ltx2.seed if tiny else None)
        # The prepare stage leaves LTX-2.3's expansion to this runner (it needs the resident model).
        self._expander = _resident_expander(self.models, tiny) or build_prompt_expander(
            config.prompt_expansion
        )

    def camera_lora_installed(self, camera: CameraLora) -> bool:
        return camera is CameraLora.NONE or camera_lora_path(self.models.camera_lora_dir, camera) is not None

    def generate(
        self,
        spec: Ltx2TextToVideoSpec,
        loras: Sequence[FetchedLora],
        ctx: JobContext,
    ) -> GeneratedVideo:
        on_progress = ctx.on_progress
        if spec.expand_prompt:
            spec = dataclasses.replace(
                spec, prompt=expand_or_explain(self._expander, spec.prompt, on_progress)
            )
        models = self.models
        with models.lock, ltx2_job_adapters(self._pipe, models, spec, loras) as active:
            if active:
                names = ", ".join(a.name for a in active)
                on_progress(Progress(Stage.LOADING, message=f"LoRA adapters per stage: {names}"))
            return generate_ltx2(
                self.components,
                spec,
                ctx,
                lambda stage: set_stage_adapters(models, active, stage),
            )


def bind_ltx2_components(models: Ltx2Models) -> Ltx2Components:
    """The LTX-2.3 component Protocols bound to torch adapters around `models` (in this process)."""
    geometry = ltx2_geometry(models)
    upsampler = (
        TorchLtx2LatentUpsampler(ltx2_component_module(Ltx2LatentUpsamplerDecl(geometry), models))
        if models.upsampler is not None
        else None
    )
    return Ltx2Components(
        geometry=geometry,
        text_encoder=TorchLtx2TextEncoder(
            ltx2_component_module(Ltx2TextEncoderDecl(geometry), models),
            models.tokenizer,
            geometry.text_max_length,
        ),
        transformer=TorchLtx2Transformer(
            ltx2_component_module(Ltx2TransformerDecl(geometry), models), geometry.transformer_blocks
        ),
        vae_decoder=TorchLtx2VaeDecoder(ltx2_component_module(Ltx2VaeDecoderDecl(geometry), models)),
        audio_decoder=TorchLtx2AudioDecoder(ltx2_component_module(Ltx2AudioDecoderDecl(geometry), models)),
        upsampler=upsampler,
    )


def _resident_expander(models: Ltx2Models, tiny: bool) -> PromptExpander | None:
    if (
        not hasattr(models.text_encoder, "generate")
        or getattr(models.tokenizer, "chat_template", None) is None
    ):
        logger.info("the LTX-2.3 text encoder cannot generate: prompt expansion uses the configured expander")
        return None
    return ResidentGemmaExpander(
        models.text_encoder, models.tokenizer, TINY_EXPANSION_TOKENS if tiny else None
    )
