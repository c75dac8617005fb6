"""Tone map: identity at 0, monotone, never increases a magnitude, hand-worked points."""

from __future__ import annotations

import math

import pytest
import torch

from service.pipelines.tone_map import tone_map_latents

GRID = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64)
RATIOS = [0.05, 0.25, 0.5, 0.75, 1.0]


def test_ratio_zero_is_identity() -> None:
    x = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(tone_map_latents(x, 0.0), x)


@pytest.mark.parametrize("ratio", RATIOS)
def test_map_is_increasing_odd_and_never_grows_magnitude(ratio: float) -> None:
    y = tone_map_latents(GRID, ratio)
    assert bool((y[1:] > y[:-1]).all())  # strictly increasing over the grid
    assert torch.allclose(tone_map_latents(-GRID, ratio), -y)
    assert bool((y.abs() <= GRID.abs()).all())
    assert bool((y.abs() >= 0.4 * GRID.abs()).all())  # the factor never drops below 1 - 0.8 * 0.75


def test_hand_worked_points() -> None:
    x = torch.tensor([1.0, 100.0], dtype=torch.float64)
    y = tone_map_latents(x, 1.0)
    # At |x| = 1 the sigmoid is 1/2: factor 1 - 0.8 * 0.75 / 2 = 0.7.
    assert y[0].item() == pytest.approx(0.7)
    # Far above 1 the sigmoid is ~1: factor 1 - 0.8 * 0.75 = 0.4.
    assert y[1].item() == pytest.approx(40.0, rel=1e-9)
    # Ratio 0.5 at x = 2: s = 0.375, factor 1 - 0.3 * sigmoid(1.5).
    sig = 1 / (1 + math.exp(-1.5))
    assert tone_map_latents(torch.tensor([2.0], dtype=torch.float64), 0.5).item() == pytest.approx(
        2.0 * (1 - 0.3 * sig)
    )


def test_larger_ratio_compresses_large_values_more() -> None:
    # For |x| >= 1, the values the map is for, each larger ratio shrinks the magnitude further.
    # (Near 0 the effect stays under 6% at any ratio and is not monotone in the ratio.)
    large = GRID[GRID.abs() >= 1.0]
    previous = large.abs()
    for ratio in RATIOS:
        current = tone_map_latents(large, ratio).abs()
        assert bool((current < previous).all())
        previous = current


def test_ratio_out_of_range() -> None:
    with pytest.raises(ValueError, match="tone_map_compression_ratio"):
        tone_map_latents(GRID, 1.5)
