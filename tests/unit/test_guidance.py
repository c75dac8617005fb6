"""Guidance combination: hand-worked cases and statistics computed directly with torch."""

from __future__ import annotations

import pytest
import torch

from service.pipelines.guidance import (
    GuidancePass,
    GuidancePredictions,
    GuidanceSettings,
    apply_guidance,
    cfg_star_alpha,
    classifier_free_guidance,
    rescale_to_reference_std,
    split_passes,
)


def _random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_cfg_hand_worked() -> None:
    cond = torch.tensor([[3.0, 1.0]])
    uncond = torch.tensor([[1.0, 1.0]])
    # 1 + 4 * (3 - 1) = 9 and 1 + 4 * (1 - 1) = 1
    assert torch.equal(classifier_free_guidance(cond, uncond, 4.0), torch.tensor([[9.0, 1.0]]))


def test_cfg_star_alpha_hand_worked() -> None:
    cond = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    uncond = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    # <(2,0),(1,1)> / |(1,1)|^2 = 2/2 = 1 ; <(1,1),(2,2)> / |(2,2)|^2 = 4/8 = 0.5
    alpha = cfg_star_alpha(cond, uncond)
    assert alpha.shape == (2, 1)
    assert torch.allclose(alpha.flatten(), torch.tensor([1.0, 0.5]))


def test_cfg_star_projects_uncond_onto_cond() -> None:
    cond = torch.tensor([[1.0, 1.0]])
    uncond = torch.tensor([[2.0, 2.0]])
    # alpha = 0.5 makes uncond equal cond, so any guidance scale returns cond itself.
    guided = classifier_free_guidance(cond, uncond, 7.0, cfg_star_rescale=True)
    assert torch.allclose(guided, cond)
    plain = classifier_free_guidance(cond, uncond, 7.0)
    assert not torch.allclose(plain, cond)


def test_rescale_matches_reference_std_per_sample() -> None:
    pred = _random(2, 4, 8, seed=0) * torch.tensor([3.0, 0.5]).view(2, 1, 1)
    ref = _random(2, 4, 8, seed=1)
    full = rescale_to_reference_std(pred, ref, 1.0)
    for b in range(2):
        assert torch.allclose(full[b].std(), ref[b].std(), rtol=1e-5)
    # r = 0.5 scales by the midpoint between 1 and the full factor.
    half = rescale_to_reference_std(pred, ref, 0.5)
    for b in range(2):
        factor = ref[b].std() / pred[b].std()
        assert torch.allclose(half[b], pred[b] * (0.5 * factor + 0.5), rtol=1e-5)
    assert torch.equal(rescale_to_reference_std(pred, ref, 0.0), pred)


def test_apply_guidance_full_formula() -> None:
    cond, uncond, pert = (_random(2, 3, 5, seed=s) for s in (2, 3, 4))
    settings = GuidanceSettings(guidance_scale=6.0, stg_scale=4.0, rescaling_scale=0.5, cfg_star_rescale=True)
    got = apply_guidance(GuidancePredictions(cond, uncond, pert), settings)
    for b in range(2):
        c, u, p = cond[b].flatten(), uncond[b].flatten(), pert[b].flatten()
        u = (c @ u) / (u @ u) * u
        pred = u + 6.0 * (c - u) + 4.0 * (c - p)
        pred = pred * (0.5 * c.std() / pred.std() + 0.5)
        assert torch.allclose(got[b].flatten(), pred, atol=1e-5)


def test_no_guidance_returns_conditional_and_rescale_needs_stg() -> None:
    cond, uncond = _random(1, 6, seed=5), _random(1, 6, seed=6)
    assert torch.equal(apply_guidance(GuidancePredictions(cond), GuidanceSettings()), cond)
    # Rescaling without STG is ignored, as in LTX: plain CFG result.
    settings = GuidanceSettings(guidance_scale=3.0, rescaling_scale=0.5)
    got = apply_guidance(GuidancePredictions(cond, uncond), settings)
    assert torch.allclose(got, uncond + 3.0 * (cond - uncond))


def test_stg_only() -> None:
    cond, pert = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    got = apply_guidance(GuidancePredictions(cond, perturbed=pert), GuidanceSettings(stg_scale=2.0))
    assert torch.equal(got, torch.tensor([[4.0, -2.0]]))  # cond + 2 * (cond - pert)


def test_missing_prediction_is_an_error() -> None:
    cond = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="unconditional"):
        apply_guidance(GuidancePredictions(cond), GuidanceSettings(guidance_scale=3.0))
    with pytest.raises(ValueError, match="perturbed"):
        apply_guidance(GuidancePredictions(cond), GuidanceSettings(stg_scale=1.0))


def test_passes_and_split_follow_ltx_batch_order() -> None:
    full = GuidanceSettings(guidance_scale=3.0, stg_scale=1.0)
    assert full.passes == (
        GuidancePass.UNCONDITIONAL,
        GuidancePass.CONDITIONAL,
        GuidancePass.PERTURBED,
    )
    assert GuidanceSettings().passes == (GuidancePass.CONDITIONAL,)
    assert GuidanceSettings(stg_scale=1.0).passes == (GuidancePass.CONDITIONAL, GuidancePass.PERTURBED)
    batched = torch.arange(6.0).view(6, 1)  # 3 passes x batch 2
    preds = split_passes(batched, full.passes)
    assert preds.unconditional is not None and preds.perturbed is not None
    assert preds.unconditional.flatten().tolist() == [0.0, 1.0]
    assert preds.conditional.flatten().tolist() == [2.0, 3.0]
    assert preds.perturbed.flatten().tolist() == [4.0, 5.0]
    with pytest.raises(ValueError):
        split_passes(torch.zeros(5, 1), full.passes)
