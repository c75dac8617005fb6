"""Conditioning media of a spec: fetched, size resolved, decoded, safety-checked, re-compressed, as tensors.

For each image (`images[i].image_url`) and video (`videos[i].video_url`) of a multiconditioning spec, in
that order (images first, then videos, each in request order):
  1. fetch it (service/media/fetch.py, the config's `[media]` limits; failures name the field);
  2. with `aspect_ratio: auto`, the first image's displayed ratio (else the first video's) sets the size
     (`resolve_auto_size`, rule in service/domain/geometry.py);
  3. decode it at that size, cover-cropped (service/media/decode.py). A video is resampled to its
     `target_fps` when set, limited to `max_num_frames` when set, and never decoded past the frames the
     clip can use (the generated length less its start frame), then trimmed to 8k + 1 frames;
  4. with a safety checker (the request's `enable_safety_checker`), score it: an image as one image, a
     video as evenly sampled frames; a flag fails the job with content_policy_violation naming the field;
  5. preprocess it as upstream does (service/inputs/conditioning_recipe.py): a 3x3 Gaussian blur, then
     H.264 at the spec's `constant_rate_factor` (the distilled endpoint; 0: blurred only) or at CRF 29
     (the multiconditioning endpoint, which has no such field: upstream's default on every pipeline).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch

from service.contract.frames import frames_to_generate, uint8_frames
from service.domain.errors import ErrorType, JobError
from service.domain.geometry import AspectRatio
from service.domain.progress import Progress, ProgressCallback, Stage
from service.domain.specs import (
    AutoSizedSpec,
    DistilledMulticonditioningSpec,
    ExtendSpec,
    ImageConditionSpec,
    VideoConditionSpec,
    resolve_auto_size,
)
from service.inputs.conditioning_recipe import UPSTREAM_CONDITIONING_CRF, preprocess_conditioning
from service.media.decode import aspect_ratio_of, decode_image, decode_video
from service.media.fetch import FetchedMedia, FetchLimits, fetch_media
from service.media.sniff import MediaKind
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.extend import plan_extension
from service.safety.checker import SafetyChecker

logger = logging.getLogger(__name__)


class PreparedInputs(NamedTuple):
    spec: AutoSizedSpec  # the spec with its AUTO size resolved
    media: tuple[ConditioningMedia, ...]  # images, then videos, in request order


class _Fetched(NamedTuple):
    field: str
    media: FetchedMedia
    condition: ImageConditionSpec | VideoConditionSpec


def image_field(index: int) -> str:
    return f"images[{index}].image_url"


def video_field(index: int) -> str:
    return f"videos[{index}].video_url"


def prepare_conditioning_inputs(
    spec: AutoSizedSpec,
    limits: FetchLimits,
    safety: SafetyChecker | None,
    on_progress: ProgressCallback,
) -> PreparedInputs:
    """Every condition of `spec` as `ConditioningMedia` at the (resolved) output size."""
    fetched = [_fetch(image_field(i), c, MediaKind.IMAGE, limits) for i, c in enumerate(spec.images)]
    fetched += [_fetch(video_field(i), c, MediaKind.VIDEO, limits) for i, c in enumerate(spec.videos)]
    if fetched:
        message = f"fetched {len(fetched)} conditioning input(s)"
        on_progress(Progress(Stage.PREPARING_CONDITIONS, message=message))
    spec = _resolve_size(spec, fetched)
    clip_frames = frames_to_generate(spec.num_frames)
    crf = conditioning_crf(spec)
    _check_decoded_budget(fetched, spec.width, spec.height, clip_frames, limits.max_decoded_bytes)
    media = tuple(_prepare_one(item, spec.width, spec.height, clip_frames, safety, crf) for item in fetched)
    return PreparedInputs(spec=spec, media=media)


def conditioning_crf(spec: AutoSizedSpec) -> int:
    """The CRF conditioning frames are re-compressed at: the distilled spec's own field, else upstream's 29."""
    if isinstance(spec, DistilledMulticonditioningSpec):
        return spec.constant_rate_factor
    return UPSTREAM_CONDITIONING_CRF


def _check_decoded_budget(
    fetched: Sequence[_Fetched], width: int, height: int, clip_frames: int, budget: int
) -> None:
    """Fail fast, before decoding, when the inputs' frames (uint8, at the output size, at most the
    frames each can use) would exceed `budget` bytes."""
    total = 0
    for item in fetched:
        frames = 1
        if isinstance(item.condition, VideoConditionSpec):
            frames = max(1, clip_frames - item.condition.start_frame)
            if item.condition.max_num_frames is not None:
                frames = min(frames, item.condition.max_num_frames)
        total += frames * width * height * 3
        if total > budget:
            raise JobError(
                ErrorType.INPUT_FETCH_FAILED,
                f"{item.field}: the conditioning inputs need up to {total} bytes of decoded frames at "
                f"{width}x{height}, more than this service allows per request ({budget}, media.max_decoded_bytes)",
            )


def _fetch(
    field: str, condition: ImageConditionSpec | VideoConditionSpec, kind: MediaKind, limits: FetchLimits
) -> _Fetched:
    return _Fetched(field, fetch_media(condition.url, field=field, limits=limits, expect=kind), condition)


def _resolve_size(spec: AutoSizedSpec, fetched: Sequence[_Fetched]) -> AutoSizedSpec:
    if spec.aspect_ratio is not AspectRatio.AUTO or (spec.width and spec.height) or not fetched:
        return spec
    first = fetched[0]  # images come first: the first image, else the first video
    resolved = resolve_auto_size(spec, aspect_ratio_of(first.media, field=first.field))
    logger.info("aspect_ratio auto: %s sets the size to %dx%d", first.field, resolved.width, resolved.height)
    return resolved


def _prepare_one(
    item: _Fetched, width: int, height: int, clip_frames: int, safety: SafetyChecker | None, crf: int
) -> ConditioningMedia:
    condition = item.condition
    if isinstance(condition, VideoConditionSpec):
        usable = clip_frames - condition.start_frame
        pixels = decode_condition_video(item.media, condition, item.field, width, height, usable)
    else:
        pixels = decode_image(item.media.data, width=width, height=height, field=item.field)
    if safety is not None:
        check_pixels(safety, pixels, item.field)
    pixels = preprocess_conditioning(pixels, crf)
    return ConditioningMedia(
        pixels=pixels[None], start_frame=condition.start_frame, strength=condition.strength
    )


def decode_condition_video(
    media: FetchedMedia,
    condition: VideoConditionSpec,
    field: str,
    width: int,
    height: int,
    usable_frames: int,
    default_fps: float | None = None,
) -> torch.Tensor:
    """A conditioning video as [3, F, height, width], F = 8k + 1 <= min(usable_frames, max_num_frames).

    Resampled to `condition.target_fps`, else to `default_fps` when given, else kept at its own rate.
    """
    max_frames = max(1, usable_frames)
    if condition.max_num_frames is not None:
        max_frames = min(max_frames, condition.max_num_frames)
    fps = condition.target_fps if condition.target_fps is not None else default_fps
    return decode_video(
        media.data,
        width=width,
        height=height,
        field=field,
        max_frames=max_frames,
        legal_length=True,
        target_fps=fps,
        dtype=torch.uint8,  # a quarter of float32; the VAE encode converts one video at a time
    )


def check_pixels(safety: SafetyChecker, pixels: torch.Tensor, field: str) -> None:
    """Safety-check decoded media [3, F, H, W]: one frame as an image, more as sampled video frames."""
    frames = uint8_frames(pixels)
    if frames.shape[0] == 1:
        safety.check_image(frames[0], field=field)
    else:
        safety.check_frames(frames, field=field)


def extend_field() -> str:
    return "video.video_url"


def prepare_extend_input(
    spec: ExtendSpec,
    limits: FetchLimits,
    safety: SafetyChecker | None,
    on_progress: ProgressCallback,
) -> torch.Tensor:
    """The input frames an extension keeps, [3, K, height, width] with K <= video.start_frame_num.

    Resampled to `video.target_fps` when set, else to the output frame rate (so the kept part plays at its
    own speed); limited to `video.max_num_frames` when set. K = 0 (an empty tensor) when start_frame_num is 0.
    """
    field = extend_field()
    media = fetch_media(spec.video.url, field=field, limits=limits, expect=MediaKind.VIDEO)
    wanted = spec.video.start_frame
    if spec.video.max_num_frames is not None:
        wanted = min(wanted, spec.video.max_num_frames)
    if wanted < 1:
        return torch.empty(3, 0, spec.height, spec.width)
    fps = spec.video.target_fps if spec.video.target_fps is not None else float(spec.frame_rate)
    pixels = decode_video(
        media.data, width=spec.width, height=spec.height, field=field, max_frames=wanted, target_fps=fps
    )
    on_progress(Progress(Stage.PREPARING_CONDITIONS, message=f"{field}: keeping {pixels.shape[1]} frame(s)"))
    if safety is not None:
        check_pixels(safety, pixels, field)
    return pixels


def extend_context(spec: ExtendSpec, kept_pixels: torch.Tensor) -> tuple[ConditioningMedia, ...]:
    """The kept frames that condition an extension (its plan's last C kept frames, at frame 0 with
    `video.strength`), preprocessed as upstream preprocesses every conditioning frame (blur, CRF 29); the
    kept frames themselves stay as decoded, since they are copied to the output. None when K = 0."""
    plan = plan_extension(spec.num_frames, int(kept_pixels.shape[1]))
    if not plan.context:
        return ()
    context = kept_pixels[:, plan.kept - plan.context : plan.kept]
    pixels = preprocess_conditioning(context, UPSTREAM_CONDITIONING_CRF)
    return (ConditioningMedia(pixels=pixels[None], start_frame=0, strength=spec.video.strength),)
