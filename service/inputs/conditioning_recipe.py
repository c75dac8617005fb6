"""Upstream's preprocessing of conditioning frames: a 3x3 Gaussian blur (sigma 1), then H.264 at a CRF.

Lightricks' `ltx_video/inference.py` (`load_image_to_tensor_with_resize_and_crop`) passes every
conditioning frame, image or video, on every pipeline, through `TVF.gaussian_blur(kernel_size=3,
sigma=1.0)` and `crf_compressor.compress` (CRF 29) before the VAE encodes it. The model was trained on
such frames: a clean input (a PNG, a render) conditions a frozen, over-sharp start otherwise.

Here, on all LTX-Video endpoints that take media (service/inputs/media.py for multiconditioning and the
distilled endpoint, the context frames of extend), with:
  * the blur as torchvision computes it (kernel exp(-x^2 / 2) at x = -1, 0, 1, normalized; reflect
    padding at the borders), per frame and channel, in float;
  * the blurred frames rounded to uint8 (upstream truncates `x * 255` to a byte; rounding is half a level
    brighter on average and keeps the pixels on the uint8 grid that the Triton path sends losslessly);
  * the CRF re-compression of service/media/recompress.py (each frame intra-coded, as upstream codes each
    frame as its own one-frame video): CRF 29 on the dev endpoints, which have no field for it, the
    spec's `constant_rate_factor` on the distilled one (0 leaves the blurred frames as they are, as
    upstream's `compress(crf=0)` does).
One difference is kept on purpose: the frames are blurred at the output size (after the cover-crop
resize of service/media/decode.py), where upstream blurs the native-resolution crop; see
`service/pipelines/conditioning.py:resize_media` for why.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from service.contract.frames import uint8_from_unit, unit_from_uint8
from service.media.recompress import recompress

UPSTREAM_CONDITIONING_CRF = 29  # crf_compressor.compress's default, used by inference.py on every pipeline
BLUR_KERNEL_SIZE = 3
BLUR_SIGMA = 1.0
_FRAMES_PER_BLUR = 16  # frames blurred at once: bounds the float copy of a uint8 video


def gaussian_kernel_1d(size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """torchvision's `_get_gaussian_kernel1d`: exp(-x^2 / (2 sigma^2)) at the integer offsets, summing to 1."""
    half = (size - 1) / 2
    weights = torch.tensor([math.exp(-((i - half) ** 2) / (2 * sigma**2)) for i in range(size)])
    return weights / weights.sum()


def blur_frames(frames: torch.Tensor) -> torch.Tensor:
    """Frames [..., H, W] (float) blurred with the 3x3 Gaussian, reflect-padded: the kernel is separable,
    so one 3-tap pass along each side (several times faster on a CPU than a depthwise 2-D convolution)."""
    weights = gaussian_kernel_1d().tolist()
    pad = BLUR_KERNEL_SIZE // 2
    leading = frames.shape[:-2]
    flat = frames.reshape(-1, 1, *frames.shape[-2:])
    padded = F.pad(flat, (pad, pad, pad, pad), mode="reflect")[:, 0]
    height, width = frames.shape[-2:]
    rows = padded[:, :, :width] * weights[0]
    for i, weight in enumerate(weights[1:], start=1):
        rows.add_(padded[:, :, i : i + width], alpha=weight)
    blurred = rows[:, :height] * weights[0]
    for i, weight in enumerate(weights[1:], start=1):
        blurred.add_(rows[:, i : i + height], alpha=weight)
    return blurred.reshape(*leading, height, width)


def blur_video(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels [3, F, H, W] (float in [-1, 1], or uint8) blurred frame by frame, as uint8-grid values in the
    dtype they came in (float: exactly `uint8 / 127.5 - 1`)."""
    if min(pixels.shape[-2:]) < 2:  # reflect padding needs two pixels; a 1-pixel side has nothing to blur
        return pixels
    out = torch.empty(pixels.shape, dtype=torch.uint8, device=pixels.device)
    for start in range(0, pixels.shape[1], _FRAMES_PER_BLUR):
        chunk = pixels[:, start : start + _FRAMES_PER_BLUR]
        unit = chunk.float() if chunk.dtype.is_floating_point else unit_from_uint8(chunk.float())
        blurred = blur_frames(unit)
        out[:, start : start + _FRAMES_PER_BLUR] = uint8_from_unit(blurred)
    if pixels.dtype.is_floating_point:
        return unit_from_uint8(out.float()).to(pixels.dtype)
    return out


def preprocess_conditioning(pixels: torch.Tensor, crf: int) -> torch.Tensor:
    """Conditioning pixels [3, F, H, W] as upstream feeds them to the VAE: blurred, then through H.264 at
    `crf` (0: not re-compressed). Same shape, dtype and device; values on the uint8 grid."""
    return recompress(blur_video(pixels), crf)
