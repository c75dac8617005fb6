"""Frame sizes and frame counts: the one place that turns what a client asks for into what a model makes.

The LTX VAEs compress 32x spatially and 8x temporally, so a model can only make frames whose sides are
multiples of 32, and only `8k + 1` frames (one latent frame for the first pixel frame, one per 8 after).

Size, LTX-Video 0.9.7 endpoints (`resolution` + `aspect_ratio`):
    The output has the nominal frame: the resolution's short side (480 or 720) and the long side given
    by the ratio, rounded to an even number (480p 16:9 = 854x480, 720p 16:9 = 1280x720, 1:1 = 480x480 /
    720x720, 9:16 = the 16:9 frame swapped). As upstream `inference.py` does, the model generates the
    frame padded UP to multiples of 32 (`padded_to_latent_grid`: 854x480 -> 864x480, 1280x720 ->
    1280x736), conditioning media padded with black (-1) around the nominal frame, and the decoded video
    is cropped back to the nominal frame (`LatentGridPadding`, centred as upstream's `calculate_padding`).
    `aspect_ratio: "auto"` takes the ratio of the first conditioning input, known only once the media is
    fetched; `size_for(resolution, ratio)` then applies the same rule to that ratio (clamped to 21:9).

Size, LTX-2.3 (`video_size` presets): the short side is 720 rounded down to a multiple of 32 (704) and the
    long side is the multiple of 32 nearest to `704 * ratio`, which keeps the ratio closer than rounding
    each side down: landscape_16_9 -> 1248x704, the spec's own example output. square_hd is 1024x1024 and
    square 512x512, as in the provider's image-size presets. A custom `ImageSize` has each side rounded
    down to a multiple of 32.

Multiscale (two-pass) generation makes a first pass at a fraction of the size (each side rounded down to
    32), upsamples the latents 2x for the second pass and resizes the decoded frames to the requested size:
    the distilled LTX-Video pipeline uses 0.6666666 as upstream writes it (1280x704 -> 832x448 -> 1664x896
    -> 1280x704; 480 -> 288, not 320), LTX-2.3 1/2.

Frames: the output video has EXACTLY the requested number of frames. The model generates the smallest
    legal count `8k + 1` at or above the request and the tail is trimmed (the frame rule, written once in
    service/contract/frames.py): 89 -> 89, 90 -> 97, 121 -> 121, 160 -> 161.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import NamedTuple

SPATIAL_COMPRESSION = 32  # VAE pixels per latent pixel, each side

# Ratios beyond these are clamped for "auto" sizes, so an odd panorama cannot ask for a 5000-pixel side.
MAX_AUTO_ASPECT_RATIO = 21 / 9
MIN_AUTO_ASPECT_RATIO = 9 / 21

# LTX-Video 0.9.7 distilled multiscale pipeline: configs/ltxv-13b-0.9.7-distilled.yaml's literal
# `downscale_factor: 0.6666666`, applied as `int(side * 0.6666666)` then floored to 32
# (LTXMultiScalePipeline): 480 -> 319 -> 288, where an exact 2/3 gives 320; 704 and 1280 agree either way.
DISTILLED_FIRST_PASS_DOWNSCALE = 0.6666666
LTX2_FIRST_PASS_DOWNSCALE = 1 / 2  # LTX-2.3 two-stage pipeline
LATENT_UPSAMPLE_FACTOR = 2  # the latent upsampler doubles each side between passes

LTX2_SHORT_SIDE = 720  # LTX-2.3 presets are 720p-class frames


class Resolution(StrEnum):
    P480 = "480p"
    P720 = "720p"

    @property
    def short_side(self) -> int:
        return {Resolution.P480: 480, Resolution.P720: 720}[self]


class AspectRatio(StrEnum):
    R16_9 = "16:9"
    R1_1 = "1:1"
    R9_16 = "9:16"
    AUTO = "auto"  # from the first conditioning input, once fetched

    @property
    def width_over_height(self) -> float:
        if self is AspectRatio.AUTO:
            raise ValueError("the 'auto' aspect ratio is only known once the conditioning media is fetched")
        width, height = self.value.split(":")
        return int(width) / int(height)


class VideoSizePreset(StrEnum):
    """The LTX-2.3 spec's `video_size` presets."""

    SQUARE_HD = "square_hd"
    SQUARE = "square"
    PORTRAIT_4_3 = "portrait_4_3"
    PORTRAIT_16_9 = "portrait_16_9"
    LANDSCAPE_4_3 = "landscape_4_3"
    LANDSCAPE_16_9 = "landscape_16_9"


class FrameSize(NamedTuple):
    width: int
    height: int


class MultiscaleSizes(NamedTuple):
    """Frame sizes of a two-pass generation: first pass, second pass (2x upsampled), final output."""

    first_pass: FrameSize
    second_pass: FrameSize
    output: FrameSize


def round_down_to_latent_grid(pixels: float) -> int:
    """`pixels` rounded down to a multiple of 32, but at least one latent pixel (32)."""
    return max(SPATIAL_COMPRESSION, int(pixels) // SPATIAL_COMPRESSION * SPATIAL_COMPRESSION)


def round_to_latent_grid(pixels: float) -> int:
    """`pixels` rounded to the nearest multiple of 32 (halves round up), at least 32."""
    return max(SPATIAL_COMPRESSION, math.floor(pixels / SPATIAL_COMPRESSION + 0.5) * SPATIAL_COMPRESSION)


def _even(pixels: float) -> int:
    return 2 * math.floor(pixels / 2 + 0.5)


def size_for(resolution: Resolution, aspect_ratio_w_over_h: float) -> FrameSize:
    """The LTX-Video output frame for `resolution` at any width/height ratio (the module docstring's rule):
    the nominal size, which the model generates padded up to the latent grid."""
    if not aspect_ratio_w_over_h > 0:
        raise ValueError(f"aspect ratio must be positive, got {aspect_ratio_w_over_h}")
    ratio = min(max(aspect_ratio_w_over_h, MIN_AUTO_ASPECT_RATIO), MAX_AUTO_ASPECT_RATIO)
    short = resolution.short_side
    if ratio >= 1:
        return FrameSize(_even(short * ratio), short)
    return FrameSize(short, _even(short / ratio))


def round_up_to_latent_grid(pixels: int) -> int:
    return -(-pixels // SPATIAL_COMPRESSION) * SPATIAL_COMPRESSION


def padded_to_latent_grid(size: FrameSize) -> FrameSize:
    """The frame the model generates for an output of `size`: each side rounded up to 32."""
    return FrameSize(round_up_to_latent_grid(size.width), round_up_to_latent_grid(size.height))


class LatentGridPadding(NamedTuple):
    """Pixels added around the output frame to reach the generated frame (upstream `calculate_padding`:
    half of each side's padding before it, rounded down, the rest after)."""

    left: int
    right: int
    top: int
    bottom: int

    @classmethod
    def of(cls, output: FrameSize) -> LatentGridPadding:
        padded = padded_to_latent_grid(output)
        width, height = padded.width - output.width, padded.height - output.height
        return cls(width // 2, width - width // 2, height // 2, height - height // 2)

    @property
    def is_none(self) -> bool:
        return not any(self)


def frame_size(resolution: Resolution, aspect_ratio: AspectRatio) -> FrameSize:
    """The LTX-Video output frame for a named aspect ratio (not AUTO), e.g. 720p 16:9 -> 1280x720."""
    return size_for(resolution, aspect_ratio.width_over_height)


def ltx2_preset_size(preset: VideoSizePreset) -> FrameSize:
    """The LTX-2.3 frame size of a `video_size` preset, e.g. landscape_16_9 -> 1248x704."""
    if preset is VideoSizePreset.SQUARE_HD:
        return FrameSize(1024, 1024)
    if preset is VideoSizePreset.SQUARE:
        return FrameSize(512, 512)
    short = round_down_to_latent_grid(LTX2_SHORT_SIDE)
    ratio = 16 / 9 if preset.value.endswith("16_9") else 4 / 3
    long = round_to_latent_grid(short * ratio)
    return FrameSize(long, short) if preset.value.startswith("landscape") else FrameSize(short, long)


def custom_size(width: int, height: int) -> FrameSize:
    """A client-given size on the latent grid: each side rounded down to a multiple of 32."""
    return FrameSize(round_down_to_latent_grid(width), round_down_to_latent_grid(height))


def multiscale_sizes(output: FrameSize, first_pass_downscale: float) -> MultiscaleSizes:
    """Sizes of a two-pass generation of `output` whose first pass runs at `first_pass_downscale`."""
    first = FrameSize(
        round_down_to_latent_grid(output.width * first_pass_downscale),
        round_down_to_latent_grid(output.height * first_pass_downscale),
    )
    second = FrameSize(first.width * LATENT_UPSAMPLE_FACTOR, first.height * LATENT_UPSAMPLE_FACTOR)
    return MultiscaleSizes(first_pass=first, second_pass=second, output=output)


def duration_seconds(num_frames: int, fps: float) -> float:
    """Playback duration of `num_frames` frames at `fps` (161 frames at 25 fps -> 6.44 s)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return num_frames / fps


def audio_samples(num_frames: int, fps: float, sample_rate: int) -> int:
    """Audio samples that cover exactly the video's duration (rounded to the nearest sample)."""
    return round(duration_seconds(num_frames, fps) * sample_rate)
