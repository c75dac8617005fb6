"""CRF re-compression: identity at 0, quality falling with CRF (PSNR), shapes kept."""

from __future__ import annotations

import math

import pytest
import torch

from service.media.recompress import recompress


def _textured(frames: int, height: int, width: int) -> torch.Tensor:
    """Smooth colour gradients plus fine grey noise, [3, F, H, W] in [-1, 1].

    The noise is the same in all channels: it is detail H.264 must spend bits on, but it lives in luma,
    which 4:2:0 keeps at full resolution, so a low CRF can come close to lossless.
    """
    g = torch.Generator().manual_seed(0)
    y = torch.linspace(-1, 1, height).view(1, 1, height, 1)
    x = torch.linspace(-1, 1, width).view(1, 1, 1, width)
    t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1) / max(frames, 1)
    phase = torch.tensor([0.0, 2.0, 4.0]).view(3, 1, 1, 1)
    # Colour varies slowly: 4:2:0 halves chroma resolution, which steep colour ramps would expose.
    base = 0.6 * torch.sin(0.5 * x + 0.3 * y + phase + t)
    return (base + 0.3 * torch.rand(1, frames, height, width, generator=g) - 0.15).clamp(-1, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).square().mean().item()
    return 10 * math.log10(4.0 / mse)  # peak-to-peak range of [-1, 1] is 2


def test_crf_zero_is_identity() -> None:
    frames = _textured(2, 16, 16)
    assert recompress(frames, 0) is frames


def test_quality_falls_as_crf_rises() -> None:
    frames = _textured(3, 32, 48)
    psnr = {crf: _psnr(recompress(frames, crf), frames) for crf in (1, 29, 51)}
    # 8-bit quantisation alone bounds PSNR near 59 dB; CRF 1 stays close to lossless.
    assert psnr[1] > 38.0
    assert psnr[1] > psnr[29] > psnr[51]
    assert psnr[1] - psnr[51] > 10.0


def test_shape_dtype_and_range_preserved_with_odd_sizes() -> None:
    frames = _textured(3, 17, 33).to(torch.float64)
    out = recompress(frames, 29)
    assert out.shape == frames.shape and out.dtype == torch.float64
    assert out.min().item() >= -1.0 and out.max().item() <= 1.0
    # Still the same picture: compression changes detail, not content.
    assert _psnr(out, frames) > 20.0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="constant_rate_factor"):
        recompress(_textured(1, 8, 8), 52)
    with pytest.raises(ValueError, match=r"\[3, F, H, W\]"):
        recompress(torch.zeros(1, 3, 8, 8), 29)
