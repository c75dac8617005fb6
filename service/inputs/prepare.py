"""The prepare stage: everything a job needs before it takes the accelerator, done while another job runs.

1. `expand_prompt`: the configured expander rewrites the prompt (the result reports the prompt actually
   used; the job log says so when there is no expander or it fails);
2. the safety checker the request asks for is picked (used here on the inputs and by the finish stage
   on the output; the extend spec has no `enable_safety_checker` field, so its output is always
   checked unless the service config turns the checker off);
3. conditioning media are fetched, decoded, checked and preprocessed as upstream does (blur, CRF;
   service/inputs/media.py, service/inputs/conditioning_recipe.py), which also resolves
   `aspect_ratio: auto`; extend's context frames are taken from its kept frames and preprocessed alike;
   each endpoint's way is its `InputEndpoint` (service/inputs/endpoints.py);
4. LoRAs are resolved to local files, downloading URLs (service/inputs/lora.py), so the model lock is
   never held over the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.domain.progress import Progress, ProgressCallback, Stage
from service.domain.specs import LoraSpec, Spec
from service.inputs.endpoints import input_endpoint
from service.inputs.lora import fetch_loras
from service.media.fetch import FetchLimits
from service.models.lora import FetchedLora
from service.pipelines.endpoint_inputs import EndpointInputs
from service.prompting import build_prompt_expander, expand_or_explain
from service.safety import build_safety_checker
from service.safety.checker import DISABLED_MESSAGE, SafetyChecker


@dataclass(frozen=True, eq=False)
class PreparedJob:
    """What the generate and finish stages take: the pipeline's inputs, its LoRA files, the output check."""

    inputs: EndpointInputs
    checker: SafetyChecker | None  # None: the request (or the config) turned the checker off
    loras: tuple[FetchedLora, ...] = ()


class InputPreparer:
    """Built once per service (the expander and the checker load their models once) and shared by the
    prepare workers; the finish stage checks the output with the same `checker`."""

    def __init__(self, config: ServiceConfig, *, fetch_lora_files: bool = True) -> None:
        self._expander = build_prompt_expander(config.prompt_expansion)
        self.safety = build_safety_checker(config.safety)
        self._media_limits = config.media
        self._lora_config = config.lora
        # The Triton engine applies no LoRA (ltx_pipeline refuses them), so it need not download any.
        self._fetch_lora_files = fetch_lora_files

    def prepare(self, spec: Spec, ctx: JobContext) -> PreparedJob:
        ctx.raise_if_cancelled()
        spec, checker = self._expand_and_pick_checker(spec, ctx.on_progress)
        inputs = prepare_endpoint_inputs(spec, self._media_limits, checker, ctx.on_progress)
        requested: tuple[LoraSpec, ...] = getattr(spec, "loras", ())
        loras = fetch_loras(requested, self._lora_config) if self._fetch_lora_files else ()
        return PreparedJob(inputs, checker, loras)

    def _expand_and_pick_checker(
        self, spec: Spec, on_progress: ProgressCallback
    ) -> tuple[Spec, SafetyChecker | None]:
        # LTX-2.3 expands with its resident Gemma-3 in the engine (service/engines/ltx2_local.py).
        if getattr(spec, "expand_prompt", False) and input_endpoint(spec.endpoint).expands_prompt:
            spec = dataclasses.replace(
                spec, prompt=expand_or_explain(self._expander, spec.prompt, on_progress)
            )
        if not getattr(spec, "enable_safety_checker", True):
            return spec, None
        if self.safety is None:
            on_progress(Progress(Stage.DECODING, message=DISABLED_MESSAGE))
        return spec, self.safety


def prepare_endpoint_inputs(
    spec: Spec, limits: FetchLimits, checker: SafetyChecker | None, on_progress: ProgressCallback
) -> EndpointInputs:
    """Fetch, decode and check the spec's media (none for text to video), as its endpoint's
    `InputEndpoint` says; input_fetch_failed on failure."""
    return input_endpoint(spec.endpoint).prepare_media(spec, limits, checker, on_progress)
