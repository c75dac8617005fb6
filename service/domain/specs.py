"""One frozen, normalized spec per endpoint.

The API layer turns a validated protobuf request into one of these: defaults applied, resolution and
aspect ratio already exact width/height (or 0x0 plus `AspectRatio.AUTO` until the conditioning media is
fetched, see `resolve_auto_size`), frame counts already final, the seed already chosen. Everything below
the API (jobs, engines, pipelines) speaks these types only. Size and frame rules: service/domain/geometry.py.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from service.domain.geometry import AspectRatio, Resolution, size_for


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


@dataclass(frozen=True)
class ImageConditionSpec:
    """An image that conditions the output frame `start_frame` with `strength` (0 none, 1 kept)."""

    url: str
    start_frame: int = 0
    strength: float = 1.0


@dataclass(frozen=True)
class VideoConditionSpec:
    """A video whose first frame is placed at output frame `start_frame`, conditioning with `strength`."""

    url: str
    start_frame: int = 0
    strength: float = 1.0
    max_num_frames: int | None = None  # use at most this many frames of the input; None = all
    target_fps: int | None = None  # resample the input to this rate before use; None = keep its rate


@dataclass(frozen=True)
class MulticonditioningSpec:
    """`ltx-video-lora/multiconditioning`: text + images + videos, LoRA (LTX-Video 0.9.7 13B dev).

    With `aspect_ratio` AUTO and at least one condition, `width` and `height` are 0 until the media is
    fetched: then `resolve_auto_size` sets them from the first image's (else the first video's) ratio.
    """

    endpoint: ClassVar[Endpoint] = Endpoint.MULTICONDITIONING

    prompt: str
    negative_prompt: str
    resolution: Resolution
    aspect_ratio: AspectRatio
    width: int  # 0 while the AUTO aspect ratio is unresolved
    height: int
    num_frames: int  # exactly the number of frames the output video has
    num_inference_steps: int
    frame_rate: int
    seed: int
    loras: tuple[LoraSpec, ...] = ()
    images: tuple[ImageConditionSpec, ...] = ()
    videos: tuple[VideoConditionSpec, ...] = ()
    expand_prompt: bool = False
    reverse_video: bool = False
    enable_safety_checker: bool = True


@dataclass(frozen=True)
class DistilledMulticonditioningSpec:
    """`ltx-video-13b-distilled/multiconditioning`: two-pass multiscale, long videos (0.9.7 13B distilled).

    Sizes as in MulticonditioningSpec (0 while AUTO is unresolved); the first-pass size comes from
    `geometry.multiscale_sizes(size, DISTILLED_FIRST_PASS_DOWNSCALE)`.
    """

    endpoint: ClassVar[Endpoint] = Endpoint.DISTILLED_MULTICONDITIONING

    prompt: str
    negative_prompt: str
    resolution: Resolution
    aspect_ratio: AspectRatio
    width: int  # 0 while the AUTO aspect ratio is unresolved
    height: int
    num_frames: int  # exactly the number of frames the output video has (up to 1441)
    first_pass_num_inference_steps: int
    second_pass_num_inference_steps: int
    second_pass_skip_initial_steps: int
    frame_rate: int
    seed: int
    temporal_adain_factor: float
    tone_map_compression_ratio: float  # 0 = no tone mapping
    constant_rate_factor: int  # CRF used to re-compress input media
    loras: tuple[LoraSpec, ...] = ()
    images: tuple[ImageConditionSpec, ...] = ()
    videos: tuple[VideoConditionSpec, ...] = ()
    expand_prompt: bool = False
    reverse_video: bool = False
    enable_safety_checker: bool = True
    enable_detail_pass: bool = False


@dataclass(frozen=True)
class ExtendSpec:
    """`ltx-video-v097/extend`: continue `video` (LTX-Video 0.9.7); the output length is the service's."""

    endpoint: ClassVar[Endpoint] = Endpoint.EXTEND

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    frame_rate: int
    num_inference_steps: int
    seed: int
    video: VideoConditionSpec
    expand_prompt: bool = True


class Scheduler(StrEnum):
    LTX2 = "ltx2"
    LINEAR_QUADRATIC = "linear_quadratic"
    BETA = "beta"


class Acceleration(StrEnum):
    NONE = "none"
    REGULAR = "regular"
    HIGH = "high"
    FULL = "full"


class CameraLora(StrEnum):
    DOLLY_IN = "dolly_in"
    DOLLY_OUT = "dolly_out"
    DOLLY_LEFT = "dolly_left"
    DOLLY_RIGHT = "dolly_right"
    JIB_UP = "jib_up"
    JIB_DOWN = "jib_down"
    STATIC = "static"
    NONE = "none"


class VideoOutputType(StrEnum):
    X264_MP4 = "X264 (.mp4)"
    VP9_WEBM = "VP9 (.webm)"
    PRORES4444_MOV = "PRORES4444 (.mov)"
    GIF = "GIF (.gif)"


class VideoQuality(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    MAXIMUM = "maximum"


class VideoWriteMode(StrEnum):
    FAST = "fast"
    BALANCED = "balanced"
    SMALL = "small"


@dataclass(frozen=True)
class GuidanceSpec:
    """Guidance of one modality (video or audio) in LTX-2.3's multi-way guidance."""

    cfg_scale: float  # classifier-free guidance
    stg_scale: float  # spatiotemporal guidance; 0 = off
    rescaling_scale: float  # ratio between CFG and STG
    modality_scale: float  # cross-modality (video <-> audio) guidance


@dataclass(frozen=True)
class Ltx2TextToVideoSpec:
    """`ltx-2.3-22b/text-to-video/lora`: text to video with audio, LoRA and camera LoRA (LTX-2.3 22B)."""

    endpoint: ClassVar[Endpoint] = Endpoint.LTX2_TEXT_TO_VIDEO

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int  # exactly the number of frames the output video has
    fps: float
    num_inference_steps: int
    seed: int
    video_guidance: GuidanceSpec
    audio_guidance: GuidanceSpec
    gradient_estimation_gamma: float  # 0 = off
    scheduler: Scheduler
    acceleration: Acceleration
    camera_lora: CameraLora
    camera_lora_scale: float
    distill_lora_first_pass_scale: float  # 0 = no distill LoRA in the first pass
    distill_lora_second_pass_scale: float
    output_type: VideoOutputType
    video_quality: VideoQuality
    video_write_mode: VideoWriteMode
    loras: tuple[LoraSpec, ...] = ()
    generate_audio: bool = True
    use_multiscale: bool = True
    use_restart_sampling: bool = True
    expand_prompt: bool = True  # the spec's `enable_prompt_expansion`
    enable_safety_checker: bool = True
    sync_mode: bool = False  # return the video inline as a data URI


# Every endpoint's spec type, keyed by endpoint id.
SPEC_TYPES: dict[Endpoint, type[Spec]] = {
    Endpoint.TEXT_TO_VIDEO: TextToVideoSpec,
    Endpoint.MULTICONDITIONING: MulticonditioningSpec,
    Endpoint.DISTILLED_MULTICONDITIONING: DistilledMulticonditioningSpec,
    Endpoint.EXTEND: ExtendSpec,
    Endpoint.LTX2_TEXT_TO_VIDEO: Ltx2TextToVideoSpec,
}

Spec = (
    TextToVideoSpec
    | MulticonditioningSpec
    | DistilledMulticonditioningSpec
    | ExtendSpec
    | Ltx2TextToVideoSpec
)
AutoSizedSpec = MulticonditioningSpec | DistilledMulticonditioningSpec


def resolve_auto_size(spec: AutoSizedSpec, media_width_over_height: float) -> AutoSizedSpec:
    """`spec` with the size its AUTO aspect ratio gets from the conditioning media's width/height ratio."""
    if spec.width and spec.height:
        return spec  # already exact: the aspect ratio was named, or AUTO had no media to follow
    size = size_for(spec.resolution, media_width_over_height)
    return dataclasses.replace(spec, width=size.width, height=size.height)


def spec_to_json(spec: Spec) -> str:
    """Serialize a spec for the job store (round-trips through `spec_from_json`)."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def spec_from_json(endpoint: Endpoint | str, text: str) -> Spec:
    """Rebuild the spec of `endpoint` from `spec_to_json` output."""
    return typing.cast(Spec, _from_dict(SPEC_TYPES[Endpoint(endpoint)], json.loads(text)))


def _from_dict(cls: type, data: dict[str, object]) -> object:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        kwargs[field.name] = _coerce(hints[field.name], data[field.name])
    return cls(**kwargs)


def _coerce(hint: object, value: object) -> object:
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list | tuple):
        (item_type, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(item_type, v) for v in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _from_dict(hint, value)
    if isinstance(hint, type) and issubclass(hint, StrEnum) and isinstance(value, str):
        return hint(value)
    for arg in typing.get_args(hint):  # Optional[Dataclass], Optional[StrEnum] and similar unions
        if isinstance(arg, type) and dataclasses.is_dataclass(arg) and isinstance(value, dict):
            return _from_dict(arg, value)
        if isinstance(arg, type) and issubclass(arg, StrEnum) and isinstance(value, str):
            return arg(value)
    return value
