"""The API half of the endpoint registry: one `ApiEndpoint` per endpoint, and everything that dispatches on it.

Adding an endpoint = one descriptor per layer. Each layer has one registry of descriptors, one entry per
endpoint, and nothing else in it names endpoints (the servicer, the events, the client, the job runner,
the prepare stage, both engines and ltx_pipeline look them up). The LTX-2.3 endpoint
(`ltx-2.3-22b/text-to-video/lora`) touches exactly these files, one per layer:
  1. proto     protos/ltx/v1/endpoints.proto: `Ltx2TextToVideoInput`/`Ltx2TextToVideoOutput`, and the
               `ltx2_text_to_video` field of the GenerationInput/GenerationOutput oneofs in
               protos/ltx/v1/video_generation.proto (then `make proto`);
  2. domain    service/domain/specs.py: `Endpoint.LTX2_TEXT_TO_VIDEO`, `Ltx2TextToVideoSpec`, its
               `SPEC_TYPES` entry;
  3. api       service/api/endpoints.py: its `ApiEndpoint` in `API_ENDPOINTS` below, naming its validator
               (validation.py `check_ltx2`), converter and Output builder (convert.py `ltx2_spec`,
               `ltx2_output`) and defaults (defaults.py `Ltx2TextToVideo`);
  4. inputs    service/inputs/endpoints.py: its `InputEndpoint` in `INPUT_ENDPOINTS` (no media; its prompt
               is expanded in the engine by the resident Gemma-3);
  5. engines   service/engines/endpoint_pipelines.py: its `PipelineEndpoint` in `PIPELINE_ENDPOINTS`: the
               pipeline (service/pipelines/ltx2/text_to_video.py) and the component models it needs
               (declared in service/contract/ltx2_components.py), which decide whether a deployment
               (local or Triton) serves it, and its `family` (`Ltx2Components`), whose model set
               LocalEngine runs it on.
The code behind a descriptor (the pipeline, its components, a validator) lives where its layer keeps
such code; the descriptor is the one edit that wires it in. tests/unit/test_inputs_registry.py checks
that every `Endpoint` has an API and an inputs descriptor.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from ltx.v1 import endpoints_pb2 as pb
from ltx.v1 import video_generation_pb2 as gen_pb
from service.api import convert
from service.api import validation as v
from service.domain.outputs import JobOutput
from service.domain.specs import SPEC_TYPES, Endpoint, Spec

InputT = TypeVar("InputT", bound=Message)


def _as_given(data: dict[str, Any]) -> dict[str, Any]:
    return data


@dataclass(frozen=True)
class ApiEndpoint(Generic[InputT]):
    """What the API needs to know about one endpoint."""

    endpoint: Endpoint
    oneof_field: str  # its field in GenerationInput and GenerationOutput
    input_type: type[InputT]
    output_type: type[Message]
    validator: Callable[[InputT, v.Checks], None]  # adds every violation of a message to the checks
    converter: Callable[[InputT, random.Random], Spec]  # a valid message -> its normalized spec
    output: Callable[[JobOutput], Message]  # a finished job -> the Output message
    json_aliases: Callable[[dict[str, Any]], dict[str, Any]] = _as_given  # spec JSON -> proto JSON

    def __post_init__(self) -> None:
        spec_type = SPEC_TYPES.get(self.endpoint)
        if spec_type is None:
            raise ValueError(f"endpoint {self.endpoint} has no spec type in service.domain.specs.SPEC_TYPES")

    def input_container(self, message: InputT) -> gen_pb.GenerationInput:
        """`message` in its GenerationInput oneof field."""
        container = gen_pb.GenerationInput()
        getattr(container, self.oneof_field).CopyFrom(message)
        return container

    def output_container(self, message: Message) -> gen_pb.GenerationOutput:
        """`message` (this endpoint's Output) in its GenerationOutput oneof field."""
        container = gen_pb.GenerationOutput()
        getattr(container, self.oneof_field).CopyFrom(message)
        return container


API_ENDPOINTS: tuple[ApiEndpoint[Any], ...] = (
    ApiEndpoint(
        Endpoint.TEXT_TO_VIDEO,
        "text_to_video",
        pb.TextToVideoInput,
        pb.TextToVideoOutput,
        v.check_text_to_video,
        convert.text_to_video_spec,
        convert.ltxv_output(pb.TextToVideoOutput),
    ),
    ApiEndpoint(
        Endpoint.MULTICONDITIONING,
        "multiconditioning",
        pb.MulticonditioningInput,
        pb.MulticonditioningOutput,
        v.check_multiconditioning,
        convert.multiconditioning_spec,
        convert.ltxv_output(pb.MulticonditioningOutput),
    ),
    ApiEndpoint(
        Endpoint.DISTILLED_MULTICONDITIONING,
        "distilled_multiconditioning",
        pb.DistilledMulticonditioningInput,
        pb.DistilledMulticonditioningOutput,
        v.check_distilled,
        convert.distilled_spec,
        convert.ltxv_output(pb.DistilledMulticonditioningOutput),
    ),
    ApiEndpoint(
        Endpoint.EXTEND,
        "extend",
        pb.ExtendInput,
        pb.ExtendOutput,
        v.check_extend,
        convert.extend_spec,
        convert.ltxv_output(pb.ExtendOutput, with_prompt=False),  # the extend spec's output has no prompt
    ),
    ApiEndpoint(
        Endpoint.LTX2_TEXT_TO_VIDEO,
        "ltx2_text_to_video",
        pb.Ltx2TextToVideoInput,
        pb.Ltx2TextToVideoOutput,
        v.check_ltx2,
        convert.ltx2_spec,
        convert.ltx2_output,
        json_aliases=convert.ltx2_json_aliases,
    ),
)

_BY_ENDPOINT: Mapping[Endpoint, ApiEndpoint[Any]] = {entry.endpoint: entry for entry in API_ENDPOINTS}
_BY_INPUT: Mapping[type, ApiEndpoint[Any]] = {entry.input_type: entry for entry in API_ENDPOINTS}
PROVIDER_PREFIX = "fal-ai/"  # the spec files' endpoint ids carry it; ours do not


def api_endpoint(endpoint: Endpoint | str) -> ApiEndpoint[Any]:
    """The descriptor of `endpoint` (an id, optionally with the provider prefix); ValueError if unknown."""
    return _BY_ENDPOINT[Endpoint(str(endpoint).removeprefix(PROVIDER_PREFIX))]


def for_input(message: Message) -> ApiEndpoint[Any]:
    """The descriptor of an endpoint Input message; TypeError for any other message."""
    entry = _BY_INPUT.get(type(message))
    if entry is None:
        raise TypeError(f"not an endpoint input message: {type(message).__name__}")
    return entry


def validate(message: Message, *, max_media_bytes: int | None = None) -> list[v.Violation]:
    """Every violation in `message`, one of the endpoint Input messages (empty when it is valid), at most
    validation.MAX_VIOLATIONS of them plus one counting the rest. `max_media_bytes` bounds each data
    URI's decoded size (the service's media fetch limit)."""
    return v.run_checks(message, for_input(message).validator, max_media_bytes=max_media_bytes)


def to_spec(message: Message, *, rng: random.Random) -> Spec:
    """The normalized spec of a validated endpoint Input message; `rng` draws the seed if unset."""
    return for_input(message).converter(message, rng)


def output_to_pb(endpoint: Endpoint | str, output: JobOutput) -> Message:
    """The endpoint's Output message for a finished job (every output field of its spec)."""
    return api_endpoint(endpoint).output(output)


def input_from_json(endpoint_id: str, data: dict[str, Any]) -> Message:
    """The Input message of `endpoint_id` (optionally "fal-ai/"-prefixed) from the spec's JSON form.

    Raises ValueError for an unknown endpoint id and json_format.ParseError for JSON that does not fit.
    """
    entry = api_endpoint(endpoint_id)
    return json_format.ParseDict(entry.json_aliases(dict(data)), entry.input_type())
