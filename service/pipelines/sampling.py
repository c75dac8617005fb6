"""Flow-matching schedule and guidance for LTX-Video, on diffusers' scheduler.

The scheduler is built fresh per run from its config (it holds a step index), and the schedule is the one
`LTXPipeline.__call__` uses: linear sigmas from 1 to 1/n, shifted by `mu`, which grows with the number of
latent tokens (`calculate_shift`), then stretched to the configured terminal sigma.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch
from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift, retrieve_timesteps
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from service.contract.assets import LTX_VIDEO_SCHEDULER_CONFIG

__all__ = [
    "LTX_VIDEO_SCHEDULER_CONFIG",
    "classifier_free_guidance",
    "euler_step",
    "make_scheduler",
    "set_schedule",
]


def make_scheduler(config: Mapping[str, Any] | None) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler.from_config(dict(config or LTX_VIDEO_SCHEDULER_CONFIG))


def set_schedule(
    scheduler: FlowMatchEulerDiscreteScheduler, num_steps: int, num_tokens: int, device: torch.device
) -> torch.Tensor:
    """Set `scheduler` up for `num_steps` steps over `num_tokens` latent tokens; returns the sigmas to visit
    (one per step, in [0, 1], descending). `scheduler.timesteps` are these times `num_train_timesteps`."""
    config = scheduler.config
    mu = calculate_shift(
        num_tokens,
        config.get("base_image_seq_len", 256),
        config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5),
        config.get("max_shift", 1.15),
    )
    sigmas = np.linspace(1.0, 1 / num_steps, num_steps).tolist()
    retrieve_timesteps(scheduler, num_steps, device, sigmas=sigmas, mu=mu)
    return scheduler.sigmas[:-1]  # the last entry is the terminal 0 the final step lands on


def classifier_free_guidance(velocity: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Batch [negative, positive] -> guided velocity, as diffusers' LTX pipelines combine them."""
    uncond, cond = velocity.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def euler_step(
    scheduler: FlowMatchEulerDiscreteScheduler,
    velocity: torch.Tensor,
    timestep: torch.Tensor,
    latents: torch.Tensor,
) -> torch.Tensor:
    """One flow-matching Euler step: latents + (next sigma - sigma) * velocity."""
    # diffusers annotates `torch.FloatTensor`, which a plain float32 tensor is not to a type checker.
    velocity, timestep, latents = (cast(torch.FloatTensor, t) for t in (velocity, timestep, latents))
    return scheduler.step(velocity, timestep, latents, return_dict=False)[0]
