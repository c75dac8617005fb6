"""Each endpoint's pipeline, the same for every engine.

`run_endpoint` runs the endpoint's pipeline on components: LocalEngine's torch bindings, or, inside
Triton's `ltx_pipeline`, the BLS bindings on the same inputs (sent as tensors,
service/engines/conditioning_tensors.py). The inputs come from the prepare stage (service/inputs/), which
fetches, decodes and checks the conditioning media before the accelerator is taken.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, ProgressCallback
from service.domain.specs import Endpoint
from service.pipelines.components import Components
from service.pipelines.distilled import generate_distilled
from service.pipelines.endpoint_inputs import EndpointInputs
from service.pipelines.extend import generate_extension
from service.pipelines.multiconditioning import generate_multiconditioning, generate_text_to_video

__all__ = ["EndpointInputs", "endpoints_served", "run_endpoint"]


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
        raise ValueError("extend needs its kept input frames (service.inputs.prepare_endpoint_inputs)")
    return inputs.kept_pixels
