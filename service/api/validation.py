"""Validation at the edge: every rule of the five specs, checked before anything is queued.

`validate(message)` (service/api/endpoints.py, which picks the check of each endpoint's Input message:
`check_text_to_video`, ...) returns every violation at once, each naming the field path (`images[1].strength`,
`loras[0].scale`, `video.start_frame_num`) and the bound or the allowed values. Unset optional fields are
not checked: they take the spec's default, which is valid. The servicer turns the list into
INVALID_ARGUMENT with `google.rpc.BadRequest` field violations. No grpc here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from ltx.v1 import endpoints_pb2 as pb
from service.api import defaults
from service.domain.geometry import AspectRatio, Resolution, VideoSizePreset
from service.domain.specs import (
    Acceleration,
    CameraLora,
    Scheduler,
    VideoOutputType,
    VideoQuality,
    VideoWriteMode,
)

InputT = TypeVar("InputT")


class Bounds(NamedTuple):
    low: float
    high: float


# Ranges the specs state.
LTXV_DEV_FRAMES = Bounds(9, 161)  # ltx-video-lora/multiconditioning; text-to-video (same model) too
LTXV_STEPS = Bounds(1, 50)  # ditto; extend (LTX-Video 0.9.7, no range of its own) too
FRAME_RATE = Bounds(1, 60)  # every LTX-Video spec; LTX-2.3's fps and condition target_fps too
DISTILLED_FRAMES = Bounds(9, 1441)
DISTILLED_PASS_STEPS = Bounds(2, 12)
DISTILLED_SKIP_STEPS = Bounds(1, 11)
UNIT_INTERVAL = Bounds(0, 1)  # AdaIN factor, tone-map ratio, condition strength, rescaling scales
CRF = Bounds(0, 51)
CONDITION_MAX_NUM_FRAMES = Bounds(1, 1441)

# Service limits where the specs are silent.
MAX_PROMPT_CHARS = 10_000  # far above what the text encoders read; stops megabyte "prompts"
MAX_LORAS = 5  # each LoRA is fused into the transformer at load time and costs memory
MAX_IMAGE_CONDITIONS = 10
MAX_VIDEO_CONDITIONS = 4  # every condition video is fetched, decoded and encoded by the VAE
MAX_URL_CHARS = 4096  # http(s) URLs and LoRA paths; data URIs are bounded by the media byte limit
MEDIA_URL_SCHEMES = ("http", "https", "data")
LORA_URL_SCHEMES = ("http", "https")  # or a path on the server, which has no scheme
SEED = Bounds(0, 2**32 - 1)  # what the output's uint32 seed can report
LORA_SCALE = Bounds(0, 4)  # LoRA, camera LoRA and distill LoRA scales
LTX2_FRAMES = Bounds(9, 481)  # about 20 s at 24 fps
LTX2_STEPS = Bounds(1, 50)
GUIDANCE_SCALE = Bounds(0, 20)  # CFG, STG and modality scales
GRADIENT_ESTIMATION_GAMMA = Bounds(0, 10)
CUSTOM_SIDE = Bounds(64, 2048)  # ImageSize sides, before rounding down to a multiple of 32
URL_SHOWN_CHARS = 60  # a rejected value is quoted this far, so a data URI cannot flood the error
# At most this many violations are listed (then one that counts the rest): the details travel in a
# trailer, and clients drop trailers over 8-16 KiB (the bound keeps BadRequest well under that).
MAX_VIOLATIONS = 20


@dataclass(frozen=True)
class Violation:
    field: str  # path of the field, e.g. "images[1].strength"
    description: str  # the rule broken, naming the bound or the allowed values


def run_checks(
    message: InputT, check: Callable[[InputT, Checks], None], *, max_media_bytes: int | None = None
) -> list[Violation]:
    """Every violation `check` finds in `message` (empty when it is valid), at most MAX_VIOLATIONS of them
    plus one counting the rest; the endpoint registry (service/api/endpoints.py) picks the check for each
    endpoint's Input message. `max_media_bytes` bounds each data URI's decoded size."""
    checks = Checks(max_media_bytes)
    check(message, checks)
    return bounded(checks.violations)


def bounded(violations: list[Violation]) -> list[Violation]:
    """The first MAX_VIOLATIONS violations, then one saying how many more there were."""
    if len(violations) <= MAX_VIOLATIONS:
        return violations
    rest = len(violations) - MAX_VIOLATIONS
    return [*violations[:MAX_VIOLATIONS], Violation("input", f"and {rest} more violations not listed")]


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= URL_SHOWN_CHARS else text[:URL_SHOWN_CHARS] + "...")


class Checks:
    """Collects violations; each method checks one rule of one field."""

    def __init__(self, max_media_bytes: int | None = None) -> None:
        self.violations: list[Violation] = []
        self.max_media_bytes = max_media_bytes

    def fail(self, field: str, description: str) -> None:
        self.violations.append(Violation(field, description))

    def text(self, field: str, value: str, *, required: bool) -> None:
        if required and not value.strip():
            self.fail(field, "is required and must not be empty")
        elif len(value) > MAX_PROMPT_CHARS:
            self.fail(field, f"must be at most {MAX_PROMPT_CHARS} characters, got {len(value)}")

    def within(self, field: str, value: float, bounds: Bounds) -> bool:
        if bounds.low <= value <= bounds.high:  # False for NaN
            return True
        self.fail(field, f"must be between {_fmt(bounds.low)} and {_fmt(bounds.high)}, got {_fmt(value)}")
        return False

    def one_of(self, field: str, value: str, allowed: Iterable[str]) -> None:
        names = [str(a) for a in allowed]
        if value not in names:
            self.fail(field, f"must be one of {', '.join(names)}; got {_quoted(value)}")

    def count(self, field: str, items: Sequence[Any], maximum: int) -> None:
        if len(items) > maximum:
            self.fail(field, f"must have at most {maximum} items, got {len(items)}")

    def media_url(self, field: str, url: str) -> None:
        if not url:
            self.fail(field, "is required and must not be empty")
        elif url[:5].lower() == "data:":
            self.data_uri(field, url)
        elif not _is_web_url(url):
            self.fail(field, f"must be an http, https or data URL, got {_quoted(url)}")

    def data_uri(self, field: str, url: str) -> None:
        head, comma, payload = url.partition(",")
        if not comma or not head.lower().endswith(";base64"):
            self.fail(field, "must be a data URI of the form data:<type>;base64,<data>")
            return
        decoded = len(payload) // 4 * 3  # base64: 3 bytes per 4 characters (whitespace aside)
        if self.max_media_bytes is not None and decoded > self.max_media_bytes:
            self.fail(
                field, f"data URI holds about {decoded} bytes, more than the limit of {self.max_media_bytes}"
            )

    def lora_path(self, field: str, path: str) -> None:
        if not path:
            self.fail(field, "is required and must not be empty")
        elif len(path) > MAX_URL_CHARS:
            self.fail(field, f"must be at most {MAX_URL_CHARS} characters, got {len(path)}")
        elif "\0" in path:
            self.fail(field, "must not contain NUL characters")
        elif "://" in path and not _is_web_url(path):
            self.fail(field, f"must be an http or https URL or a path on the server, got {_quoted(path)}")


def _is_web_url(url: str) -> bool:
    """An http(s) URL with a host that parses (brackets, port in 0-65535) and fits MAX_URL_CHARS."""
    if len(url) > MAX_URL_CHARS:
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when out of range or not a number
        host = parts.hostname
    except ValueError:  # "http://[::1", "http://[abc]/x", "http://h:99999/"
        return False
    return parts.scheme.lower() in LORA_URL_SCHEMES and bool(host)


def _if_set(message: Any, name: str) -> Any:
    """The field's value when the client set it, else None (the spec default applies)."""
    return getattr(message, name) if message.HasField(name) else None


def _optional_within(checks: Checks, message: Any, name: str, bounds: Bounds, prefix: str = "") -> None:
    value = _if_set(message, name)
    if value is not None:
        checks.within(prefix + name, value, bounds)


def _optional_one_of(checks: Checks, message: Any, name: str, allowed: Iterable[str]) -> None:
    value = _if_set(message, name)
    if value is not None:
        checks.one_of(name, value, allowed)


def _check_prompts_and_seed(checks: Checks, message: Any) -> None:
    checks.text("prompt", message.prompt, required=True)
    negative = _if_set(message, "negative_prompt")
    if negative is not None:
        checks.text("negative_prompt", negative, required=False)
    _optional_within(checks, message, "seed", SEED)


def _check_loras(checks: Checks, loras: Sequence[Any], *, empty_path_means_none: bool = False) -> None:
    checks.count("loras", loras, MAX_LORAS)
    for index, lora in enumerate(loras):
        prefix = f"loras[{index}]."
        if lora.path or not empty_path_means_none:
            checks.lora_path(prefix + "path", lora.path)
        name = lora.weight_name
        if name and (name in (".", "..") or any(c in name for c in "/\\\0") or len(name) > 255):
            checks.fail(
                prefix + "weight_name", "must be a file name of at most 255 characters (no '/', '\\', '..')"
            )
        _optional_within(checks, lora, "scale", LORA_SCALE, prefix)


def _check_size_choice(checks: Checks, message: Any, aspect_ratios: Iterable[AspectRatio]) -> None:
    _optional_one_of(checks, message, "resolution", Resolution)
    _optional_one_of(checks, message, "aspect_ratio", aspect_ratios)


def _check_start_frame(checks: Checks, field: str, start: int, num_frames: int) -> None:
    checks.within(field, start, Bounds(0, max(num_frames - 1, 0)))


def _check_images(checks: Checks, images: Sequence[Any], start_field: str, num_frames: int) -> None:
    checks.count("images", images, MAX_IMAGE_CONDITIONS)
    for index, image in enumerate(images):
        prefix = f"images[{index}]."
        checks.media_url(prefix + "image_url", image.image_url)
        _check_start_frame(checks, prefix + start_field, getattr(image, start_field), num_frames)
        _optional_within(checks, image, "strength", UNIT_INTERVAL, prefix)


def _check_video_condition(
    checks: Checks, prefix: str, video: Any, start_field: str, num_frames: int
) -> None:
    checks.media_url(prefix + "video_url", video.video_url)
    _check_start_frame(checks, prefix + start_field, getattr(video, start_field), num_frames)
    _optional_within(checks, video, "strength", UNIT_INTERVAL, prefix)
    if start_field == "start_frame_num":  # the VideoConditioningInput type has these too
        _optional_within(checks, video, "max_num_frames", CONDITION_MAX_NUM_FRAMES, prefix)
        _optional_within(checks, video, "target_fps", FRAME_RATE, prefix)


def _check_videos(checks: Checks, videos: Sequence[Any], start_field: str, num_frames: int) -> None:
    checks.count("videos", videos, MAX_VIDEO_CONDITIONS)
    for index, video in enumerate(videos):
        _check_video_condition(checks, f"videos[{index}].", video, start_field, num_frames)


def _check_ltxv_dev(message: Any, checks: Checks, aspect_ratios: Iterable[AspectRatio]) -> None:
    """The fields text-to-video and multiconditioning share (LTX-Video 0.9.7 13B dev)."""
    _check_prompts_and_seed(checks, message)
    _check_loras(checks, message.loras)
    _check_size_choice(checks, message, aspect_ratios)
    _optional_within(checks, message, "number_of_frames", LTXV_DEV_FRAMES)
    _optional_within(checks, message, "number_of_steps", LTXV_STEPS)
    _optional_within(checks, message, "frame_rate", FRAME_RATE)


def check_text_to_video(message: pb.TextToVideoInput, checks: Checks) -> None:
    # The text-to-video spec states no ranges; its sibling multiconditioning spec (same model) does.
    named = [AspectRatio.R16_9, AspectRatio.R1_1, AspectRatio.R9_16]
    _check_ltxv_dev(message, checks, named)


def check_multiconditioning(message: pb.MulticonditioningInput, checks: Checks) -> None:
    _check_ltxv_dev(
        message, checks, [AspectRatio.R16_9, AspectRatio.R1_1, AspectRatio.R9_16, AspectRatio.AUTO]
    )
    num_frames = _if_set(message, "number_of_frames") or defaults.Multiconditioning.NUMBER_OF_FRAMES
    _check_images(checks, message.images, "start_frame_number", num_frames)
    _check_videos(checks, message.videos, "start_frame_number", num_frames)


def check_distilled(message: pb.DistilledMulticonditioningInput, checks: Checks) -> None:
    _check_prompts_and_seed(checks, message)
    _check_loras(checks, message.loras)
    _check_size_choice(
        checks, message, [AspectRatio.R9_16, AspectRatio.R1_1, AspectRatio.R16_9, AspectRatio.AUTO]
    )
    _optional_within(checks, message, "num_frames", DISTILLED_FRAMES)
    _check_distilled_passes(message, checks)
    _optional_within(checks, message, "frame_rate", FRAME_RATE)
    _optional_within(checks, message, "temporal_adain_factor", UNIT_INTERVAL)
    checks.within("tone_map_compression_ratio", message.tone_map_compression_ratio, UNIT_INTERVAL)
    _optional_within(checks, message, "constant_rate_factor", CRF)
    num_frames = _if_set(message, "num_frames") or defaults.DistilledMulticonditioning.NUM_FRAMES
    _check_images(checks, message.images, "start_frame_num", num_frames)
    _check_videos(checks, message.videos, "start_frame_num", num_frames)


def _check_distilled_passes(message: pb.DistilledMulticonditioningInput, checks: Checks) -> None:
    first = _if_set(message, "first_pass_num_inference_steps")
    if first is not None:
        checks.within("first_pass_num_inference_steps", first, DISTILLED_PASS_STEPS)
    step_defaults = defaults.DistilledMulticonditioning
    steps = _if_set(message, "second_pass_num_inference_steps")
    steps_ok = steps is None or checks.within("second_pass_num_inference_steps", steps, DISTILLED_PASS_STEPS)
    skip = _if_set(message, "second_pass_skip_initial_steps")
    skip_ok = skip is None or checks.within("second_pass_skip_initial_steps", skip, DISTILLED_SKIP_STEPS)
    steps = step_defaults.SECOND_PASS_NUM_INFERENCE_STEPS if steps is None else steps
    skip = step_defaults.SECOND_PASS_SKIP_INITIAL_STEPS if skip is None else skip
    if steps_ok and skip_ok and skip >= steps:  # skipping every step would leave nothing to run
        checks.fail(
            "second_pass_skip_initial_steps",
            f"must be less than second_pass_num_inference_steps ({steps}), got {skip}",
        )


def check_extend(message: pb.ExtendInput, checks: Checks) -> None:
    # The extend spec states no ranges; those of LTX-Video 0.9.7's multiconditioning spec apply.
    _check_prompts_and_seed(checks, message)
    _check_size_choice(checks, message, [AspectRatio.R9_16, AspectRatio.R16_9])
    _optional_within(checks, message, "num_inference_steps", LTXV_STEPS)
    if not message.HasField("video"):
        checks.fail("video", "is required")
        return
    _check_video_condition(checks, "video.", message.video, "start_frame_num", defaults.Extend.NUM_FRAMES)


def check_ltx2(message: pb.Ltx2TextToVideoInput, checks: Checks) -> None:
    # The LTX-2.3 spec states no ranges: every bound here is a service limit (see the constants above).
    _check_prompts_and_seed(checks, message)
    # The spec's own example sends {"path": "", "scale": 1} for "no LoRA" in its required list.
    _check_loras(checks, message.loras, empty_path_means_none=True)
    _optional_within(checks, message, "num_frames", LTX2_FRAMES)
    _check_ltx2_size(message, checks)
    _optional_within(checks, message, "fps", FRAME_RATE)
    _optional_within(checks, message, "num_inference_steps", LTX2_STEPS)
    for name in ("video_cfg_scale", "video_stg_scale", "video_modality_scale"):
        _optional_within(checks, message, name, GUIDANCE_SCALE)
    for name in ("audio_cfg_scale", "audio_modality_scale"):
        _optional_within(checks, message, name, GUIDANCE_SCALE)
    checks.within("audio_stg_scale", message.audio_stg_scale, GUIDANCE_SCALE)
    for name in ("video_rescaling_scale", "audio_rescaling_scale"):
        _optional_within(checks, message, name, UNIT_INTERVAL)
    checks.within("gradient_estimation_gamma", message.gradient_estimation_gamma, GRADIENT_ESTIMATION_GAMMA)
    for name in ("camera_lora_scale", "distill_lora_first_pass_scale", "distill_lora_second_pass_scale"):
        _optional_within(checks, message, name, LORA_SCALE)
    _optional_one_of(checks, message, "scheduler", Scheduler)
    _optional_one_of(checks, message, "acceleration", Acceleration)
    _optional_one_of(checks, message, "camera_lora", CameraLora)
    _optional_one_of(checks, message, "video_output_type", VideoOutputType)
    _optional_one_of(checks, message, "video_quality", VideoQuality)
    _optional_one_of(checks, message, "video_write_mode", VideoWriteMode)


def _check_ltx2_size(message: pb.Ltx2TextToVideoInput, checks: Checks) -> None:
    choice = message.WhichOneof("video_size_choice")
    if choice == "video_size":
        checks.one_of("video_size", message.video_size, VideoSizePreset)
    elif choice == "image_size":
        _optional_within(checks, message.image_size, "width", CUSTOM_SIDE, "image_size.")
        _optional_within(checks, message.image_size, "height", CUSTOM_SIDE, "image_size.")
