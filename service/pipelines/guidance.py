"""Combining denoiser predictions into one guided velocity, the way LTX-Video's pipeline does it.

Per batch element, with `cond` the prediction for the prompt, `uncond` for the negative prompt and
`perturbed` for the prompt with self-attention skipped in some blocks (service/models/stg_attention.py):

    uncond <- alpha * uncond, alpha = <cond, uncond> / |uncond|^2     CFG-star, when enabled
    pred = uncond + cfg * (cond - uncond)                               CFG, when cfg > 1 (else pred = cond)
    pred = pred + stg * (cond - perturbed)                              STG, when stg > 0
    pred = pred * (r * std(cond) / std(pred) + (1 - r))                 rescaling, when stg > 0 and r != 1

The rescaling pulls the guided prediction's spread back toward the conditional one's, which keeps strong
STG from over-saturating. Everything here is a pure tensor function; which passes a step needs comes from
`GuidanceSettings.passes`, and a batched transformer output is split with `split_passes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import torch

# LTX adds this to |uncond|^2 so an all-zero unconditional prediction cannot divide by zero.
_CFG_STAR_EPS = 1e-8


class GuidancePass(Enum):
    """One transformer evaluation a guided step needs; listed in LTX's batch order."""

    UNCONDITIONAL = "unconditional"  # negative prompt
    CONDITIONAL = "conditional"  # prompt
    PERTURBED = "perturbed"  # prompt, with self-attention skipped in `skip_blocks` (STG)


@dataclass(frozen=True)
class GuidanceSettings:
    """Guidance for one denoising step."""

    guidance_scale: float = 1.0  # CFG weight; 1 means no CFG (no unconditional pass)
    stg_scale: float = 0.0  # STG weight; 0 means no STG (no perturbed pass)
    rescaling_scale: float = 1.0  # 1 means no std rescaling
    skip_blocks: tuple[int, ...] = ()  # transformer blocks perturbed in the STG pass
    cfg_star_rescale: bool = False

    @property
    def uses_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    @property
    def uses_stg(self) -> bool:
        return self.stg_scale > 0.0

    @property
    def passes(self) -> tuple[GuidancePass, ...]:
        """The evaluations this step needs, in the order they are stacked in one batch."""
        needed = [GuidancePass.CONDITIONAL]
        if self.uses_cfg:
            needed.insert(0, GuidancePass.UNCONDITIONAL)
        if self.uses_stg:
            needed.append(GuidancePass.PERTURBED)
        return tuple(needed)


class GuidancePredictions(NamedTuple):
    """Velocity predictions of one step, each [B, ...]; absent passes are None."""

    conditional: torch.Tensor
    unconditional: torch.Tensor | None = None
    perturbed: torch.Tensor | None = None


def split_passes(batched: torch.Tensor, passes: Sequence[GuidancePass]) -> GuidancePredictions:
    """Splits a transformer output of [len(passes) * B, ...], stacked pass by pass, into predictions."""
    if batched.shape[0] % len(passes) != 0:
        raise ValueError(f"batch of {batched.shape[0]} does not split into {len(passes)} passes")
    by_pass = dict(zip(passes, batched.chunk(len(passes)), strict=True))
    return GuidancePredictions(
        conditional=by_pass[GuidancePass.CONDITIONAL],
        unconditional=by_pass.get(GuidancePass.UNCONDITIONAL),
        perturbed=by_pass.get(GuidancePass.PERTURBED),
    )


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    # Statistics are taken per batch element over everything else, in float32: in bfloat16 a sum over
    # millions of latent values loses most of its precision.
    return x.reshape(x.shape[0], -1).float()


def _broadcastable(per_sample: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return per_sample.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def cfg_star_alpha(conditional: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
    """Per-sample projection coefficient <cond, uncond> / |uncond|^2, shaped to broadcast over [B, ...]."""
    cond, uncond = _per_sample(conditional), _per_sample(unconditional)
    alpha = (cond * uncond).sum(dim=1) / (uncond.square().sum(dim=1) + _CFG_STAR_EPS)
    return _broadcastable(alpha, unconditional)


def classifier_free_guidance(
    conditional: torch.Tensor,
    unconditional: torch.Tensor,
    guidance_scale: float,
    *,
    cfg_star_rescale: bool = False,
) -> torch.Tensor:
    """uncond + scale * (cond - uncond), with uncond first projected onto cond when CFG-star is on."""
    if cfg_star_rescale:
        unconditional = cfg_star_alpha(conditional, unconditional) * unconditional
    return unconditional + guidance_scale * (conditional - unconditional)


def spatio_temporal_guidance(
    prediction: torch.Tensor, conditional: torch.Tensor, perturbed: torch.Tensor, stg_scale: float
) -> torch.Tensor:
    """Pushes `prediction` away from what the model predicts with its self-attention perturbed."""
    return prediction + stg_scale * (conditional - perturbed)


def rescale_to_reference_std(
    prediction: torch.Tensor, reference: torch.Tensor, rescaling_scale: float
) -> torch.Tensor:
    """Scales each sample by r * std(reference) / std(prediction) + (1 - r): r=1 matches the std fully."""
    factor = _per_sample(reference).std(dim=1) / _per_sample(prediction).std(dim=1)
    factor = rescaling_scale * factor + (1.0 - rescaling_scale)
    return prediction * _broadcastable(factor, prediction)


def apply_guidance(predictions: GuidancePredictions, settings: GuidanceSettings) -> torch.Tensor:
    """The guided velocity of one step (see the module docstring for the formula)."""
    cond = predictions.conditional
    guided = cond
    if settings.uses_cfg:
        if predictions.unconditional is None:
            raise ValueError("CFG needs the unconditional prediction")
        guided = classifier_free_guidance(
            cond,
            predictions.unconditional,
            settings.guidance_scale,
            cfg_star_rescale=settings.cfg_star_rescale,
        )
    if settings.uses_stg:
        if predictions.perturbed is None:
            raise ValueError("STG needs the perturbed prediction")
        guided = spatio_temporal_guidance(guided, cond, predictions.perturbed, settings.stg_scale)
        # LTX rescales only together with STG: CFG alone is left as is.
        if settings.rescaling_scale != 1.0:
            guided = rescale_to_reference_std(guided, cond, settings.rescaling_scale)
    return guided


def perturbed_rows(passes: Sequence[GuidancePass], batch_size: int) -> torch.Tensor:
    """Bool [len(passes) * batch_size]: which rows of a pass-stacked batch are the perturbed (STG) pass."""
    return torch.tensor(
        [p is GuidancePass.PERTURBED for p in passes for _ in range(batch_size)], dtype=torch.bool
    )
