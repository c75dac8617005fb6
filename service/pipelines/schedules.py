"""Official LTX-Video 0.9.7 13B sampling schedules, as frozen data, and how a step picks its settings.

Dev (configs/ltxv-13b-0.9.7-dev.yaml in Lightricks/LTX-Video). Guidance changes with the noise level:
`guidance_timesteps` lists, in decreasing order, where each interval starts. A step at sigma `t` takes the
first interval whose start is <= t; a sigma below every start takes the last interval (LTX's rule, which
also makes the last interval cover everything below its start). The second pass has one interval.
The interval starts 0.9933, 0.9850, 0.9767, 0.9008 and 0.6180 are steps 4, 9, 14, 19 and 24 of the
30-step linear-quadratic schedule (`linear_quadratic_sigmas(30)`), the sampler these configs take from
the checkpoint; `PassSchedule.steps_to_run` then drops the pass's skipped steps.

Distilled (configs/ltxv-13b-0.9.7-distilled.yaml). No CFG or STG; the passes run fixed timesteps. Those
lists are LTX's linear-quadratic schedule of 8 steps (`linear_quadratic_sigmas`), computed in float32 and
rounded to 4 decimals, the form in which the distilled checkpoint lists its allowed steps:
    8 steps:      1.0 0.9937 0.9875 0.9812 0.975 0.9094 0.725 0.4219
    first pass:   the 8-step schedule less its final step (the first pass's result is re-noised for
                  the second pass anyway, so the last, finest step would be wasted)
    second pass:  the 8-step schedule less its first 5 steps
`distilled_timesteps` generalizes this to the endpoint's `first_pass_num_inference_steps`,
`second_pass_num_inference_steps` and `second_pass_skip_initial_steps` (defaults 8, 8, 5), so that the
defaults give the official lists exactly. Sigmas run from 1 (noise) to 0; each list gives the sigma at
the start of each step, and the last step goes to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import torch

from service.pipelines.guidance import GuidanceSettings

# Rounding of the official distilled timesteps (see the module docstring).
_TIMESTEP_DECIMALS = 4
# LTX's default noise level at which the linear-quadratic schedule turns from linear to quadratic.
_LINEAR_QUADRATIC_THRESHOLD_NOISE = 0.025


@dataclass(frozen=True)
class GuidanceSchedule:
    """Per-interval guidance settings, keyed by the sigma at which each interval starts."""

    guidance_timesteps: tuple[float, ...]  # decreasing interval starts
    guidance_scale: tuple[float, ...]
    stg_scale: tuple[float, ...]
    rescaling_scale: tuple[float, ...]
    skip_block_list: tuple[tuple[int, ...], ...]
    cfg_star_rescale: bool

    def __post_init__(self) -> None:
        columns = (self.guidance_scale, self.stg_scale, self.rescaling_scale, self.skip_block_list)
        if not self.guidance_timesteps or any(len(c) != len(self.guidance_timesteps) for c in columns):
            raise ValueError("every guidance list needs one entry per guidance timestep")
        starts = self.guidance_timesteps
        if any(later >= earlier for earlier, later in pairwise(starts)):
            raise ValueError("guidance_timesteps must be strictly decreasing")

    def interval_at(self, sigma: float) -> int:
        """Index of the interval a step at `sigma` uses (LTX's rule, see the module docstring)."""
        for index, start in enumerate(self.guidance_timesteps):
            if start <= sigma:
                return index
        return len(self.guidance_timesteps) - 1

    def settings_at(self, sigma: float) -> GuidanceSettings:
        i = self.interval_at(sigma)
        return GuidanceSettings(
            guidance_scale=self.guidance_scale[i],
            stg_scale=self.stg_scale[i],
            rescaling_scale=self.rescaling_scale[i],
            skip_blocks=self.skip_block_list[i],
            cfg_star_rescale=self.cfg_star_rescale,
        )

    def settings_per_step(self, sigmas: Sequence[float]) -> tuple[GuidanceSettings, ...]:
        return tuple(self.settings_at(float(s)) for s in sigmas)


@dataclass(frozen=True)
class PassSchedule:
    """One pass of the multiscale pipeline: guidance and which steps of the full schedule run."""

    guidance: GuidanceSchedule
    num_inference_steps: int
    skip_initial_steps: int = 0
    skip_final_steps: int = 0

    def steps_to_run(self, sigmas: Sequence[float]) -> tuple[float, ...]:
        return trim_steps(sigmas, self.skip_initial_steps, self.skip_final_steps)


def trim_steps(sigmas: Sequence[float], skip_initial: int, skip_final: int) -> tuple[float, ...]:
    """Drops steps from both ends of a schedule; at least one step must remain (LTX's rule)."""
    if skip_initial < 0 or skip_final < 0 or skip_initial + skip_final >= len(sigmas):
        raise ValueError(
            f"cannot skip {skip_initial} initial and {skip_final} final steps of a {len(sigmas)}-step "
            "schedule: at least one step must remain"
        )
    return tuple(float(s) for s in sigmas[skip_initial : len(sigmas) - skip_final])


# configs/ltxv-13b-0.9.7-dev.yaml, first_pass.
DEV_13B_097_FIRST_PASS = PassSchedule(
    guidance=GuidanceSchedule(
        guidance_timesteps=(1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180),
        guidance_scale=(1, 1, 6, 8, 6, 1, 1),
        stg_scale=(0, 0, 4, 4, 4, 2, 1),
        rescaling_scale=(1, 1, 0.5, 0.5, 1, 1, 1),
        skip_block_list=((), (11, 25, 35, 39), (22, 35, 39), (28,), (28,), (28,), (28,)),
        cfg_star_rescale=True,
    ),
    num_inference_steps=30,
    skip_final_steps=3,
)

# configs/ltxv-13b-0.9.7-dev.yaml, second_pass. Its `skip_block_list: [27]` is a flat list, which LTX
# applies to every step.
DEV_13B_097_SECOND_PASS = PassSchedule(
    guidance=GuidanceSchedule(
        guidance_timesteps=(1.0,),
        guidance_scale=(1,),
        stg_scale=(1,),
        rescaling_scale=(1,),
        skip_block_list=((27,),),
        cfg_star_rescale=True,
    ),
    num_inference_steps=30,
    skip_initial_steps=17,
)

# configs/ltxv-13b-0.9.7-distilled.yaml: both passes use guidance_scale 1 and stg_scale 0 (so neither CFG
# nor STG runs; the listed skip_block_list [42] is then unused) and rescaling_scale 1.
DISTILLED_13B_097_GUIDANCE = GuidanceSettings(
    guidance_scale=1.0, stg_scale=0.0, rescaling_scale=1.0, skip_blocks=(42,)
)
# configs/ltxv-13b-0.9.7-distilled.yaml, first_pass.timesteps and second_pass.timesteps.
DISTILLED_13B_097_FIRST_PASS_TIMESTEPS = (1.0000, 0.9937, 0.9875, 0.9812, 0.9750, 0.9094, 0.7250)
DISTILLED_13B_097_SECOND_PASS_TIMESTEPS = (0.9094, 0.7250, 0.4219)

# The distilled endpoint's defaults (ltx-video-13b-distilled-multiconditioning.md).
DEFAULT_FIRST_PASS_STEPS = 8
DEFAULT_SECOND_PASS_STEPS = 8
DEFAULT_SECOND_PASS_SKIP_INITIAL_STEPS = 5
# The official first pass is the first-pass schedule less its final step (module docstring).
DISTILLED_FIRST_PASS_SKIP_FINAL_STEPS = 1


def linear_quadratic_sigmas(
    num_steps: int,
    threshold_noise: float = _LINEAR_QUADRATIC_THRESHOLD_NOISE,
    linear_steps: int | None = None,
) -> tuple[float, ...]:
    """LTX's linear-quadratic schedule: `num_steps` sigmas from 1 down, without the final 0.

    The noise level falls linearly from 0 to `threshold_noise` over the first `linear_steps` (half by
    default), then quadratically to 1, with the two pieces meeting with equal slope; sigma = 1 - noise.
    """
    if num_steps < 1:
        raise ValueError("num_steps must be at least 1")
    if num_steps == 1:
        return (1.0,)
    linear = num_steps // 2 if linear_steps is None else linear_steps
    quadratic = num_steps - linear
    # Noise still to add after the linear part, relative to continuing at the linear slope.
    excess = linear - threshold_noise * num_steps
    a = excess / (linear * quadratic**2)
    b = threshold_noise / linear - 2 * excess / quadratic**2
    c = a * linear**2
    noise = [threshold_noise * i / linear for i in range(linear)]
    noise += [a * i * i + b * i + c for i in range(linear, num_steps)]
    return tuple(1.0 - n for n in noise)


def _as_published(sigmas: Sequence[float]) -> tuple[float, ...]:
    # float32 first, as LTX holds schedules, then the checkpoint's 4-decimal rounding: 0.99375 becomes
    # 0.9937 (float32 0.99374998) as in the official list, where rounding the float64 would give 0.9938.
    as_float32 = torch.tensor(list(sigmas), dtype=torch.float32).tolist()
    return tuple(round(s, _TIMESTEP_DECIMALS) for s in as_float32)


class DistilledTimesteps(NamedTuple):
    first_pass: tuple[float, ...]
    second_pass: tuple[float, ...]


def distilled_timesteps(
    first_pass_steps: int = DEFAULT_FIRST_PASS_STEPS,
    second_pass_steps: int = DEFAULT_SECOND_PASS_STEPS,
    second_pass_skip_initial_steps: int = DEFAULT_SECOND_PASS_SKIP_INITIAL_STEPS,
) -> DistilledTimesteps:
    """The timesteps each pass of the distilled multiscale pipeline runs.

    The first pass runs a `first_pass_steps` linear-quadratic schedule less its final step (but at least
    one step); the second pass a `second_pass_steps` schedule less its first
    `second_pass_skip_initial_steps`. The defaults give the official lists.
    """
    if first_pass_steps < 1 or second_pass_steps < 1:
        raise ValueError("each pass needs at least one inference step")
    first_schedule = _as_published(linear_quadratic_sigmas(first_pass_steps))
    skip_final = min(DISTILLED_FIRST_PASS_SKIP_FINAL_STEPS, first_pass_steps - 1)
    first = trim_steps(first_schedule, 0, skip_final)
    second_schedule = _as_published(linear_quadratic_sigmas(second_pass_steps))
    if not 0 <= second_pass_skip_initial_steps < second_pass_steps:
        raise ValueError(
            f"second_pass_skip_initial_steps ({second_pass_skip_initial_steps}) must be less than "
            f"second_pass_num_inference_steps ({second_pass_steps})"
        )
    second = trim_steps(second_schedule, second_pass_skip_initial_steps, 0)
    return DistilledTimesteps(first_pass=first, second_pass=second)
