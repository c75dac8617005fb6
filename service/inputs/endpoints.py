"""The inputs half of the endpoint registry: one `InputEndpoint` per endpoint, how its prepare stage runs.

  prepare_media    the spec's media fetched, decoded, checked (safety) and re-compressed, as the
                   pipeline's `EndpointInputs` (none for text to video; the kept frames for extend);
  expands_prompt   whether the configured prompt expander runs here (LTX-2.3 expands with its resident
                   Gemma-3 in the engine instead).

Adding an endpoint is one `InputEndpoint` in `INPUT_ENDPOINTS` (service/api/endpoints.py lists the one
edit per layer); `input_endpoint` refuses an endpoint that has none, and a unit test checks that every
`Endpoint` has one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service.domain.progress import ProgressCallback
from service.domain.specs import (
    DistilledMulticonditioningSpec,
    Endpoint,
    ExtendSpec,
    MulticonditioningSpec,
    Spec,
)
from service.inputs.media import extend_context, prepare_conditioning_inputs, prepare_extend_input
from service.media.fetch import FetchLimits
from service.pipelines.endpoint_inputs import EndpointInputs
from service.safety.checker import SafetyChecker

# (spec, fetch limits, the safety checker or None, progress) -> the pipeline's inputs
MediaPreparer = Callable[[Spec, FetchLimits, SafetyChecker | None, ProgressCallback], EndpointInputs]


@dataclass(frozen=True)
class InputEndpoint:
    endpoint: Endpoint
    prepare_media: MediaPreparer
    expands_prompt: bool = True


def _no_media(
    spec: Spec, _limits: FetchLimits, _checker: SafetyChecker | None, _on_progress: ProgressCallback
) -> EndpointInputs:
    return EndpointInputs(spec)


def _conditioning_media(
    spec: Spec, limits: FetchLimits, checker: SafetyChecker | None, on_progress: ProgressCallback
) -> EndpointInputs:
    if not isinstance(spec, MulticonditioningSpec | DistilledMulticonditioningSpec):
        raise TypeError(f"a multiconditioning spec expected, got {type(spec).__name__}")
    prepared = prepare_conditioning_inputs(spec, limits, checker, on_progress)
    return EndpointInputs(prepared.spec, media=prepared.media)


def _kept_frames(
    spec: Spec, limits: FetchLimits, checker: SafetyChecker | None, on_progress: ProgressCallback
) -> EndpointInputs:
    if not isinstance(spec, ExtendSpec):
        raise TypeError(f"an extend spec expected, got {type(spec).__name__}")
    kept = prepare_extend_input(spec, limits, checker, on_progress)
    return EndpointInputs(spec, media=extend_context(spec, kept), kept_pixels=kept)


INPUT_ENDPOINTS: tuple[InputEndpoint, ...] = (
    InputEndpoint(Endpoint.TEXT_TO_VIDEO, _no_media),
    InputEndpoint(Endpoint.MULTICONDITIONING, _conditioning_media),
    InputEndpoint(Endpoint.DISTILLED_MULTICONDITIONING, _conditioning_media),
    InputEndpoint(Endpoint.EXTEND, _kept_frames),
    InputEndpoint(Endpoint.LTX2_TEXT_TO_VIDEO, _no_media, expands_prompt=False),
)

_BY_ENDPOINT: Mapping[Endpoint, InputEndpoint] = {entry.endpoint: entry for entry in INPUT_ENDPOINTS}


def input_endpoint(endpoint: Endpoint | str) -> InputEndpoint:
    """The descriptor of `endpoint`; ValueError if it has none (a new endpoint missing its entry)."""
    entry = _BY_ENDPOINT.get(Endpoint(endpoint))
    if entry is None:
        raise ValueError(f"endpoint {endpoint} has no input preparation in service/inputs/endpoints.py")
    return entry
