"""The engine half of the endpoint registry: each endpoint's input preparation, pipeline and component models.

One `PipelineEndpoint` per endpoint that a pipeline runs (service/api/endpoints.py has the API half and the
list of files a new endpoint touches). Both engines and Triton's `ltx_pipeline` read it:
  prepare     runs in the service process whichever engine runs the pipeline: fetches, decodes and
              safety-checks the conditioning media (which also resolves `aspect_ratio: auto`);
  run         the pipeline on components: LocalEngine's torch bindings, or, inside `ltx_pipeline`, the
              BLS bindings on the same inputs (sent as tensors, conditioning_tensors.py);
  components  the component models (service/contract/components.py names) the pipeline calls: a Triton
              repository, or a local model set, serves the endpoints whose components it has.
To add an endpoint's pipeline: write `prepare` (or use `_no_media`) and `run` and add a `PipelineEndpoint`
to `PIPELINE_ENDPOINTS`; every engine then serves it where its components exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

from service.domain.context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.specs import (
    DistilledMulticonditioningSpec,
    Endpoint,
    ExtendSpec,
    MulticonditioningSpec,
    Spec,
    TextToVideoSpec,
)
from service.media.fetch import FetchLimits
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.distilled import generate_distilled
from service.pipelines.extend import generate_extension
from service.pipelines.media_inputs import prepare_conditioning_inputs, prepare_extend_input
from service.pipelines.multiconditioning import generate_multiconditioning, generate_text_to_video
from service.safety.checker import SafetyChecker

SpecT = TypeVar("SpecT", bound=Spec)

# The component models every LTX-Video pipeline calls; the conditioned ones add the VAE encoder, the
# distilled one the latent upsampler.
_LTXV_COMPONENTS = frozenset({"text_encoder", "transformer", "vae_decoder"})


@dataclass(frozen=True, eq=False)
class EndpointInputs(Generic[SpecT]):
    """A spec and what its pipeline takes besides it."""

    spec: SpecT  # the normalized spec, its AUTO size resolved
    media: tuple[ConditioningMedia, ...] = ()  # conditioned endpoints: images, then videos, at the size
    kept_pixels: torch.Tensor | None = None  # extend: input frames that start the output, [3, K, H, W]

    def require_kept_pixels(self) -> torch.Tensor:
        if self.kept_pixels is None:
            raise ValueError("extend needs its kept input frames (the endpoint's prepare step)")
        return self.kept_pixels


@dataclass(frozen=True)
class InputLimits:
    """What input preparation may do: fetch limits, and the safety checker (None: the request has it off)."""

    media: FetchLimits
    checker: SafetyChecker | None


InputPreparer = Callable[[SpecT, InputLimits, JobContext], EndpointInputs[SpecT]]
Pipeline = Callable[[Components, EndpointInputs[SpecT], JobContext], GeneratedVideo]


@dataclass(frozen=True)
class PipelineEndpoint(Generic[SpecT]):
    endpoint: Endpoint
    spec_type: type[SpecT]
    prepare: InputPreparer[SpecT]
    run: Pipeline[SpecT]
    components: frozenset[str] = field(default=_LTXV_COMPONENTS)
    takes_kept_frames: bool = False  # extend: input frames that start the output travel to the pipeline


def _no_media(spec: SpecT, _limits: InputLimits, _ctx: JobContext) -> EndpointInputs[SpecT]:
    return EndpointInputs(spec)


def _conditioning_media(
    spec: MulticonditioningSpec | DistilledMulticonditioningSpec, limits: InputLimits, ctx: JobContext
) -> EndpointInputs[MulticonditioningSpec | DistilledMulticonditioningSpec]:
    prepared = prepare_conditioning_inputs(spec, limits.media, limits.checker, ctx.on_progress)
    return EndpointInputs(prepared.spec, media=prepared.media)


def _extend_input(spec: ExtendSpec, limits: InputLimits, ctx: JobContext) -> EndpointInputs[ExtendSpec]:
    return EndpointInputs(spec, kept_pixels=prepare_extend_input(spec, limits.media, limits.checker, ctx.on_progress))


PIPELINE_ENDPOINTS: tuple[PipelineEndpoint[Spec], ...] = (  # type: ignore[assignment]
    PipelineEndpoint(
        Endpoint.TEXT_TO_VIDEO,
        TextToVideoSpec,
        _no_media,
        lambda components, inputs, ctx: generate_text_to_video(components, inputs.spec, ctx),
    ),
    PipelineEndpoint(
        Endpoint.MULTICONDITIONING,
        MulticonditioningSpec,
        _conditioning_media,  # type: ignore[arg-type]
        lambda components, inputs, ctx: generate_multiconditioning(components, inputs.spec, inputs.media, ctx),
        _LTXV_COMPONENTS | {"vae_encoder"},
    ),
    PipelineEndpoint(
        Endpoint.DISTILLED_MULTICONDITIONING,
        DistilledMulticonditioningSpec,
        _conditioning_media,  # type: ignore[arg-type]
        lambda components, inputs, ctx: generate_distilled(components, inputs.spec, inputs.media, ctx),
        _LTXV_COMPONENTS | {"vae_encoder", "latent_upsampler"},
    ),
    PipelineEndpoint(
        Endpoint.EXTEND,
        ExtendSpec,
        _extend_input,
        lambda components, inputs, ctx: generate_extension(
            components, inputs.spec, inputs.require_kept_pixels(), ctx
        ),
        _LTXV_COMPONENTS | {"vae_encoder"},
        takes_kept_frames=True,
    ),
)

_BY_ENDPOINT: Mapping[Endpoint, PipelineEndpoint[Spec]] = {entry.endpoint: entry for entry in PIPELINE_ENDPOINTS}
# Every endpoint some pipeline runs (LTX-2.3's API exists, its pipeline not yet: FAILED_PRECONDITION).
PIPELINE_SUPPORTED = frozenset(_BY_ENDPOINT)


def pipeline_endpoint(endpoint: Endpoint | str) -> PipelineEndpoint[Spec]:
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


def component_names(components: Components) -> frozenset[str]:
    """The component models behind bound `components` (the optional ones when present)."""
    optional = {"vae_encoder": components.vae_encoder, "latent_upsampler": components.upsampler}
    return _LTXV_COMPONENTS | {name for name, member in optional.items() if member is not None}


def endpoints_served(components: Components) -> frozenset[Endpoint]:
    """What these components can run."""
    return served_endpoints(component_names(components))


def prepare_inputs(spec: Spec, limits: InputLimits, ctx: JobContext) -> EndpointInputs[Spec]:
    """The endpoint's input preparation; input_fetch_failed on failure."""
    return pipeline_endpoint(spec.endpoint).prepare(spec, limits, ctx)


def run_endpoint(components: Components, inputs: EndpointInputs[Spec], ctx: JobContext) -> GeneratedVideo:
    """The endpoint's pipeline on `components`, its noise drawn from a generator seeded with the spec's
    seed unless `ctx` brings one."""
    if ctx.generator is None:
        ctx = ctx.with_generator(torch.Generator("cpu").manual_seed(inputs.spec.seed))
    return pipeline_endpoint(inputs.spec.endpoint).run(components, inputs, ctx)
