"""Sigma schedules of LTX-2.3 (sigmas run from 1, noise, to 0; the list ends with the final 0).

- `ltx2`: LTX-2's token-shifted schedule stretched to a terminal 0.1, computed by diffusers'
  `FlowMatchEulerDiscreteScheduler` with LTX-2's config (what `LTX2Pipeline` does; equal to ltx-core's
  `LTX2Scheduler` at the same token count).
- `linear_quadratic`: diffusers' `linear_quadratic_schedule` (equal to ltx-core's `LinearQuadraticScheduler`).
- `beta`: ltx-core's `BetaScheduler` (arXiv 2407.12173): Beta(0.6, 0.6) quantiles over a flux-shifted table.
  diffusers' `use_beta_sigmas` is a different curve, so this one is ours.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule
from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift
from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from scipy.stats import beta as beta_distribution

from service.domain.specs import Scheduler

# diffusers' LTX-2 scheduler config (scripts/convert_ltx2_to_diffusers.py).
LTX2_SCHEDULER_CONFIG = {
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}
BETA_ALPHA = BETA_BETA = 0.6
BETA_TABLE_SHIFT = 2.37
BETA_TABLE_SIZE = 10_000


def ltx2_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**LTX2_SCHEDULER_CONFIG)


def ltx2_sigmas(steps: int, tokens: int) -> torch.Tensor:
    """LTX-2's schedule for `tokens` video tokens (one step: the degenerate [1, 0])."""
    if steps < 2:
        return torch.tensor([1.0, 0.0])  # the terminal stretch divides 0 by 0 for one step
    scheduler = ltx2_scheduler()
    config = scheduler.config
    mu = calculate_shift(
        tokens,
        config["base_image_seq_len"],
        config["max_image_seq_len"],
        config["base_shift"],
        config["max_shift"],
    )
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), mu=mu)
    return scheduler.sigmas.float().cpu()


def linear_quadratic_sigmas(steps: int) -> torch.Tensor:
    return torch.cat([linear_quadratic_schedule(steps).float(), torch.zeros(1)])


def beta_sigmas(steps: int) -> torch.Tensor:
    """ltx-core's beta schedule: quantiles of Beta(0.6, 0.6) index a table of flux-shifted sigmas."""
    t = np.arange(1, BETA_TABLE_SIZE + 1) / BETA_TABLE_SIZE
    shift = np.exp(BETA_TABLE_SHIFT)
    table = shift / (shift + (1.0 / t - 1.0))
    u = 1.0 - np.linspace(0.0, 1.0, steps, endpoint=False)
    index = np.rint(beta_distribution.ppf(u, BETA_ALPHA, BETA_BETA) * (BETA_TABLE_SIZE - 1)).astype(int)
    index = np.unique(index)[::-1]  # deduplicated, decreasing sigma (may give fewer than `steps`)
    return torch.tensor(np.append(table[index], 0.0), dtype=torch.float32)


def stage1_sigmas(scheduler: Scheduler, steps: int, tokens: int) -> torch.Tensor:
    if scheduler is Scheduler.LTX2:
        return ltx2_sigmas(steps, tokens)
    if scheduler is Scheduler.LINEAR_QUADRATIC:
        return linear_quadratic_sigmas(steps)
    return beta_sigmas(steps)


def distilled_sigmas() -> torch.Tensor:
    """The distilled model's 8 steps (acceleration `full`)."""
    return torch.tensor([*DISTILLED_SIGMA_VALUES, 0.0], dtype=torch.float32)


def stage2_sigmas() -> torch.Tensor:
    """Stage 2 of multiscale: [0.909375, 0.725, 0.421875, 0]; its input is re-noised to the first."""
    return torch.tensor([*STAGE_2_DISTILLED_SIGMA_VALUES, 0.0], dtype=torch.float32)
