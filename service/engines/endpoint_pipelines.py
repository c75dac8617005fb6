"""The engine half of the endpoint registry: each endpoint's pipeline and the component models it needs.

One `PipelineEndpoint` per endpoint that a pipeline runs (service/api/endpoints.py has the API half and the
list of files a new endpoint touches). Both engines and Triton's `ltx_pipeline` read it:
  run         the pipeline on components: LocalEngine's torch bindings, or, inside `ltx_pipeline`, the
              BLS bindings on the same inputs (sent as tensors, service/engines/conditioning_tensors.py);
  components  the component models (service/contract/components.py and ltx2_components.py names) the
              pipeline calls: a Triton repository, or a local model set, serves the endpoints whose
              components it has;
  family      which bound components `run` takes: LTX-Video's `Components` or LTX-2.3's `Ltx2Components`
              (LocalEngine runs the entry on that family's model set: service/engines/local_models.py);
  takes_kept_frames  whether input frames that start the output travel with the spec (extend).
The inputs come from the prepare stage (service/inputs/), which fetches, decodes and checks the
conditioning media before the accelerator is taken.

To add an endpoint's pipeline: write its `run` (narrow the spec with `narrowed`, call the
pipeline), add a `PipelineEndpoint` to `PIPELINE_ENDPOINTS` naming the component models it calls (declared
in service/contract/components.py), and its `InputEndpoint` in service/inputs/endpoints.py; every engine
then serves it where those components exist, and Submit stops answering FAILED_PRECONDITION.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from service.contract.ltx2_components import LTX2_COMPONENTS as LTX2_COMPONENT_NAMES
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.specs import (
    DistilledMulticonditioningSpec,
    Endpoint,
    ExtendSpec,
    Ltx2TextToVideoSpec,
    MulticonditioningSpec,
    Spec,
    TextToVideoSpec,
)
from service.pipelines.components import Components
from service.pipelines.distilled import generate_distilled
from service.pipelines.endpoint_inputs import EndpointInputs
from service.pipelines.extend import generate_extension
from service.pipelines.ltx2.components import Ltx2Components
from service.pipelines.ltx2.text_to_video import distilled_lora_scale, generate_ltx2
from service.pipelines.multiconditioning import generate_multiconditioning, generate_text_to_video

__all__ = [
    "PIPELINE_ENDPOINTS",
    "PIPELINE_SUPPORTED",
    "EndpointInputs",
    "PipelineEndpoint",
    "endpoints_served",
    "family_endpoints",
    "narrowed",
    "pipeline_endpoint",
    "run_endpoint",
    "served_endpoints",
]

SpecT = TypeVar("SpecT", bound=Spec)
ComponentsT = TypeVar("ComponentsT", Components, Ltx2Components)
# The bound components of one model family: LTX-Video's, or LTX-2.3's (PipelineEndpoint.family).
BoundComponents = Components | Ltx2Components
Pipeline = Callable[[BoundComponents, EndpointInputs, JobContext], GeneratedVideo]

# The component models every LTX-Video pipeline calls; the conditioned ones add the VAE encoder, the
# distilled one the latent upsampler.
LTXV_COMPONENTS = frozenset({"text_encoder", "transformer", "vae_decoder"})
# LTX-2.3 (service/contract/ltx2_components.py): multiscale, the default, needs the upsampler too.
LTX2_COMPONENTS = frozenset(LTX2_COMPONENT_NAMES)


@dataclass(frozen=True)
class PipelineEndpoint:
    endpoint: Endpoint
    spec_type: type[Spec]
    run: Pipeline
    components: frozenset[str] = field(default=LTXV_COMPONENTS)
    takes_kept_frames: bool = False
    family: type[Components] | type[Ltx2Components] = Components  # which bound components `run` takes


def narrowed(spec: object, spec_type: type[SpecT]) -> SpecT:
    """`spec` as the spec type a pipeline takes; a TypeError if the registry sent it another one."""
    if not isinstance(spec, spec_type):
        raise TypeError(f"{spec_type.__name__} expected, got {type(spec).__name__}")
    return spec


def _family(components: BoundComponents, family: type[ComponentsT]) -> ComponentsT:
    """`components` as the family a pipeline takes; a TypeError if the caller bound the other one."""
    if not isinstance(components, family):
        raise TypeError(f"{family.__name__} expected, got {type(components).__name__}")
    return components


def _kept(inputs: EndpointInputs) -> torch.Tensor:
    if inputs.kept_pixels is None:
        raise ValueError("extend needs its kept input frames (service.inputs.prepare_endpoint_inputs)")
    return inputs.kept_pixels


def _text_to_video(bound: BoundComponents, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
    components = _family(bound, Components)
    spec = narrowed(inputs.spec, TextToVideoSpec)
    return generate_text_to_video(components, spec, ctx)


def _multiconditioning(bound: BoundComponents, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
    components = _family(bound, Components)
    spec = narrowed(inputs.spec, MulticonditioningSpec)
    return generate_multiconditioning(components, spec, inputs.media, ctx)


def _distilled(bound: BoundComponents, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
    components = _family(bound, Components)
    spec = narrowed(inputs.spec, DistilledMulticonditioningSpec)
    return generate_distilled(components, spec, inputs.media, ctx)


def _extend(bound: BoundComponents, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
    components = _family(bound, Components)
    spec = narrowed(inputs.spec, ExtendSpec)
    return generate_extension(components, spec, _kept(inputs), inputs.media, ctx)


def _ltx2(bound: BoundComponents, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
    components = _family(bound, Ltx2Components)
    spec = narrowed(inputs.spec, Ltx2TextToVideoSpec)
    set_adapters, set_scale = components.set_stage_adapters, components.set_distilled_scale

    def stage_adapters(stage: int) -> None:
        if set_adapters is not None:  # in process: the job's peft adapters, mixed for this stage
            set_adapters(stage)
        if set_scale is not None:  # Triton: the resident distilled LoRA's scale
            set_scale(distilled_lora_scale(spec, stage))

    return generate_ltx2(components, spec, ctx, stage_adapters)


PIPELINE_ENDPOINTS: tuple[PipelineEndpoint, ...] = (
    PipelineEndpoint(Endpoint.TEXT_TO_VIDEO, TextToVideoSpec, _text_to_video),
    PipelineEndpoint(
        Endpoint.MULTICONDITIONING,
        MulticonditioningSpec,
        _multiconditioning,
        LTXV_COMPONENTS | {"vae_encoder"},
    ),
    PipelineEndpoint(
        Endpoint.DISTILLED_MULTICONDITIONING,
        DistilledMulticonditioningSpec,
        _distilled,
        LTXV_COMPONENTS | {"vae_encoder", "latent_upsampler"},
    ),
    PipelineEndpoint(
        Endpoint.EXTEND, ExtendSpec, _extend, LTXV_COMPONENTS | {"vae_encoder"}, takes_kept_frames=True
    ),
    # In process on the torch bindings (a copy per job that mixes the job's peft adapters per stage:
    # service/engines/ltx2_local.py), in `ltx_pipeline` on the BLS bindings.
    PipelineEndpoint(
        Endpoint.LTX2_TEXT_TO_VIDEO, Ltx2TextToVideoSpec, _ltx2, LTX2_COMPONENTS, family=Ltx2Components
    ),
)

_BY_ENDPOINT: Mapping[Endpoint, PipelineEndpoint] = {entry.endpoint: entry for entry in PIPELINE_ENDPOINTS}
# Every endpoint some pipeline runs.
PIPELINE_SUPPORTED = frozenset(_BY_ENDPOINT)


def pipeline_endpoint(endpoint: Endpoint | str) -> PipelineEndpoint:
    """The descriptor of `endpoint`; ValueError if no pipeline runs it."""
    entry = _BY_ENDPOINT.get(Endpoint(endpoint))
    if entry is None:
        raise ValueError(f"no pipeline runs endpoint {endpoint}")
    return entry


def served_endpoints(component_names: str | Sequence[str] | frozenset[str] | set[str]) -> frozenset[Endpoint]:
    """The endpoints a repository (or model set) with these component models serves; a comma-separated
    string (ltx_pipeline's `components` parameter) works too."""
    if isinstance(component_names, str):
        component_names = [name.strip() for name in component_names.split(",") if name.strip()]
    names = frozenset(component_names)
    return frozenset(entry.endpoint for entry in PIPELINE_ENDPOINTS if entry.components <= names)


def family_endpoints(family: type[Components] | type[Ltx2Components]) -> frozenset[Endpoint]:
    """Every endpoint whose pipeline runs on `family`'s bound components."""
    return frozenset(entry.endpoint for entry in PIPELINE_ENDPOINTS if entry.family is family)


def component_names(components: Components) -> frozenset[str]:
    """The component models behind bound `components` (the optional ones when present)."""
    optional = {"vae_encoder": components.vae_encoder, "latent_upsampler": components.upsampler}
    return LTXV_COMPONENTS | {name for name, member in optional.items() if member is not None}


def endpoints_served(components: Components) -> frozenset[Endpoint]:
    """What these components can run: conditioning needs the VAE encoder, distilled also the upsampler."""
    return served_endpoints(component_names(components))


def run_endpoint(components: BoundComponents, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
    """The endpoint's pipeline on `components`, for the job `ctx` (progress, cancel, request id)."""
    return pipeline_endpoint(inputs.spec.endpoint).run(components, inputs, ctx)
