"""LTX-2.3 multi-way guidance in x0 space (ltx-core `MultiModalGuider`; diffusers `LTX2Pipeline` has the same
deltas but turns CFG and modality guidance on only above 1 and maps audio scales of 0 to the video's).

Per modality, with c/u/p/m the x0 predictions of the cond, uncond (negative prompt), STG-perturbed and
modality-isolated passes:
    pred = c + (cfg - 1)(c - u) + stg (c - p) + (mod - 1)(c - m)
    pred = pred * (r std(c) / std(pred) + 1 - r)          when the rescale r != 0
Each term is on when its scale differs from its neutral value (1 for cfg and mod, 0 for stg).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.domain.specs import GuidanceSpec

NEUTRAL = GuidanceSpec(cfg_scale=1.0, stg_scale=0.0, rescaling_scale=0.0, modality_scale=1.0)


@dataclass(frozen=True)
class PassPlan:
    """Which transformer passes a guided step needs, for both modalities together."""

    uncond: bool
    perturbed: bool
    isolated: bool
    perturb_video: bool
    perturb_audio: bool

    @property
    def guided(self) -> bool:
        return self.uncond or self.perturbed or self.isolated


def plan_passes(video: GuidanceSpec, audio: GuidanceSpec) -> PassPlan:
    return PassPlan(
        uncond=video.cfg_scale != 1 or audio.cfg_scale != 1,
        perturbed=video.stg_scale != 0 or audio.stg_scale != 0,
        isolated=video.modality_scale != 1 or audio.modality_scale != 1,
        perturb_video=video.stg_scale != 0,
        perturb_audio=audio.stg_scale != 0,
    )


def guided_x0(
    scales: GuidanceSpec,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    perturbed: torch.Tensor | None,
    isolated: torch.Tensor | None,
) -> torch.Tensor:
    """The guided x0 of one modality; a pass that did not run (None) contributes nothing."""
    pred = cond
    if uncond is not None and scales.cfg_scale != 1:
        pred = pred + (scales.cfg_scale - 1) * (cond - uncond)
    if perturbed is not None and scales.stg_scale != 0:
        pred = pred + scales.stg_scale * (cond - perturbed)
    if isolated is not None and scales.modality_scale != 1:
        pred = pred + (scales.modality_scale - 1) * (cond - isolated)
    if scales.rescaling_scale != 0 and pred is not cond:
        dims = list(range(1, pred.ndim))  # per sample, as diffusers' rescale_noise_cfg
        ratio = cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True)
        pred = pred * (scales.rescaling_scale * ratio + (1 - scales.rescaling_scale))
    return pred
