"""The LTX-2.3 family in this process: `ltx-2.3-22b/text-to-video/lora` on the `[ltx2]` models.

LocalEngine's model set for the family (service/engines/local_models.py), served beside the LTX-Video
models; each family has its own models and lock. The pipeline runs through the registry's LTX-2.3 entry
and `run_endpoint`, as every endpoint does. A job's hold on the models (`job`): prompt expansion (the
resident Gemma-3 with the LTX-2.3 system prompt when it can generate, else the configured expander), then
under the model lock the job's LoRAs are loaded beside the camera and distilled ones, and the bound
components' `set_stage_adapters` mixes them per stage; the job's LoRAs are removed when it ends.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from service.config import ServiceConfig
from service.contract.ltx2_components import (
    Ltx2AudioDecoderDecl,
    Ltx2LatentUpsamplerDecl,
    Ltx2TextEncoderDecl,
    Ltx2TransformerDecl,
    Ltx2VaeDecoderDecl,
)
from service.domain.job_context import JobContext
from service.domain.progress import Progress, Stage
from service.domain.specs import CameraLora, Endpoint, Ltx2TextToVideoSpec, Spec
from service.engines.endpoint_pipelines import EndpointInputs, family_endpoints, narrowed
from service.engines.local_models import BoundJob, Family
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
from service.prompting import build_prompt_expander
from service.prompting.expander import PromptExpander, expand_or_explain
from service.prompting.ltx2_gemma import ResidentGemmaExpander

logger = logging.getLogger(__name__)

TINY_EXPANSION_TOKENS = 24  # random weights: a short reply keeps the tiny preset's CPU runs fast


class Ltx2ModelSet:
    """Loads the LTX-2.3 models once; `job` holds them for one spec."""

    family: Family = Ltx2Components

    def __init__(self, config: ServiceConfig) -> None:
        self.models: Ltx2Models = load_ltx2_models(config.ltx2)
        self._pipe = ltx2_helper_pipeline(self.models)
        self.components = bind_ltx2_components(self.models)
        # The whole family, upsampler or not: without it single-scale requests still run, and Submit
        # refuses multiscale ones (`precondition_failure`).
        self.served: frozenset[Endpoint] = family_endpoints(Ltx2Components)
        tiny = config.ltx2.preset == Ltx2Preset.TINY
        with self.models.lock:
            install_distilled(self._pipe, self.models, config.ltx2.seed if tiny else None)
        # The prepare stage leaves LTX-2.3's expansion to the engine (it needs the resident model).
        self._expander = _resident_expander(self.models, tiny) or build_prompt_expander(
            config.prompt_expansion
        )

    @classmethod
    def configured(cls, config: ServiceConfig) -> Ltx2ModelSet | None:
        """The family's models, or None where `ltx2.preset` is "none"."""
        return cls(config) if config.ltx2.preset != "none" else None

    def camera_lora_installed(self, camera: CameraLora) -> bool:
        return camera is CameraLora.NONE or camera_lora_path(self.models.camera_lora_dir, camera) is not None

    def precondition_failure(self, spec: Spec) -> str | None:
        camera = getattr(spec, "camera_lora", CameraLora.NONE)
        if not self.camera_lora_installed(camera):
            return f"camera_lora {camera.value}: not installed on this deployment (ltx2.camera_lora_dir)"
        if getattr(spec, "use_multiscale", False) and self.components.upsampler is None:
            return "use_multiscale: no LTX-2.3 latent upsampler on this deployment (ltx2.upsampler_dir)"
        return None

    @contextmanager
    def job(
        self, inputs: EndpointInputs, loras: Sequence[FetchedLora], ctx: JobContext
    ) -> Iterator[BoundJob]:
        spec = narrowed(inputs.spec, Ltx2TextToVideoSpec)
        if spec.expand_prompt:  # outside the model lock: Gemma's text generation touches no LoRA adapter
            spec = dataclasses.replace(
                spec, prompt=expand_or_explain(self._expander, spec.prompt, ctx.on_progress)
            )
        models = self.models
        with models.lock, ltx2_job_adapters(self._pipe, models, spec, loras) as active:
            if active:
                names = ", ".join(a.name for a in active)
                ctx.on_progress(Progress(Stage.LOADING, message=f"LoRA adapters per stage: {names}"))
            # A copy per job: the stage hook mixes this job's adapters, the shared binding stays clean.
            components = dataclasses.replace(
                self.components, set_stage_adapters=functools.partial(set_stage_adapters, models, active)
            )
            yield BoundJob(dataclasses.replace(inputs, spec=spec), components)


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
