"""An LTX-2.3 component model (ltx2_text_encoder, ltx2_transformer, ltx2_vae_decoder, ltx2_audio_decoder,
ltx2_latent_upsampler) on torch, for the CPU repository.

It runs the module the in-process bindings call and ONNX export traces
(service/models/ltx2_component_modules.py: the adapter with the declared fp32 I/O), so Triton computes what
the in-process engine computes. Outputs: every declared one, in one response (component_model's
`infer_response`, shared with the LTX-Video components).

LoRA: the model keeps the resident distilled LoRA (the configured file, or the tiny preset's seeded one, as
the in-process runner installs it) and takes its scale per call (`distilled_lora_scale`, which the BLS
bindings send per stage). Other LoRAs are not served on Triton: Submit refuses them.

config.pbtxt parameters: `component` (which one) and `ltx2.<Ltx2ModelConfig field>` naming the weights.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from service.contract.ltx2_components import LTX2_COMPONENT_DECLS
from service.engines.triton_backend.component_model import infer_response
from service.engines.triton_backend.params import ltx2_config_from, model_parameters

log = logging.getLogger("ltx2_component")


class Ltx2ComponentModel:
    def initialize(self, args: dict[str, str]) -> None:
        from service.models.ltx2 import Ltx2Preset, load_ltx2_models
        from service.models.ltx2_component_modules import ltx2_component_module, ltx2_geometry
        from service.models.ltx2_loras import install_distilled, ltx2_helper_pipeline

        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        parameters = model_parameters(args)
        name = parameters.get("component", "")
        if name not in LTX2_COMPONENT_DECLS:
            raise ValueError(
                f"config.pbtxt parameter component: {name!r} is not one of {sorted(LTX2_COMPONENT_DECLS)}"
            )
        config = ltx2_config_from(parameters)
        models = load_ltx2_models(config)
        tiny = config.preset == Ltx2Preset.TINY
        if name in ("ltx2_text_encoder", "ltx2_transformer"):  # the modules the distilled LoRA adapts
            install_distilled(ltx2_helper_pipeline(models), models, config.seed if tiny else None)
        self.component = LTX2_COMPONENT_DECLS[name](ltx2_geometry(models))
        self.module = ltx2_component_module(self.component, models)
        self.device = torch.device(config.device)
        log.info("%s ready: preset %s on %s", name, config.preset, self.device)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [infer_response(self.component, self.module, request, self.device) for request in requests]

    def finalize(self) -> None:
        log.info("%s unloaded", self.component.name)
