"""One frozen, normalized spec per endpoint.

The API layer turns a validated protobuf request into one of these: defaults applied, resolution and
aspect ratio already exact width/height, frame counts already final, the seed already chosen. Everything
below the API (jobs, engines, pipelines) speaks these types only.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class Endpoint(StrEnum):
    """Endpoint ids, as in the spec files' names and the client's `run ENDPOINT_ID`."""

    TEXT_TO_VIDEO = "ltx-video-lora"
    MULTICONDITIONING = "ltx-video-lora/multiconditioning"
    DISTILLED_MULTICONDITIONING = "ltx-video-13b-distilled/multiconditioning"
    EXTEND = "ltx-video-v097/extend"
    LTX2_TEXT_TO_VIDEO = "ltx-2.3-22b/text-to-video/lora"


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA to apply: a local path or an http(s) URL to a safetensors file."""

    path: str
    scale: float = 1.0
    weight_name: str | None = None


@dataclass(frozen=True)
class TextToVideoSpec:
    """`ltx-video-lora`: text to video with LoRA (LTX-Video 0.9.7 13B dev)."""

    endpoint: ClassVar[Endpoint] = Endpoint.TEXT_TO_VIDEO

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int  # exactly the number of frames the output video has
    num_inference_steps: int
    frame_rate: int
    seed: int  # already chosen: a random seed is drawn at submit time, so a re-run is identical
    loras: tuple[LoraSpec, ...] = ()
    expand_prompt: bool = False
    reverse_video: bool = False
    enable_safety_checker: bool = True


# Every endpoint's spec type, keyed by endpoint id. Later endpoints add their spec here.
SPEC_TYPES: dict[Endpoint, type] = {
    Endpoint.TEXT_TO_VIDEO: TextToVideoSpec,
}

Spec = TextToVideoSpec  # widened to a Union as endpoints are added


def spec_to_json(spec: Any) -> str:
    """Serialize a spec for the job store (round-trips through `spec_from_json`)."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def spec_from_json(endpoint: Endpoint | str, text: str) -> Any:
    """Rebuild the spec of `endpoint` from `spec_to_json` output."""
    return _from_dict(SPEC_TYPES[Endpoint(endpoint)], json.loads(text))


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        kwargs[field.name] = _coerce(hints[field.name], data[field.name])
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple and value is not None:
        (item_type, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(item_type, v) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _from_dict(hint, value)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, StrEnum) and value is not None:
        return hint(value)
    for arg in typing.get_args(hint):  # Optional[Dataclass] and similar unions
        if dataclasses.is_dataclass(arg) and isinstance(value, dict):
            return _from_dict(arg, value)  # type: ignore[arg-type]
    return value
