"""Each endpoint's inputs and pipeline, the same for every engine.

`prepare_endpoint_inputs` runs in the service process whichever engine runs the pipeline: it fetches,
decodes and safety-checks the conditioning media (service/pipelines/media_inputs.py), which also resolves
`aspect_ratio: auto`. `run_endpoint` runs the endpoint's pipeline on components: LocalEngine's torch
bindings, or, inside Triton's `ltx_pipeline`, the BLS bindings on the same inputs (sent as tensors,
service/engines/conditioning_tensors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, ProgressCallback
from service.domain.specs import Endpoint
from service.media.fetch import FetchLimits
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.distilled import generate_distilled
from service.pipelines.extend import generate_extension
from service.pipelines.media_inputs import prepare_conditioning_inputs, prepare_extend_input
from service.pipelines.multiconditioning import generate_multiconditioning, generate_text_to_video
from service.safety.checker import SafetyChecker

CONDITIONED_ENDPOINTS = frozenset({Endpoint.MULTICONDITIONING, Endpoint.DISTILLED_MULTICONDITIONING})


@dataclass(frozen=True, eq=False)
class EndpointInputs:
    """A spec and what its pipeline takes besides it."""

    spec: Any  # the normalized spec, its AUTO size resolved
    media: tuple[ConditioningMedia, ...] = ()  # conditioned endpoints: images, then videos, at the size
    kept_pixels: torch.Tensor | None = None  # extend: input frames that start the output, [3, K, H, W]


def prepare_endpoint_inputs(
    spec: Any, limits: FetchLimits, checker: SafetyChecker | None, on_progress: ProgressCallback
) -> EndpointInputs:
    """Fetch, decode and check the spec's media (none for text to video); input_fetch_failed on failure."""
    endpoint = Endpoint(spec.endpoint)
    if endpoint in CONDITIONED_ENDPOINTS:
        prepared = prepare_conditioning_inputs(spec, limits, checker, on_progress)
        return EndpointInputs(prepared.spec, media=prepared.media)
    if endpoint is Endpoint.EXTEND:
        return EndpointInputs(spec, kept_pixels=prepare_extend_input(spec, limits, checker, on_progress))
    return EndpointInputs(spec)


def endpoints_served(components: Components) -> frozenset[Endpoint]:
    """What these components can run: conditioning needs the VAE encoder, distilled also the upsampler."""
    served = {Endpoint.TEXT_TO_VIDEO}
    if components.vae_encoder is not None:
        served |= {Endpoint.MULTICONDITIONING, Endpoint.EXTEND}
        if components.upsampler is not None:
            served.add(Endpoint.DISTILLED_MULTICONDITIONING)
    return frozenset(served)


def run_endpoint(
    components: Components, inputs: EndpointInputs, on_progress: ProgressCallback, is_cancelled: CancelCheck
) -> GeneratedVideo:
    """The endpoint's pipeline on `components`."""
    endpoint = Endpoint(inputs.spec.endpoint)
    if endpoint not in _PIPELINES:
        raise ValueError(f"no pipeline for endpoint {endpoint}")
    return _PIPELINES[endpoint](components, inputs, on_progress, is_cancelled)


_Pipeline = Callable[[Components, EndpointInputs, ProgressCallback, CancelCheck], GeneratedVideo]

_PIPELINES: dict[Endpoint, _Pipeline] = {
    Endpoint.TEXT_TO_VIDEO: lambda c, inputs, progress, cancelled: generate_text_to_video(
        c, inputs.spec, progress, cancelled
    ),
    Endpoint.MULTICONDITIONING: lambda c, inputs, progress, cancelled: generate_multiconditioning(
        c, inputs.spec, inputs.media, progress, cancelled
    ),
    Endpoint.DISTILLED_MULTICONDITIONING: lambda c, inputs, progress, cancelled: generate_distilled(
        c, inputs.spec, inputs.media, progress, cancelled
    ),
    Endpoint.EXTEND: lambda c, inputs, progress, cancelled: generate_extension(
        c, inputs.spec, _kept(inputs), progress, cancelled
    ),
}


def _kept(inputs: EndpointInputs) -> torch.Tensor:
    if inputs.kept_pixels is None:
        raise ValueError("extend needs its kept input frames (prepare_endpoint_inputs)")
    return inputs.kept_pixels
