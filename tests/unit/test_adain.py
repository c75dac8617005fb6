"""AdaIN against statistics computed directly, channel by channel."""

from __future__ import annotations

import pytest
import torch

from service.pipelines.adain import AdainScope, adain_filter_latent


def _latents(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale + shift


def test_factor_zero_is_identity() -> None:
    x = _latents(1, 4, 3, 5, 6, seed=0)
    ref = _latents(1, 4, 2, 4, 4, seed=1, scale=3.0, shift=2.0)
    assert torch.equal(adain_filter_latent(x, ref, 0.0), x)


def test_factor_one_gives_reference_statistics_per_channel() -> None:
    x = _latents(2, 3, 3, 4, 5, seed=2, scale=0.5, shift=-1.0)
    # Reference with other frames and size, and a distinct mean/std per channel.
    ref = _latents(2, 3, 2, 6, 6, seed=3) * torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1, 1)
    ref = ref + torch.tensor([0.0, 1.0, -3.0]).view(1, 3, 1, 1, 1)
    out = adain_filter_latent(x, ref, 1.0)
    assert out.shape == x.shape
    for b in range(2):
        for c in range(3):
            assert torch.allclose(out[b, c].mean(), ref[b, c].mean(), atol=1e-5)
            assert torch.allclose(out[b, c].std(), ref[b, c].std(), rtol=1e-5)


def test_half_factor_is_midpoint_of_original_and_normalized() -> None:
    x = _latents(1, 2, 2, 3, 3, seed=4)
    ref = _latents(1, 2, 2, 3, 3, seed=5, scale=2.0, shift=1.0)
    out = adain_filter_latent(x, ref, 0.5)
    for c in range(2):
        xc, rc = x[0, c], ref[0, c]
        normalized = (xc - xc.mean()) / xc.std() * rc.std() + rc.mean()
        assert torch.allclose(out[0, c], 0.5 * xc + 0.5 * normalized, atol=1e-5)


def test_per_frame_scope_matches_each_frame() -> None:
    x = _latents(1, 2, 3, 4, 4, seed=6)
    ref = _latents(1, 2, 3, 4, 4, seed=7) * torch.tensor([1.0, 3.0, 0.5]).view(1, 1, 3, 1, 1)
    out = adain_filter_latent(x, ref, 1.0, AdainScope.PER_FRAME)
    for c in range(2):
        for f in range(3):
            assert torch.allclose(out[0, c, f].mean(), ref[0, c, f].mean(), atol=1e-5)
            assert torch.allclose(out[0, c, f].std(), ref[0, c, f].std(), rtol=1e-5)


def test_bfloat16_keeps_dtype() -> None:
    x = _latents(1, 2, 2, 3, 3, seed=8).bfloat16()
    ref = _latents(1, 2, 2, 3, 3, seed=9, shift=5.0).bfloat16()
    out = adain_filter_latent(x, ref, 1.0)
    assert out.dtype == torch.bfloat16
    assert abs(out[0, 0].float().mean().item() - ref[0, 0].float().mean().item()) < 0.05


def test_shape_errors() -> None:
    x = _latents(1, 2, 2, 3, 3, seed=10)
    with pytest.raises(ValueError, match="channel"):
        adain_filter_latent(x, _latents(1, 3, 2, 3, 3, seed=11))
    with pytest.raises(ValueError):
        adain_filter_latent(x[0], x[0])
    with pytest.raises(ValueError, match="per-frame"):
        adain_filter_latent(x, _latents(1, 2, 4, 3, 3, seed=12), scope=AdainScope.PER_FRAME)
