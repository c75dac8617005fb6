"""Decoding fetched images (Pillow) and videos (PyAV) into conditioning tensors.

Output: float [3, F, H, W] in [-1, 1] (F = 1 for an image), exactly `width` x `height`. Each frame is
scaled to cover the target and center-cropped (crop, then one resample, so no edge is lost to rounding):
the aspect ratio is kept and the excess of the longer side is cut evenly from both ends.

Frames are shown the way a viewer shows them: EXIF orientation (images) and the display-matrix rotation
(videos) are applied, and non-square video pixels are stretched to their display aspect. Videos are
decoded only up to `max_frames` output frames, optionally resampled to `target_fps` (nearest frame) and
trimmed to a legal 8k + 1 length. Memory: a 720p frame is 11 MB in float32, so callers bound
`max_frames` by what the pipeline will use.

Undecodable input fails the job like an unfetchable one: JobError(INPUT_FETCH_FAILED, "<field>: ...").
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np
import torch
from PIL import Image, ImageOps

from service.contract.frames import PIXEL_HALF_RANGE, legal_frames_at_most
from service.domain.errors import ErrorType, JobError
from service.media.fetch import FetchedMedia
from service.media.sniff import MediaKind

logger = logging.getLogger(__name__)

# Refuse sources larger than this before decoding pixels (decompression bombs): 8K is 33 MP.
MAX_SOURCE_PIXELS = 64 * 1024 * 1024
DECODE_TIMEOUT_S = 120.0  # one input's decode; a pathological file fails instead of holding the worker
_RESAMPLE = Image.Resampling.BICUBIC  # what Image.resize defaults to, and so what LTX's loader gets
_EXIF_ORIENTATION = 0x0112
_EXIF_QUARTER_TURNS = {5, 6, 7, 8}  # orientations that swap width and height
_ROTATIONS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


class MediaInfo(NamedTuple):
    kind: MediaKind
    width: int  # as displayed: after rotation, with non-square pixels stretched
    height: int
    fps: float | None  # videos only, when the container knows it
    num_frames: int | None  # videos only, when the container states it


def _fail(field: str, reason: str) -> JobError:
    return JobError(ErrorType.INPUT_FETCH_FAILED, f"{field}: {reason}")


def _cover_box(
    size: tuple[int, int], target: tuple[int, int], pixel_aspect: float = 1.0
) -> tuple[float, float, float, float]:
    """The centered source region (in stored pixels) with the target's displayed aspect ratio."""
    src_w, src_h = size
    display_w = src_w * pixel_aspect
    target_aspect = target[0] / target[1]
    if display_w / src_h > target_aspect:  # too wide: cut left and right
        crop_w = src_h * target_aspect / pixel_aspect
        x0 = (src_w - crop_w) / 2
        return (x0, 0.0, x0 + crop_w, float(src_h))
    crop_h = display_w / target_aspect
    y0 = (src_h - crop_h) / 2
    return (0.0, y0, float(src_w), y0 + crop_h)


def _cover(image: Image.Image, width: int, height: int, pixel_aspect: float = 1.0) -> np.ndarray:
    box = _cover_box(image.size, (width, height), pixel_aspect)
    return np.asarray(image.convert("RGB").resize((width, height), _RESAMPLE, box=box), dtype=np.uint8)


def _to_tensor(frames: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    """uint8 [H, W, 3] frames -> [3, F, H, W] in [-1, 1]."""
    return pixels_from_frames(np.stack(frames), dtype)


def pixels_from_frames(frames: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> [3, F, H, W] in [-1, 1]: every decoded input's pixels are exactly these values
    (the pixel convention of service/contract/frames.py)."""
    stacked = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8)).permute(3, 0, 1, 2)
    if dtype == torch.uint8:  # kept as stored: a quarter of float32 (conditioning videos)
        return stacked.contiguous()
    out = torch.empty(
        stacked.shape, dtype=dtype
    )  # one allocation, scaled in place: 720p floats are 11 MB a frame
    out.copy_(stacked)
    return out.div_(PIXEL_HALF_RANGE).sub_(1.0)


def _reason(exc: BaseException) -> str:
    """The decoder's message without object reprs and memory addresses (noise, and a leak)."""
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(exc))
    return re.sub(r"0x[0-9a-fA-F]{6,}", "", text)[:200]


def _check_target(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")


def _open_image(data: bytes, field: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_SOURCE_PIXELS:
            raise _fail(field, f"image of {image.width}x{image.height} is too large to decode")
        image.load()
        return ImageOps.exif_transpose(image) or image
    except JobError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _fail(field, f"cannot decode image: {_reason(exc)}") from exc


def decode_image(
    data: bytes, *, width: int, height: int, field: str, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """An image as [3, 1, height, width] in [-1, 1]."""
    _check_target(width, height)
    return _to_tensor([_cover(_open_image(data, field), width, height)], dtype)


def _upright(frame: av.VideoFrame) -> Image.Image:
    image = frame.to_image()
    rotation = round(frame.rotation) % 360 if frame.rotation else 0
    return image.transpose(_ROTATIONS[rotation]) if rotation in _ROTATIONS else image


def _pixel_aspect(stream: av.video.stream.VideoStream, rotation: int) -> float:
    sar = stream.sample_aspect_ratio
    aspect = float(sar) if sar else 1.0
    return 1.0 / aspect if rotation % 180 == 90 else aspect  # a quarter turn swaps the axes


def _video_stream(container: av.container.InputContainer, field: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise _fail(field, "has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if stream.codec_context.width * stream.codec_context.height > MAX_SOURCE_PIXELS:
        raise _fail(field, "video frames are too large to decode")
    return stream


def _source_indices(source_fps: float | None, target_fps: float | None) -> Iterator[int]:
    """For output frame 0, 1, ...: the nearest source frame at the target rate (all frames if none)."""
    ratio = source_fps / target_fps if source_fps and target_fps else 1.0
    index = 0
    while True:
        yield int(index * ratio + 0.5)
        index += 1


def _stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    rate: Fraction | None = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def decode_video(
    data: bytes,
    *,
    width: int,
    height: int,
    field: str,
    max_frames: int,
    legal_length: bool = False,
    target_fps: float | None = None,
    dtype: torch.dtype = torch.float32,
    decode_timeout_s: float | None = DECODE_TIMEOUT_S,
) -> torch.Tensor:
    """A video as [3, F, height, width] in [-1, 1], F <= max_frames (8k + 1 with `legal_length`)."""
    _check_target(width, height)
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    kept: list[np.ndarray] = []  # uint8 frames, only those used
    deadline = time.monotonic() + decode_timeout_s if decode_timeout_s is not None else None
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = _video_stream(container, field)
            wanted = _source_indices(_stream_fps(stream), target_fps)
            next_wanted = next(wanted)
            for source_index, frame in enumerate(container.decode(stream)):
                if deadline is not None and time.monotonic() > deadline:
                    raise _fail(field, f"decoding took longer than the limit of {decode_timeout_s:g} s")
                if next_wanted == source_index:
                    upright = _upright(frame)
                    aspect = _pixel_aspect(stream, int(frame.rotation or 0))
                    pixels = _cover(upright, width, height, aspect)
                while next_wanted == source_index and len(kept) < max_frames:
                    kept.append(pixels)  # several times when raising the frame rate
                    next_wanted = next(wanted)
                if len(kept) >= max_frames:
                    break
    except JobError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _fail(field, f"cannot decode video: {_reason(exc)}") from exc
    if not kept:
        raise _fail(field, "video has no frames")
    if legal_length:
        kept = kept[: legal_frames_at_most(len(kept))]
    logger.debug("decoded %s: %d frames at %dx%d", field, len(kept), width, height)
    return _to_tensor(kept, dtype)


def _probe_video(data: bytes, field: str) -> MediaInfo:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = _video_stream(container, field)
            first = next(container.decode(stream), None)
            if first is None:
                raise _fail(field, "video has no frames")
            display_w = first.width * _pixel_aspect(stream, 0)
            quarter_turn = round(first.rotation or 0) % 180 == 90
            size = (first.height, display_w) if quarter_turn else (display_w, first.height)
            fps, frames = _stream_fps(stream), stream.frames or None
            return MediaInfo(MediaKind.VIDEO, round(size[0]), round(size[1]), fps, frames)
    except JobError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _fail(field, f"cannot decode video: {_reason(exc)}") from exc


def _probe_image(data: bytes, field: str) -> MediaInfo:
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        if image.width * image.height > MAX_SOURCE_PIXELS:
            raise _fail(field, f"image of {image.width}x{image.height} is too large to decode")
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except JobError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _fail(field, f"cannot decode image: {_reason(exc)}") from exc
    width, height = image.size
    if orientation in _EXIF_QUARTER_TURNS:
        width, height = height, width
    return MediaInfo(MediaKind.IMAGE, width, height, None, None)


def probe(media: FetchedMedia, *, field: str) -> MediaInfo:
    """Displayed size (and rate and length for videos) without decoding more than one frame."""
    if media.kind is MediaKind.IMAGE:
        return _probe_image(media.data, field)
    return _probe_video(media.data, field)


def aspect_ratio_of(media: FetchedMedia, *, field: str) -> float:
    """Displayed width / height, for `aspect_ratio: auto`."""
    info = probe(media, field=field)
    return info.width / info.height
